package tcpproxy

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// loop is an event loop: an epoll instance in which every established
// session's two sockets wait for bytes, and one goroutine that copies small
// messages inline (see session.copyInline). The sockets are level-triggered:
// a message copied inline costs its read and write, no epoll_ctl; a socket
// leaves the epoll only while a goroutine copies it, and at EOF. An idle
// connection therefore costs no goroutine and no buffer, only its two
// sockets (raw descriptors, see session), its session and two epoll entries. The epoll descriptor is
// itself waited for in Go's poller, so the loop goroutine holds no thread
// while nothing happens.
type loop struct {
	epfd    int
	log     *slog.Logger
	closing atomic.Bool
	f       *os.File // epfd, registered with Go's poller
	buf     []byte   // bufSize, used by the loop goroutine only

	mu       sync.Mutex
	sessions map[uint64]*session // by id (epoll event data: id<<1 | direction)
}

func newLoop(log *slog.Logger) (*loop, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("proxy: create event loop: %w", os.NewSyscallError("epoll_create1", err))
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("proxy: create event loop: %w", err)
	}
	return &loop{epfd: fd, log: log, f: os.NewFile(uintptr(fd), "epoll"), buf: make([]byte, bufSize), sessions: map[uint64]*session{}}, nil
}

// close ends run (the sessions must have ended before).
func (l *loop) close() {
	l.closing.Store(true)
	_ = l.f.Close()
}

// run dispatches events until close.
func (l *loop) run() {
	rc, err := l.f.SyscallConn()
	if err != nil {
		l.log.Error("proxy: event loop cannot wait for events; established connections will stall", "err", err)
		return
	}
	events := make([]unix.EpollEvent, 128)
	var n int
	var werr error
	wait := func(fd uintptr) bool {
		// Raw (see rawOp): with a zero timeout epoll_pwait never blocks;
		// the wait is Go's poller's.
		r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		n, werr = int(r), nil
		switch e {
		case 0:
		case syscall.EINTR:
			n = 0
		default:
			n, werr = 0, e
		}
		return n > 0 || werr != nil
	}
	for {
		err := rc.Read(wait)
		if err == nil && werr != nil {
			err = os.NewSyscallError("epoll_pwait", werr)
		}
		if err != nil {
			if !l.closing.Load() {
				l.log.Error("proxy: event loop stopped; established connections will stall", "err", err)
			}
			return
		}
		for _, ev := range events[:n] {
			tok := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			l.mu.Lock()
			s := l.sessions[tok>>1]
			l.mu.Unlock()
			if s != nil {
				s.ready(l, int(tok&1))
			}
		}
	}
}

// add registers s and arms both directions.
func (l *loop) add(s *session) error {
	l.mu.Lock()
	l.sessions[s.id] = s
	l.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for d := 0; d < 2; d++ {
		if err := s.addLocked(d); err != nil {
			return err
		}
	}
	return nil
}

func (l *loop) remove(s *session) {
	l.mu.Lock()
	delete(l.sessions, s.id)
	l.mu.Unlock()
}

// ctl adds fd to the epoll (level-triggered, readable) with the event data
// tok, or removes it. Callers hold the session's mu, so fd is open.
func (l *loop) ctl(op, fd int, tok uint64) error { return l.ctlEvents(op, fd, tok, unix.EPOLLIN) }

// ctlEvents is ctl for the given events (EPOLLOUT: a connect's completion).
func (l *loop) ctlEvents(op, fd int, tok uint64, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(uint32(tok)), Pad: int32(uint32(tok >> 32))}
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(l.epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(&ev)), 0, 0)
	if e != 0 {
		return os.NewSyscallError("epoll_ctl", e)
	}
	return nil
}
