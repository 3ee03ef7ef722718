package tcpproxy

import (
	"errors"
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
// server -> client. Direction d reads fd[d] and writes fd[1-d].
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
	// bulkLinger is how long a bulk direction's goroutine waits for the
	// next burst before the direction goes back to the loop.
	bulkLinger = 50 * time.Millisecond
)

// State of one direction.
const (
	armed  = iota // waiting in the loop's epoll (level-triggered), no goroutine
	active        // being copied by a goroutine (or replayed)
	done          // EOF forwarded, or the session aborted
)

// session is one proxied connection. Its two sockets are raw nonblocking
// descriptors owned by the session, out of Go's net package (see takeFD):
// they sit in the loop's epoll only, and cost no netFD, address objects or
// poll descriptor. Every use of a descriptor holds mu, so abort cannot
// close one (and let its number be reused) while it is used; the loop
// copies small messages under mu (nonblocking syscalls, microseconds).
type session struct {
	id uint64
	p  *Proxy
	l  *loop
	// Views of the two sockets for socket options (Control runs under mu).
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
	// When the first side closed its half (unix ns, 0: neither has).
	halfClosed atomic.Int64

	mu sync.Mutex
	fd [2]int // client, server; -1 once closed
	// While a goroutine copies direction d: its own views (duplicates) of
	// the source and destination, which abort closes to stop it.
	gconns [2][2]*net.TCPConn
	// First flight, while the server has not answered (see replay.go): the
	// client's bytes, the candidates left and the configuration to dial
	// them; nil once answered.
	first   []byte
	firstOK bool
	rest    []*backendState
	cfg     *runtimeConfig
	conn    *connecting // while the backend connection is being opened (connect.go)
	state   [2]uint8
	bulk    [2]bool // the direction's last bursts were large (splice them)
	reg     [2]bool // the direction's source is in the loop's epoll
	aborted bool
	ended   bool
}

// takeFD takes c's socket out of Go's net package: a duplicate descriptor
// (same socket, same options, nonblocking) that the caller owns; c is
// closed (its descriptor leaves Go's poller).
func takeFD(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		_ = c.Close()
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		derr = err
	}
	_ = c.Close()
	if derr != nil {
		return -1, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", derr)
	}
	return nfd, nil
}

// dupConn returns a Go connection on a duplicate of fd (for a goroutine
// that waits in Go's poller and splices).
func dupConn(fd int) (*net.TCPConn, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", err)
	}
	f := os.NewFile(uintptr(nfd), "socket")
	c, err := net.FileConn(f) // duplicates again
	_ = f.Close()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		_ = c.Close()
		return nil, errors.New("not a TCP socket")
	}
	return tc, nil
}

// fdConn is a syscall.RawConn view of one of the session's sockets.
type fdConn struct {
	s *session
	i int
}

func (c *fdConn) Control(f func(fd uintptr)) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.s.fd[c.i] < 0 {
		return net.ErrClosed
	}
	f(uintptr(c.s.fd[c.i]))
	return nil
}

var errNoWait = errors.New("proxy: raw session sockets do not wait")

func (c *fdConn) Read(f func(fd uintptr) bool) error {
	var ok bool
	if err := c.Control(func(fd uintptr) { ok = f(fd) }); err != nil {
		return err
	}
	if !ok {
		return errNoWait
	}
	return nil
}

func (c *fdConn) Write(f func(fd uintptr) bool) error { return c.Read(f) }

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
	var then func()
	switch {
	case s.conn != nil:
		then = s.connectReadyLocked()
	case s.state[d] != armed:
	case s.bulk[d]:
		then = s.startLocked(d, nil, nil)
	default:
		then = s.copyInlineLocked(l, d)
	}
	s.mu.Unlock()
	if then != nil {
		then()
	}
}

