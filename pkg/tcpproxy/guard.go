package tcpproxy

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Guards against clients that hold connections without using them (anyone
// who can reach the listener could otherwise fill max_conns and lock the
// kubelets out), after HAProxy's:
//
//   - FirstByteTimeout: a session whose client has sent nothing is closed
//     (a TLS client sends its ClientHello at once). Bytes queued on the
//     client's socket but not yet forwarded count as sent.
//   - HalfClosedTimeout (timeout client-fin / server-fin): once one side
//     has closed its half, the session is closed when nothing has moved
//     for that long.
//   - MaxConnsPerSource: a source address at its cap gets new connections
//     reset at once (counted, logged at most once per sourceLogEvery).
//
// An established session with both halves open is never closed by these:
// a quiet watch lives until IdleTimeout (0 by default: never). The two
// timeouts are enforced by the sweeper (Proxy.background) that also
// enforces IdleTimeout: no timer or deadline per connection.

// Why a session was closed by the sweeper.
const (
	closedIdle = iota
	closedFirstByte
	closedHalfClosed
	numClosedReasons
)

var closedReasons = [numClosedReasons]string{"idle_timeout", "first_byte_timeout", "half_closed_timeout"}

// sourceLogEvery is the least time between two log lines about refusals by
// the per-source cap, and between two about sessions closed by the
// first-byte or half-closed timeout: a flood must not flood the journal.
const sourceLogEvery = 10 * time.Second

// sources counts the current client connections of every source address
// (always, so a reload that sets MaxConnsPerSource sees the connections
// already open). An address leaves the map with its last connection.
type sources struct {
	mu sync.Mutex
	n  map[netip.Addr]int
}

// acquire counts a new connection from a unless a has limit (> 0) already.
func (t *sources) acquire(a netip.Addr, limit int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if limit > 0 && t.n[a] >= limit {
		return false
	}
	if t.n == nil {
		t.n = map[netip.Addr]int{}
	}
	t.n[a]++
	return true
}

func (t *sources) release(a netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n[a] <= 1 {
		delete(t.n, a)
	} else {
		t.n[a]--
	}
}

// admitSource counts the new connection c under its source address, or,
// when that source is at rc's MaxConnsPerSource, resets c (no TIME_WAIT is
// left here), counts and logs the refusal and returns false.
func (p *Proxy) admitSource(c *net.TCPConn, rc *runtimeConfig) (netip.AddrPort, bool) {
	var ap netip.AddrPort
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap = a.AddrPort()
	}
	limit := rc.cfg.MaxConnsPerSource
	if p.sources.acquire(sourceOf(ap), limit) {
		return ap, true
	}
	_ = c.SetLinger(0)
	_ = c.Close()
	p.mu.Lock()
	p.fe.refusedBySource++
	n := p.fe.refusedBySource
	p.mu.Unlock()
	if sup, ok := p.sourceLog.allow(); ok {
		p.log.Warn("proxy: a client address is at its connection cap, refusing its new connections",
			"source", sourceOf(ap).String(), "max_conns_per_source", limit, "refused_total", n, "suppressed", sup)
	}
	return ap, false
}

// sourceOf is the address a connection is counted under (an IPv4 client
// of a dual-stack listener counts as its IPv4 address).
func sourceOf(ap netip.AddrPort) netip.Addr { return ap.Addr().Unmap() }

// unmapped prints ap with an IPv4 address as such ("10.0.0.5:4242", not
// "[::ffff:10.0.0.5]:4242" as a dual-stack listener reports it).
func unmapped(ap netip.AddrPort) string {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// sweepEvery is the sweeper's period: a quarter of the shortest timeout
// set, 50 ms-1 s (a session is closed at most that late).
func sweepEvery(c Config) time.Duration {
	every := time.Second
	for _, t := range []time.Duration{c.IdleTimeout, c.FirstByteTimeout, c.HalfClosedTimeout} {
		if t > 0 {
			every = min(every, max(t/4, 50*time.Millisecond))
		}
	}
	return every
}

// sweep closes the sessions that have run out of one of c's timeouts.
func (p *Proxy) sweep(c Config) {
	if c.IdleTimeout <= 0 && c.FirstByteTimeout <= 0 && c.HalfClosedTimeout <= 0 {
		return
	}
	now := time.Now().UnixNano()
	type victim struct {
		s       *session
		why     int
		backend string // read under p.mu (a connecting session's changes)
	}
	var victims []victim
	p.mu.Lock()
	for _, s := range p.sessions {
		last := s.lastActive.Load()
		switch hc := s.halfClosed.Load(); {
		case c.IdleTimeout > 0 && now-last >= int64(c.IdleTimeout):
			victims = append(victims, victim{s, closedIdle, s.be.addr})
		case c.HalfClosedTimeout > 0 && hc != 0 && now-max(hc, last) >= int64(c.HalfClosedTimeout):
			victims = append(victims, victim{s, closedHalfClosed, ""})
		case c.FirstByteTimeout > 0 && s.bytesIn.Load() == 0 && now-s.since.UnixNano() >= int64(c.FirstByteTimeout):
			victims = append(victims, victim{s, closedFirstByte, ""})
		}
	}
	p.mu.Unlock()
	var closed [numClosedReasons]int
	var example [numClosedReasons]*session
	for _, v := range victims {
		if v.why == closedFirstByte && !v.s.clientSilent() {
			continue
		}
		if v.why == closedIdle {
			p.log.Info("proxy: closing idle connection", "client", v.s.clientAP.String(), "backend", v.backend, "idle_timeout", c.IdleTimeout)
		}
		v.s.abort()
		closed[v.why]++
		example[v.why] = v.s
	}
	p.mu.Lock()
	var total [numClosedReasons]uint64
	for why, n := range closed {
		p.fe.timedOut[why] += uint64(n)
		total[why] = p.fe.timedOut[why]
	}
	p.mu.Unlock()
	for _, why := range []int{closedFirstByte, closedHalfClosed} {
		if closed[why] == 0 {
			continue
		}
		if sup, ok := p.timeoutLog[why].allow(); ok {
			timeout := c.FirstByteTimeout
			if why == closedHalfClosed {
				timeout = c.HalfClosedTimeout
			}
			p.log.Warn("proxy: closed connections held without use", "reason", closedReasons[why], "timeout", timeout,
				"closed", closed[why], "closed_total", total[why], "client", unmapped(example[why].clientAP), "suppressed_lines", sup)
		}
	}
}

// clientSilent reports whether the client has still sent nothing: no byte
// forwarded, none being copied, none queued on its socket.
func (s *session) clientSilent() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bytesIn.Load() != 0 || s.state[toServer] == active || s.ended {
		return false
	}
	if fd := s.fd[0]; fd >= 0 { // the client's socket
		if n, err := unix.IoctlGetInt(fd, unix.SIOCINQ); err != nil || n > 0 {
			return false
		}
	}
	return true
}

// markHalfClosedLocked records when the first side of s closed its half.
func (s *session) markHalfClosedLocked() {
	if s.halfClosed.Load() == 0 {
		s.halfClosed.Store(time.Now().UnixNano())
	}
}
