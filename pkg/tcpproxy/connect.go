package tcpproxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Nonblocking backend connects. An accepted client's backend connection is
// opened by the accept loop itself: a nonblocking socket and connect(2),
// whose completion (the socket turning writable) the session's event loop
// reports like any other event. A connection being opened therefore costs
// its session and a timer (proxy.connect_timeout), not a goroutine with its
// stack and Go's net objects: a storm of 2,000 clients reconnecting at once
// (every kubelet after an LB failover) no longer starts 2,000 goroutines
// and their dials (vipd's RSS peak in that storm was 1.2-1.5 x HAProxy's).
// A failed or timed-out connect is handled like a failed dial (counted,
// reported to Health, logged) and the next candidate is tried at once, up
// to 1+Retries attempts. Backends given by host name (not an IP literal)
// are dialed by a goroutine with net.Dialer as before (see handleDial).

// connecting is the state of a session whose backend connection is being
// opened (nil once connected).
type connecting struct {
	ctx   context.Context // Run's forceCtx: cancelled when the drain grace is over
	cands []*backendState // left to try after the current one
	timer *time.Timer     // proxy.connect_timeout of the current attempt
	n     int             // attempts started
}

// backendAddrs returns the candidates' addresses when every one is an IP
// literal with a port (the nonblocking connect needs no resolver).
func backendAddrs(cands []*backendState) bool {
	for _, b := range cands {
		ap, err := netip.ParseAddrPort(b.addr)
		if err != nil || ap.Addr().Zone() != "" {
			return false
		}
	}
	return true
}

// openSocket starts a nonblocking connect to addr with the proxy's socket
// options (TCP_NODELAY, keepalive as Go's dialer sets them). The socket is
// connected when it turns writable with SO_ERROR 0.
func openSocket(addr string, keepAlive time.Duration) (int, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return -1, err
	}
	a := ap.Addr().Unmap()
	domain := unix.AF_INET
	var sa unix.Sockaddr
	if a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	} else {
		domain = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := setSockOpts(fd, keepAlive); err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	for {
		err = unix.Connect(fd, sa)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil && err != unix.EINPROGRESS {
		_ = unix.Close(fd)
		return -1, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: os.NewSyscallError("connect", err)}
	}
	return fd, nil
}

// setSockOpts sets what Go's dialer sets on a backend connection:
// TCP_NODELAY, and keepalive from keepAliveConfig.
func setSockOpts(fd int, keepAlive time.Duration) error {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return os.NewSyscallError("setsockopt TCP_NODELAY", err)
	}
	ka := keepAliveConfig(keepAlive)
	if !ka.Enable {
		return nil
	}
	for _, o := range []struct{ level, opt, v int }{
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(ka.Idle / time.Second)},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(ka.Interval / time.Second)},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, ka.Count},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
	}
	return nil
}

// startConnect creates the session of client fd cfd (taken from Go's net
// package) and starts connecting it to cands[0] (then the others). The
// session is in p.sessions from now on (drain and the idle sweeps see it).
func (p *Proxy) startConnect(ctx context.Context, s *session, cfd int, cands []*backendState, loops []*loop) {
	s.fd = [2]int{cfd, -1}
	s.clientRC, s.serverRC = &fdConn{s, 0}, &fdConn{s, 1}
	s.lastActive.Store(s.since.UnixNano())
	s.conn = &connecting{ctx: ctx, cands: cands}
	s.be = cands[0]
	s.be.current.Add(1)
	p.mu.Lock()
	p.nextID++
	s.id = p.nextID
	p.sessions[s.id] = s
	p.fe.total++
	p.mu.Unlock()
	s.l = loops[s.id%uint64(len(loops))]
	s.l.mu.Lock()
	s.l.sessions[s.id] = s
	s.l.mu.Unlock()
	s.mu.Lock()
	then := s.nextAttemptLocked()
	s.mu.Unlock()
	if then != nil {
		then()
	}
}

