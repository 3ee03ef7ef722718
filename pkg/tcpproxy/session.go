package tcpproxy

import (
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Directions of a session: toServer copies client -> server, toClient
// server -> client.
const (
	toServer = 0
	toClient = 1
)

// bufSize is the copy buffer for small messages (HAProxy's default
// tune.bufsize). maxInline reads in a row that fill it make the direction
// bulk: copied by a goroutine with splice until its bursts are small again.
const (
	bufSize   = 16 << 10
	maxInline = 4
)

// State of one direction.
const (
	armed  = iota // waiting in the loop's epoll (level-triggered), no goroutine
	active        // being copied (by the loop or a bulk goroutine)
	done          // EOF forwarded, or the session aborted
)

type session struct {
	id       uint64
	p        *Proxy
	l        *loop
	client   *net.TCPConn
	server   *net.TCPConn
	clientRC syscall.RawConn
	serverRC syscall.RawConn
	be       *backendState
	clientAP netip.AddrPort
	localAP  netip.AddrPort
	since    time.Time

	// Bytes forwarded so far (client->server, server->client) and the
	// time of the last burst (unix ns), updated after each burst.
	bytesIn, bytesOut atomic.Uint64
	lastActive        atomic.Int64

	mu sync.Mutex
	// First flight, while the server has not answered (see replay.go): the
	// client's bytes, the candidates left and the configuration to dial
	// them; nil once answered.
	first   []byte
	firstOK bool
	rest    []*backendState
	cfg     *runtimeConfig
	state   [2]uint8
	bulk    [2]bool // the direction's last bursts were large (splice them)
	reg     [2]bool // the direction's source is in the loop's epoll
	aborted bool
	ended   bool
}

// ends returns direction d's source and destination.
func (s *session) ends(d int) (src, dst *net.TCPConn, srcRC, dstRC syscall.RawConn) {
	if d == toServer {
		return s.client, s.server, s.clientRC, s.serverRC
	}
	return s.server, s.client, s.serverRC, s.clientRC
}

func (s *session) count(d int, n int64) {
	if n <= 0 {
		return
	}
	if d == toServer {
		s.bytesIn.Add(uint64(n))
	} else {
		s.bytesOut.Add(uint64(n))
	}
	s.lastActive.Store(time.Now().UnixNano())
}

// ready is called by the loop when direction d's source is readable.
func (s *session) ready(l *loop, d int) {
	s.mu.Lock()
	if s.state[d] != armed {
		s.mu.Unlock()
		return
	}
	s.state[d] = active
	bulk := s.bulk[d]
	s.mu.Unlock()
	if bulk {
		s.handoff(d)
		go s.pumpBulk(d, nil, nil)
		return
	}
	s.copyInline(l, d)
}

// copyInline copies what is queued on direction d's source with read and
// write (2 syscalls per message, where splice costs a pipe round trip plus
// a probe) on the loop goroutine, into the loop's buffer: no goroutine is
// woken and no buffer is held per connection. A write that would block
// hands the rest to a goroutine; so do maxInline full reads in a row (a
// large transfer: splice).
func (s *session) copyInline(l *loop, d int) {
	_, _, srcRC, dstRC := s.ends(d)
	buf := l.buf
	for i := 0; i < maxInline; i++ {
		n, err := l.op.run(srcRC, buf, false)
		switch {
		case err == unix.EAGAIN:
			s.idle(d)
			return
		case (err != nil || n == 0) && d == toClient && s.bytesOut.Load() == 0 && s.redispatch(d):
			return // the server failed before answering: replayed elsewhere
		case err != nil:
			s.fail(d)
			return
		case n == 0:
			s.eof(d)
			return
		}
		if s.bytesOut.Load() == 0 { // no answer yet: see replay.go
			if d == toServer {
				s.keepFirst(buf[:n])
			} else {
				s.answered()
			}
		}
		w, err := l.op.run(dstRC, buf[:n], true)
		s.count(d, int64(w))
		if err == unix.EAGAIN || (err == nil && w < n) {
			bp := s.p.bufs.Get().(*[]byte)
			rest := copy(*bp, buf[max(w, 0):n])
			s.handoff(d)
			go s.pumpBulk(d, (*bp)[:rest], bp)
			return
		}
		if err != nil {
			if d == toServer && w == 0 && s.bytesOut.Load() == 0 && s.redispatch(d) {
				return
			}
			s.fail(d)
			return
		}
		if n < len(buf) {
			s.idle(d) // drained: a short read takes all that is queued
			return
		}
	}
	s.mu.Lock()
	s.bulk[d] = true
	s.mu.Unlock()
	s.handoff(d)
	go s.pumpBulk(d, nil, nil)
}

// rawOp reads into (or writes from) buf on a socket without waiting. The
// syscall is raw (no entersyscall): it never blocks, and a P seen "in a
// syscall" keeps the runtime's sysmon polling every 20 µs, which cost ~10 %
// of the proxy's CPU on small messages. The descriptor is used under
// RawConn.Control, so it stays valid during the call. One rawOp per loop,
// its callback bound once (no allocation per message).
type rawOp struct {
	buf   []byte
	write bool
	n     int
	errno syscall.Errno
	fn    func(fd uintptr)
}

func newRawOp() *rawOp {
	o := &rawOp{}
	o.fn = o.do
	return o
}

func (o *rawOp) do(fd uintptr) {
	trap := uintptr(syscall.SYS_READ)
	if o.write {
		trap = syscall.SYS_WRITE
	}
	for {
		r, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&o.buf[0])), uintptr(len(o.buf)))
		if e != syscall.EINTR {
			o.n, o.errno = int(r), e
			return
		}
	}
}

