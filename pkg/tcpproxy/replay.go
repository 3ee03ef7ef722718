package tcpproxy

import (
	"errors"

	"golang.org/x/sys/unix"
)

// First-flight replay. A backend that accepts a connection and dies before
// answering (a master SIGKILLed, its kernel resets the connection) would
// fail that client, though nothing happened on the backend's side. While
// no byte has come back, the proxy keeps what the client sent (its first
// flight, up to maxFirstFlight bytes) and, when the backend resets or
// closes the connection, dials the next candidate backend (the same
// proxy.retries budget as the first dial) and replays it there; the client
// sees a slower answer, not an error.
//
// Only a first flight that is a TLS handshake record is replayed (or an
// empty one): without the server's answer, a TLS client cannot have sent
// application data, so the dead backend processed no request and a replay
// cannot run one twice. A plaintext first flight may be a request the
// backend had started to process: it is not replayed (the client is reset,
// as before).

// maxFirstFlight bounds the bytes kept for a replay (a TLS ClientHello is
// 0.3-2 KiB; a post-quantum key share ~1.5 KiB more).
const maxFirstFlight = 16 << 10

// keepFirstLocked records b, just read from the client, while the server
// has not answered.
func (s *session) keepFirstLocked(b []byte) {
	if !s.firstOK {
		return
	}
	if len(s.first)+len(b) > maxFirstFlight || !tlsRecord(append(s.first[:len(s.first):len(s.first)], b...)) {
		s.dropFirstLocked()
		return
	}
	s.first = append(s.first, b...)
}

// tlsRecord reports whether b starts like a TLS handshake record
// (content type 22, version 3.x).
func tlsRecord(b []byte) bool {
	return len(b) < 2 || (b[0] == 0x16 && b[1] == 0x03)
}

// dropFirstLocked ends the replay window (the server answered, or the
// first flight cannot be replayed).
func (s *session) dropFirstLocked() {
	if s.firstOK || s.first != nil {
		s.firstOK, s.first, s.rest, s.cfg = false, nil, nil, nil
	}
}

// redispatchLocked is called by the loop when the server failed (reset,
// closed, or a write to it failed) in direction d before answering. If the
// first flight can be replayed, it takes both directions out of the loop,
// closes the server's socket and returns the replay to start after mu is
// released; otherwise nil (the caller fails the session as usual).
func (s *session) redispatchLocked(d int) func() {
	o := 1 - d
	if !s.firstOK || len(s.rest) == 0 || s.aborted || s.state[o] != armed {
		return nil
	}
	s.state[d], s.state[o] = active, active
	s.delLocked(d)
	s.delLocked(o)
	if fd := s.fd[toClient]; fd >= 0 { // the server's socket
		_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		_ = unix.Close(fd)
		s.fd[toClient] = -1
	}
	first, rest, rc := s.first, s.rest, s.cfg
	return func() { go s.replay(first, rest, rc) }
}

// replay dials the next candidates and writes the first flight to the one
// that answers the dial; then both directions go back to the loop.
func (s *session) replay(first []byte, rest []*backendState, rc *runtimeConfig) {
	p := s.p
	p.mu.Lock()
	failed := s.be
	failed.c.retries++
	p.fe.retries++
	p.mu.Unlock()
	if p.health != nil {
		p.health.ReportFailure(failed.addr, errors.New("closed a connection before answering"))
	}
	if sup, ok := p.dialLog.allow(); ok {
		p.log.Warn("proxy: backend closed a connection before answering; replaying the client's first flight to the next backend",
			"backend", failed.addr, "client", s.clientAP.String(), "bytes", len(first), "suppressed", sup)
	}
	server, be, left := p.dial(p.forceCtx, rc.cfg, rest)
	fd := -1
	if server != nil {
		var err error
		if len(first) > 0 {
			_, err = server.Write(first)
		}
		if err != nil {
			_ = server.SetLinger(0)
			_ = server.Close()
		} else {
			fd, _ = takeFD(server)
		}
	}
	if fd >= 0 {
		failed.current.Add(-1)
		be.current.Add(1)
		p.mu.Lock()
		s.be = be
		be.c.total++
		p.mu.Unlock()
	}
	s.mu.Lock()
	var then func()
	switch {
	case fd < 0 || s.aborted:
		if fd >= 0 {
			_ = unix.Close(fd)
		}
		s.abortLocked()
		s.state[toServer] = done
		then = s.finishLocked(toClient)
	default:
		s.fd[toClient], s.rest = fd, left
		s.state = [2]uint8{armed, armed}
		for d := 0; d < 2; d++ {
			if err := s.addLocked(d); err != nil {
				s.abortLocked()
				s.state[toServer] = done
				then = s.finishLocked(toClient)
				break
			}
		}
	}
	s.mu.Unlock()
	if then != nil {
		then()
	}
}