// copyInlineLocked copies what is queued on direction d's source with read
// and write (2 raw syscalls per message, where splice costs a pipe round
// trip plus a probe) on the loop goroutine, into the loop's buffer: no
// goroutine is woken and no buffer is held per connection. A write that
// would block hands the rest to a goroutine; so do maxInline full reads in
// a row (a large transfer: splice). It returns what to do after mu is
// released.
func (s *session) copyInlineLocked(l *loop, d int) func() {
	buf := l.buf
	for i := 0; i < maxInline; i++ {
		n, err := rawIO(s.fd[d], buf, false)
		switch {
		case err == unix.EAGAIN:
			return nil // drained; the socket stays in the epoll
		case err != nil || n == 0:
			if d == toClient && s.bytesOut.Load() == 0 {
				if then := s.redispatchLocked(d); then != nil {
					return then // the server failed before answering: replayed elsewhere
				}
			}
			if err != nil {
				return s.failLocked(d)
			}
			return s.eofLocked(d)
		}
		if s.bytesOut.Load() == 0 { // no answer yet: see replay.go
			if d == toServer {
				s.keepFirstLocked(buf[:n])
			} else {
				s.dropFirstLocked()
			}
		}
		w, err := rawIO(s.fd[1-d], buf[:n], true)
		s.count(d, int64(w))
		if err == unix.EAGAIN || (err == nil && w < n) {
			bp := s.p.bufs.Get().(*[]byte)
			rest := copy(*bp, buf[w:n])
			return s.startLocked(d, (*bp)[:rest], bp)
		}
		if err != nil {
			if d == toServer && w == 0 && s.bytesOut.Load() == 0 {
				if then := s.redispatchLocked(d); then != nil {
					return then
				}
			}
			return s.failLocked(d)
		}
		if n < len(buf) {
			return nil // drained: a short read takes all that is queued
		}
	}
	s.bulk[d] = true
	return s.startLocked(d, nil, nil)
}

// rawIO reads into (or writes from) buf on fd without waiting; it returns
// the bare errno (unix.EAGAIN when it would block). The syscall is raw (no
// entersyscall): it never blocks, and a P seen "in a syscall" keeps the
// runtime's sysmon polling every 20 µs, which cost ~10 % of the proxy's
// CPU on small messages.
func rawIO(fd int, buf []byte, write bool) (int, error) {
	if fd < 0 {
		return 0, net.ErrClosed
	}
	trap := uintptr(syscall.SYS_READ)
	if write {
		trap = syscall.SYS_WRITE
	}
	for {
		r, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		switch e {
		case 0:
			return int(r), nil
		case syscall.EINTR:
			continue
		default:
			return 0, e
		}
	}
}

// startLocked hands direction d to a goroutine (pumpBulk) with its own Go
// views of the two sockets, out of the loop's epoll meanwhile
// (level-triggered, it would be reported again and again).
func (s *session) startLocked(d int, pending []byte, bp *[]byte) func() {
	s.state[d] = active
	s.delLocked(d)
	src, err := dupConn(s.fd[d])
	if err != nil {
		return s.failLocked(d)
	}
	dst, err := dupConn(s.fd[1-d])
	if err != nil {
		_ = src.Close()
		return s.failLocked(d)
	}
	s.gconns[d] = [2]*net.TCPConn{src, dst}
	return func() { go s.pumpBulk(d, src, dst, pending, bp) }
}

// pumpBulk is the goroutine of a direction that writes pending (the rest
// of a message the destination could not take at once; bp goes back to the
// pool after), waiting in Go's poller, and, when the direction is bulk,
// moves every burst queued on the source with io.CopyN(dst, src, n)
// between the bare *net.TCPConn values, which Go splices through a pooled
// pipe (taken only while bytes move). When the source is drained the
// direction goes back to the loop.
func (s *session) pumpBulk(d int, src, dst *net.TCPConn, pending []byte, bp *[]byte) {
	if len(pending) > 0 {
		w, err := dst.Write(pending)
		s.count(d, int64(w))
		s.p.bufs.Put(bp)
		if err != nil {
			s.stop(d, outFail, false)
			return
		}
	}
	s.mu.Lock()
	s.dropFirstLocked() // no replay of a large or slow first flight
	bulk := s.bulk[d]
	s.mu.Unlock()
	if !bulk {
		s.stop(d, outDrained, false)
		return
	}
	srcRC, err := src.SyscallConn()
	if err != nil {
		s.stop(d, outFail, false)
		return
	}
	largest := 0
	for {
		avail, eof, err := probe(srcRC, false)
		if err == nil && !eof && avail == 0 {
			// Drained: a stream pauses for microseconds between bursts;
			// wait a little in Go's poller before handing the direction
			// back to the loop (that round trip costs two new views).
			_ = src.SetReadDeadline(time.Now().Add(bulkLinger))
			avail, eof, err = probe(srcRC, true)
			_ = src.SetReadDeadline(time.Time{})
			if errors.Is(err, os.ErrDeadlineExceeded) {
				avail, eof, err = 0, false, nil
			}
		}
		switch {
		case err != nil:
			s.stop(d, outFail, false)
			return
		case eof:
			s.stop(d, outEOF, false)
			return
		case avail == 0:
			s.stop(d, outDrained, largest >= bufSize)
			return
		}
		largest = max(largest, avail)
		n, err := io.CopyN(dst, src, int64(avail))
		s.count(d, n)
		if err != nil {
			s.stop(d, outFail, false)
			return
		}
	}
}