// nextAttemptLocked starts connecting to the next candidate; when none is
// left (or the drain grace is over) the client is reset and the session
// ends. It returns what to run after mu is released.
func (s *session) nextAttemptLocked() func() {
	c := s.conn
	for len(c.cands) > 0 && !s.aborted && c.ctx.Err() == nil {
		be := c.cands[0]
		c.cands = c.cands[1:]
		c.n++
		fd, err := openSocket(be.addr, s.cfg.cfg.KeepAlive)
		if err == nil {
			s.fd[toClient] = fd
			err = s.l.ctlEvents(unix.EPOLL_CTL_ADD, fd, s.id<<1|toClient, unix.EPOLLOUT)
			if err != nil {
				_ = unix.Close(fd)
				s.fd[toClient] = -1
			}
		}
		if err == nil {
			s.reg[toClient] = true
			s.setBackend(be)
			n := c.n
			c.timer = time.AfterFunc(s.cfg.cfg.ConnectTimeout, func() { s.connectTimedOut(n) })
			return nil
		}
		// Failed at once (refused on loopback, no route, out of descriptors).
		local := localResourceError(err)
		s.p.dialFailed(be, err, !local && len(c.cands) > 0, !local)
		if local {
			break
		}
	}
	s.conn = nil
	s.p.mu.Lock()
	s.p.fe.connErrors++
	s.p.mu.Unlock()
	s.abortLocked()
	s.state = [2]uint8{done, done}
	return s.finishLocked(toServer)
}

// setBackend makes be the session's backend (the one being connected to;
// it counts in be's current sessions).
func (s *session) setBackend(be *backendState) {
	old := s.be
	if old == be {
		return
	}
	be.current.Add(1)
	s.p.mu.Lock()
	s.be = be
	s.p.mu.Unlock()
	old.current.Add(-1)
}

// connectReadyLocked is called by the loop when the connecting socket is
// writable or failed: the session is established (both directions armed)
// or the next candidate is tried.
func (s *session) connectReadyLocked() func() {
	fd := s.fd[toClient]
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && soerr != 0 {
		err = unix.Errno(soerr)
	}
	if err == nil {
		s.conn.timer.Stop()
		s.rest = s.conn.cands // for a first-flight replay (replay.go)
		s.conn = nil
		if err := s.l.ctlEvents(unix.EPOLL_CTL_MOD, fd, s.id<<1|toClient, unix.EPOLLIN); err != nil {
			return s.failLocked(toClient)
		}
		if err := s.addLocked(toServer); err != nil {
			return s.failLocked(toClient)
		}
		be := s.be
		return func() {
			s.p.mu.Lock()
			be.c.total++
			s.p.mu.Unlock()
		}
	}
	addr := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s.be.addr))
	return s.attemptFailedLocked(&net.OpError{Op: "dial", Net: "tcp", Addr: addr, Err: os.NewSyscallError("connect", err)})
}

// connectTimedOut is attempt n's proxy.connect_timeout.
func (s *session) connectTimedOut(n int) {
	s.mu.Lock()
	var then func()
	if s.conn != nil && s.conn.n == n && !s.aborted {
		then = s.attemptFailedLocked(fmt.Errorf("dial tcp %s: connect: %w", s.be.addr, os.ErrDeadlineExceeded))
	}
	s.mu.Unlock()
	if then != nil {
		then()
	}
}

// attemptFailedLocked closes the socket of the attempt that failed with
// err, accounts for it (after mu is released) and tries the next one.
func (s *session) attemptFailedLocked(err error) func() {
	s.conn.timer.Stop()
	if fd := s.fd[toClient]; fd >= 0 {
		_ = unix.Close(fd) // leaves the epoll with it
		s.fd[toClient] = -1
	}
	s.reg[toClient] = false
	be := s.be
	retry := len(s.conn.cands) > 0
	s.p.dialFailed(be, err, retry, true)
	return s.nextAttemptLocked()
}

// dialFailed counts a failed dial of b (and a retry when another
// candidate follows), reports it to Health when report is set (not for a
// local resource error) and logs it, rate-limited.
func (p *Proxy) dialFailed(b *backendState, err error, retry, report bool) {
	if !report {
		if sup, ok := p.dialLog.allow(); ok {
			p.log.Error("proxy: cannot open a backend connection: local resources exhausted", "backend", b.addr, "err", err, "suppressed", sup)
		}
		return
	}
	p.mu.Lock()
	b.c.connErrors++
	if retry {
		b.c.retries++
		p.fe.retries++
	}
	p.mu.Unlock()
	if p.health != nil {
		p.health.ReportFailure(b.addr, err)
	}
	if sup, ok := p.dialLog.allow(); ok {
		p.log.Warn("proxy: backend dial failed", "backend", b.addr, "err", err, "retry", retry, "suppressed", sup)
	}
}
