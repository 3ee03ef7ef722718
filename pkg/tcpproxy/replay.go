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

// keepFirst records b, just read from the client, while the server has not
// answered.
func (s *session) keepFirst(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
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

// answered is called when the server sent its first bytes: no replay from
// now on.
func (s *session) answered() {
	s.mu.Lock()
	s.dropFirstLocked()
	s.mu.Unlock()
}

func (s *session) dropFirstLocked() {
	s.firstOK, s.first, s.rest, s.cfg = false, nil, nil, nil
}

// redispatch is called by the loop when the server failed (reset, closed,
// or a write to it failed) in direction d before answering. If the first
// flight can be replayed, it takes both directions out of the loop, starts
// the replay and returns true; otherwise false (the caller fails the
// session as usual).
func (s *session) redispatch(d int) bool {
	s.mu.Lock()
	o := 1 - d
	if !s.firstOK || len(s.rest) == 0 || s.aborted || s.state[d] != active || s.state[o] != armed {
		s.mu.Unlock()
		return false
	}
	s.state[o] = active
	reg := s.reg
	s.reg = [2]bool{}
	first, rest, rc := s.first, s.rest, s.cfg
	s.mu.Unlock()
	for x := range reg {
		if reg[x] {
			_ = s.l.ctl(unix.EPOLL_CTL_DEL, s, x)
		}
	}
	go s.replay(first, rest, rc)
	return true
}

// replay closes the failed server connection, dials the next candidates
// and writes the first flight to the one that answers the dial; then both
// directions go back to the loop.
func (s *session) replay(first []byte, rest []*backendState, rc *runtimeConfig) {
	p := s.p
	old, failed := s.server, s.be
	_ = old.SetLinger(0)
	_ = old.Close()
	if p.health != nil {
		p.health.ReportFailure(failed.addr, errors.New("closed a connection before answering"))
	}
	p.mu.Lock()
	failed.c.retries++
	p.fe.retries++
	p.mu.Unlock()
	if sup, ok := p.dialLog.allow(); ok {
		p.log.Warn("proxy: backend closed a connection before answering; replaying the client's first flight to the next backend",
			"backend", failed.addr, "client", s.clientAP.String(), "bytes", len(first), "suppressed", sup)
	}
	server, be, left := p.dial(p.forceCtx, rc.cfg, rest)
	if server == nil {
		s.replayFailed()
		return
	}
	serverRC, _ := server.SyscallConn()
	failed.current.Add(-1)
	be.current.Add(1)
	p.mu.Lock()
	s.be = be
	be.c.total++
	p.mu.Unlock()
	s.mu.Lock()
	s.server, s.serverRC, s.rest = server, serverRC, left
	aborted := s.aborted
	s.mu.Unlock()
	if aborted {
		_ = server.SetLinger(0)
		_ = server.Close()
		s.replayFailed()
		return
	}
	if len(first) > 0 {
		if _, err := server.Write(first); err != nil {
			s.abort()
			s.replayFailed()
			return
		}
	}
	s.rearm(toServer, false)
	s.rearm(toClient, false)
}

// replayFailed aborts the session whose both directions the replay held.
func (s *session) replayFailed() {
	s.abort()
	s.mu.Lock()
	s.state = [2]uint8{done, done}
	end := s.endLocked()
	s.mu.Unlock()
	if end {
		s.end()
	}
}