// Outcomes of a goroutine's copy.
const (
	outDrained = iota
	outEOF
	outFail
)

// stop ends direction d's goroutine: its views are closed and the
// direction goes back to the loop (drained), forwards EOF, or fails.
func (s *session) stop(d, outcome int, bulk bool) {
	s.mu.Lock()
	for _, c := range s.gconns[d] {
		if c != nil {
			_ = c.Close()
		}
	}
	s.gconns[d] = [2]*net.TCPConn{}
	var then func()
	switch {
	case outcome == outFail:
		then = s.failLocked(d)
	case outcome == outEOF:
		then = s.eofLocked(d)
	case s.aborted:
		then = s.finishLocked(d)
	default:
		s.bulk[d] = bulk
		s.state[d] = armed
		if err := s.addLocked(d); err != nil {
			then = s.failLocked(d)
		}
	}
	s.mu.Unlock()
	if then != nil {
		then()
	}
}

// probe returns the bytes queued on the socket (SIOCINQ), or its peer's
// FIN (a MSG_PEEK read of 0); with wait, it waits in Go's poller for one of
// them (or the connection's read deadline).
func probe(rc syscall.RawConn, wait bool) (avail int, eof bool, err error) {
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
				return !wait
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

// addLocked and delLocked put direction d's source in the loop's epoll
// and take it out.
func (s *session) addLocked(d int) error {
	if s.fd[d] < 0 {
		return net.ErrClosed
	}
	if err := s.l.ctl(unix.EPOLL_CTL_ADD, s.fd[d], s.id<<1|uint64(d)); err != nil {
		return err
	}
	s.reg[d] = true
	return nil
}

func (s *session) delLocked(d int) {
	if s.reg[d] && s.fd[d] >= 0 {
		_ = s.l.ctl(unix.EPOLL_CTL_DEL, s.fd[d], 0)
	}
	s.reg[d] = false
}

// eofLocked forwards direction d's end of stream (half-close); at EOF the
// source stays readable, so it leaves the epoll.
func (s *session) eofLocked(d int) func() {
	s.markHalfClosedLocked()
	s.delLocked(d)
	if fd := s.fd[1-d]; fd >= 0 {
		_ = unix.Shutdown(fd, unix.SHUT_WR)
	}
	return s.finishLocked(d)
}

// failLocked aborts the session after an error in direction d.
func (s *session) failLocked(d int) func() {
	s.abortLocked()
	return s.finishLocked(d)
}

// finishLocked marks direction d done; when both are, the session ends:
// its sockets are closed and, after mu is released, the proxy accounts
// for it.
func (s *session) finishLocked(d int) func() {
	s.state[d] = done
	if s.ended || s.state[toServer] != done || s.state[toClient] != done {
		return nil
	}
	s.ended = true
	for i, fd := range s.fd {
		if fd >= 0 {
			_ = unix.Close(fd) // leaves the epoll with it
			s.fd[i] = -1
		}
	}
	return func() { s.p.sessionEnded(s) }
}

// abort closes both sides with a reset. Directions waiting in the loop are
// done at once; one a goroutine copies ends when its next syscall fails
// (its views are closed here).
func (s *session) abort() {
	s.mu.Lock()
	s.abortLocked()
	var then func()
	if s.state[toServer] == done && s.state[toClient] == done {
		then = s.finishLocked(toServer)
	}
	s.mu.Unlock()
	if then != nil {
		then()
	}
}

func (s *session) abortLocked() {
	if s.aborted {
		return
	}
	s.aborted = true
	if s.conn != nil && s.conn.timer != nil {
		s.conn.timer.Stop()
	}
	for d := range s.state {
		if s.state[d] == armed {
			s.state[d] = done
		}
	}
	for i, fd := range s.fd {
		if fd >= 0 {
			// SO_LINGER 0: the socket is reset when its last descriptor
			// (a goroutine's view, closed below, may be it) is closed.
			_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			_ = unix.Close(fd)
			s.fd[i] = -1
		}
	}
	for d := range s.gconns {
		for _, c := range s.gconns[d] {
			if c != nil {
				_ = c.Close()
			}
		}
	}
}