// run returns the bytes moved and the bare errno (unix.EAGAIN when it
// would block), or the error of a closed connection.
func (o *rawOp) run(rc syscall.RawConn, buf []byte, write bool) (int, error) {
	o.buf, o.write, o.n, o.errno = buf, write, 0, 0
	err := rc.Control(o.fn)
	o.buf = nil
	if err != nil {
		return 0, err
	}
	if o.errno != 0 {
		return 0, o.errno
	}
	return o.n, nil
}

// pumpBulk is the goroutine of a direction that writes pending (the rest
// of a message the destination could not take at once; bp goes back to the
// pool after) and, when the direction is bulk, moves every burst queued on
// the source with io.CopyN(dst, src, n) between the bare *net.TCPConn
// values, which Go splices through a pooled pipe (taken only while bytes
// move). When the source is drained it re-arms the direction and ends.
func (s *session) pumpBulk(d int, pending []byte, bp *[]byte) {
	s.answered() // no replay of a large or slow first flight
	src, dst, srcRC, _ := s.ends(d)
	if len(pending) > 0 {
		w, err := dst.Write(pending) // waits in the poller for room
		s.count(d, int64(w))
		s.p.bufs.Put(bp)
		if err != nil {
			s.fail(d)
			return
		}
	}
	s.mu.Lock()
	bulk := s.bulk[d]
	s.mu.Unlock()
	if !bulk {
		s.rearm(d, false)
		return
	}
	largest := 0
	for {
		avail, eof, err := probe(srcRC)
		switch {
		case err != nil:
			s.fail(d)
			return
		case eof:
			s.eof(d)
			return
		case avail == 0:
			s.rearm(d, largest >= bufSize)
			return
		}
		largest = max(largest, avail)
		n, err := io.CopyN(dst, src, int64(avail))
		s.count(d, n)
		if err != nil {
			s.fail(d)
			return
		}
	}
}

// probe returns the bytes queued on the socket (SIOCINQ), or its peer's
// FIN (a MSG_PEEK read of 0), without waiting.
func probe(rc syscall.RawConn) (avail int, eof bool, err error) {
	var perr error
	cerr := rc.Read(func(fd uintptr) bool {
		n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		if err != nil {
			perr = err
			return true
		}
		if n > 0 {
			avail = n
			return true
		}
		var b [1]byte
		for {
			r, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
			case err != nil:
				perr = err
			case r == 0:
				eof = true
			default:
				avail = r // bytes arrived between the two calls
			}
			return true
		}
	})
	if cerr != nil {
		return 0, false, cerr
	}
	if perr != nil {
		return 0, false, os.NewSyscallError("recv", perr)
	}
	return avail, eof, nil
}

// idle marks direction d, copied inline, as waiting again: its socket
// stayed registered (level-triggered), so no syscall.
func (s *session) idle(d int) {
	s.mu.Lock()
	if s.aborted {
		s.state[d] = done
		end := s.endLocked()
		s.mu.Unlock()
		if end {
			s.end()
		}
		return
	}
	s.state[d] = armed
	s.mu.Unlock()
}

// handoff takes direction d's source out of the loop's epoll before a
// goroutine copies it (level-triggered, it would be reported again and
// again meanwhile; a disabled entry would still report errors and hangups).
func (s *session) handoff(d int) {
	s.mu.Lock()
	reg := s.reg[d]
	s.reg[d] = false
	s.mu.Unlock()
	if reg {
		_ = s.l.ctl(unix.EPOLL_CTL_DEL, s, d) // fails only when closed: then the copy fails too
	}
}

// rearm puts direction d, copied by a goroutine, back to wait in the loop
// (its source drained).
func (s *session) rearm(d int, bulk bool) {
	s.mu.Lock()
	s.bulk[d] = bulk
	if s.aborted {
		s.state[d] = done
		end := s.endLocked()
		s.mu.Unlock()
		if end {
			s.end()
		}
		return
	}
	s.state[d] = armed
	s.reg[d] = true
	s.mu.Unlock()
	if err := s.l.ctl(unix.EPOLL_CTL_ADD, s, d); err != nil {
		s.abort() // closed meanwhile (then abort is done already), or epoll failed
	}
}

// eof forwards direction d's end of stream (half-close).
func (s *session) eof(d int) {
	s.handoff(d) // at EOF the socket stays readable: out of the loop
	_, dst, _, _ := s.ends(d)
	_ = dst.CloseWrite()
	s.finish(d)
}

// fail aborts the session after an error in direction d.
func (s *session) fail(d int) {
	s.abort()
	s.finish(d)
}

func (s *session) finish(d int) {
	s.mu.Lock()
	s.state[d] = done
	end := s.endLocked()
	s.mu.Unlock()
	if end {
		s.end()
	}
}

// endLocked reports (once) that both directions are done.
func (s *session) endLocked() bool {
	if s.ended || s.state[toServer] != done || s.state[toClient] != done {
		return false
	}
	s.ended = true
	return true
}

// abort closes both sides with a reset. Directions waiting in the loop are
// done at once; one being copied ends when its next syscall fails.
func (s *session) abort() {
	s.mu.Lock()
	if s.aborted {
		s.mu.Unlock()
		return
	}
	s.aborted = true
	for d := range s.state {
		if s.state[d] == armed {
			s.state[d] = done
		}
	}
	end := s.endLocked()
	client, server := s.client, s.server // server changes on a replay
	s.mu.Unlock()
	_ = client.SetLinger(0)
	_ = client.Close()
	_ = server.SetLinger(0)
	_ = server.Close()
	if end {
		s.end()
	}
}

// end closes both connections (after both directions are done) and hands
// the session back to the proxy.
func (s *session) end() {
	_ = s.client.Close()
	_ = s.server.Close()
	s.p.sessionEnded(s)
}
