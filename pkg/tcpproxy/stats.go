package tcpproxy

import (
	"fmt"
	"net/netip"
	"time"
)

// FrontendStats are the client-side counters.
type FrontendStats struct {
	Listen string // bound address ("" when not bound)
	// CurrentSessions: client connections being handled (dialing or
	// established).
	CurrentSessions int64
	// TotalSessions: client connections accepted and handled (not those
	// refused by the cap).
	TotalSessions uint64
	MaxConns      int
	// RefusedByCap: connections closed at once because MaxConns was hit.
	RefusedByCap uint64
	// MaxConnsPerSource is the cap per client address (0: none);
	// RefusedBySource counts connections reset at once because their
	// source address was at it (not in TotalSessions either).
	MaxConnsPerSource int
	RefusedBySource   uint64
	// TimedOut counts sessions closed by a timeout, by reason:
	// "first_byte_timeout", "half_closed_timeout", "idle_timeout" (every
	// reason present, zeros included).
	TimedOut map[string]uint64
	// ConnErrors: client connections closed because no backend could be
	// reached.
	ConnErrors uint64
	// Retries: dials retried on another backend.
	Retries uint64
	// BytesIn from clients, BytesOut to clients (open connections
	// included, see the package doc).
	BytesIn  uint64
	BytesOut uint64
}

// BackendStats are one backend's counters. Bytes are HAProxy-style:
// BytesIn came from clients (sent to this backend), BytesOut went to
// clients (received from it).
type BackendStats struct {
	Addr string
	// Up as reported by Health when the snapshot was taken.
	Up bool
	// Removed: no longer configured but connections remain.
	Removed bool
	// Admin is the run-time administrative state (READY for a removed one).
	Admin           BackendAdmin
	CurrentSessions int64
	TotalSessions   uint64
	// ConnErrors: failed dials to this backend.
	ConnErrors uint64
	// Retries: failed dials to this backend after which another backend
	// was tried.
	Retries  uint64
	BytesIn  uint64
	BytesOut uint64
}

// Stats is a snapshot for /stats and /metrics.
type Stats struct {
	Serving       bool
	ServingReason string
	Frontend      FrontendStats
	Backends      []BackendStats // configured order, then removed ones
}

// ConnInfo is one established client connection (for the gossip layer).
type ConnInfo struct {
	Client  netip.AddrPort
	Local   netip.AddrPort
	Backend string
	Since   time.Time
}

// Stats returns a snapshot. Byte counters include the bytes forwarded so
// far by open connections (updated after each burst).
func (p *Proxy) Stats() Stats {
	rc := p.cfg.Load()
	ok, reason := p.CanServe()
	st := Stats{Serving: ok, ServingReason: reason}
	st.Frontend.CurrentSessions = p.active.Load()
	st.Frontend.MaxConns = rc.cfg.MaxConns
	st.Frontend.MaxConnsPerSource = rc.cfg.MaxConnsPerSource

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		st.Frontend.Listen = p.ln.Addr().String()
	}
	st.Frontend.TotalSessions = p.fe.total
	st.Frontend.RefusedByCap = p.fe.refusedByCap
	st.Frontend.RefusedBySource = p.fe.refusedBySource
	st.Frontend.TimedOut = make(map[string]uint64, numClosedReasons)
	for why, n := range p.fe.timedOut {
		st.Frontend.TimedOut[closedReasons[why]] = n
	}
	st.Frontend.ConnErrors = p.fe.connErrors
	st.Frontend.Retries = p.fe.retries
	st.Frontend.BytesIn = p.fe.bytesIn
	st.Frontend.BytesOut = p.fe.bytesOut

	liveIn := map[*backendState]uint64{}
	liveOut := map[*backendState]uint64{}
	for _, s := range p.sessions {
		in, out := s.bytesIn.Load(), s.bytesOut.Load()
		liveIn[s.be] += in
		liveOut[s.be] += out
		st.Frontend.BytesIn += in
		st.Frontend.BytesOut += out
	}
	bs := func(b *backendState) BackendStats {
		return BackendStats{
			Addr:            b.addr,
			CurrentSessions: b.current.Load(),
			TotalSessions:   b.c.total,
			ConnErrors:      b.c.connErrors,
			Retries:         b.c.retries,
			BytesIn:         b.c.bytesIn + liveIn[b],
			BytesOut:        b.c.bytesOut + liveOut[b],
		}
	}
	seen := map[*backendState]bool{}
	for _, b := range rc.backends {
		seen[b] = true
		x := bs(b)
		x.Up = p.health == nil || p.health.IsUp(b.addr)
		x.Admin = b.adm.snapshotLocked(b.addr)
		st.Backends = append(st.Backends, x)
	}
	for _, b := range p.backends {
		if !seen[b] && b.current.Load() > 0 {
			x := bs(b)
			x.Removed = true
			x.Admin = b.adm.snapshotLocked(b.addr)
			st.Backends = append(st.Backends, x)
		}
	}
	return st
}

// Conns returns the established connections.
func (p *Proxy) Conns() []ConnInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]ConnInfo, 0, len(p.sessions))
	for _, s := range p.sessions {
		out = append(out, ConnInfo{Client: s.clientAP, Local: s.localAP, Backend: s.be.addr, Since: s.since})
	}
	return out
}

// CanServe reports whether this host can serve: the listener is bound, the
// proxy is not shutting down, and at least MinHealthy backends are UP and
// taking connections (not drained, disabled or at weight 0). The reason is a
// short sentence for logs and /stats.
func (p *Proxy) CanServe() (bool, string) {
	p.mu.Lock()
	bound, lerr, stopping := p.ln != nil, p.listenErr, p.stopping
	p.mu.Unlock()
	switch {
	case stopping:
		return false, "shutting down"
	case lerr != nil:
		return false, "listener failed: " + lerr.Error()
	case !bound:
		return false, "listener not bound"
	}
	rc := p.cfg.Load()
	up, held := 0, 0
	for _, b := range rc.backends {
		if !b.adm.accepting() {
			held++
			continue
		}
		if p.health == nil || p.health.IsUp(b.addr) {
			up++
		}
	}
	admin := ""
	if held > 0 {
		admin = fmt.Sprintf(" (%d drained, disabled or at weight 0)", held)
	}
	minH := rc.cfg.MinHealthy
	if up < minH {
		return false, fmt.Sprintf("%d of %d backends UP%s, need %d (proxy.min_healthy_backends)", up, len(rc.backends), admin, minH)
	}
	return true, fmt.Sprintf("%d of %d backends UP%s", up, len(rc.backends), admin)
}

// OnServingChange registers fn, called with the result of CanServe each
// time it changes (and once with the first evaluation after Run binds or
// fails to bind). Calls are serialized; fn must not block or call back into
// OnServingChange.
func (p *Proxy) OnServingChange(fn func(ok bool, reason string)) {
	p.servMu.Lock()
	defer p.servMu.Unlock()
	p.servCBs = append(p.servCBs, fn)
}

// HealthChanged re-evaluates CanServe now (for Health implementations
// without Subscribe; *health.Monitor needs no call).
func (p *Proxy) HealthChanged() { p.evaluate() }

func (p *Proxy) evaluate() {
	p.servMu.Lock()
	defer p.servMu.Unlock()
	ok, reason := p.CanServe()
	if p.servLast != nil && *p.servLast == ok {
		return
	}
	p.servLast = &ok
	lvl := p.log.Info
	if !ok {
		lvl = p.log.Warn
	}
	lvl("proxy: serving state changed", "can_serve", ok, "reason", reason)
	for _, fn := range p.servCBs {
		fn(ok, reason)
	}
}
