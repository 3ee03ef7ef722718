package tcpproxy

import (
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// AdminState is a backend's run-time administrative state, set by an operator (vipd backend
// drain/disable/enable over the control socket), independent of its health.
type AdminState uint32

// Administrative states (HAProxy's READY, DRAIN and MAINT).
const (
	// AdminReady: the backend takes new connections when it is UP.
	AdminReady AdminState = iota
	// AdminDrain: no new connections; open ones go on, and are closed when the drain's
	// grace is over.
	AdminDrain
	// AdminMaint (disabled): no new connections, and the open ones were closed when it was
	// set. Health checks go on, so enabling it again uses what they know.
	AdminMaint
)

func (s AdminState) String() string {
	switch s {
	case AdminDrain:
		return "DRAIN"
	case AdminMaint:
		return "MAINT"
	default:
		return "READY"
	}
}

// Backend weights: a new backend (and one a reload brings back) starts at DefaultWeight;
// weights are 0-MaxWeight like HAProxy's. Weight 0 takes no new connections (HAProxy shows
// such a server as DRAIN). Weights share out new connections among the UP backends: in
// proportion for roundrobin, and leastconn picks the lowest open connections per weight.
const (
	DefaultWeight = 1
	MaxWeight     = 256
)

// admin is a backend's administrative state. state and weight are read per new connection
// (atomics); the rest is under Proxy.mu.
type admin struct {
	state  atomic.Uint32
	weight atomic.Int32
	cw     int // smooth weighted round-robin's current weight, under Proxy.wrrMu

	since    time.Time   // when state last changed
	graceEnd time.Time   // drain: when open connections will be closed (zero: never)
	timer    *time.Timer // drain: closes open connections at graceEnd
	gen      uint64      // bumped on each change: a stale timer does nothing
}

func (a *admin) accepting() bool {
	return AdminState(a.state.Load()) == AdminReady && a.weight.Load() > 0
}

// resetLocked returns a to READY at the default weight (a backend a reload removed).
func (a *admin) resetLocked() {
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	a.gen++
	a.state.Store(uint32(AdminReady))
	a.weight.Store(DefaultWeight)
	a.since, a.graceEnd = time.Time{}, time.Time{}
}

// BackendAdmin is one configured backend's administrative state.
type BackendAdmin struct {
	Addr   string
	State  AdminState
	Weight int
	// Since is when State was last set (zero: never changed since start).
	Since time.Time
	// GraceEnd is, while draining with a grace, when open connections will be closed.
	GraceEnd time.Time
}

func (p *Proxy) backendByAddr(addr string) (*backendState, error) {
	rc := p.cfg.Load()
	for _, b := range rc.backends {
		if b.addr == addr {
			return b, nil
		}
	}
	return nil, fmt.Errorf("backend %s is not configured", addr)
}

// SetAdmin sets the administrative state of the configured backend addr. AdminDrain with
// grace > 0 closes the backend's open connections after grace (grace 0: at once, like
// AdminMaint); AdminMaint closes them now; AdminReady cancels a pending drain. It returns the
// number of connections closed now.
func (p *Proxy) SetAdmin(addr string, st AdminState, grace time.Duration) (int, error) {
	b, err := p.backendByAddr(addr)
	if err != nil {
		return 0, err
	}
	closeNow := st == AdminMaint || (st == AdminDrain && grace <= 0)
	p.mu.Lock()
	a := &b.adm
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	a.gen++
	gen := a.gen
	if AdminState(a.state.Load()) != st {
		a.since = time.Now()
	}
	a.state.Store(uint32(st))
	a.graceEnd = time.Time{}
	if st == AdminDrain && grace > 0 {
		a.graceEnd = time.Now().Add(grace)
		a.timer = time.AfterFunc(grace, func() {
			p.mu.Lock()
			stale := b.adm.gen != gen
			p.mu.Unlock()
			if !stale {
				if n := p.closeBackend(b); n > 0 {
					p.log.Info("proxy: drain grace over, closing the backend's connections", "backend", b.addr, "connections", n)
				}
			}
		})
	}
	p.mu.Unlock()
	n := 0
	if closeNow {
		n = p.closeBackend(b)
	}
	p.evaluate()
	return n, nil
}

// SetWeight sets the weight (0-MaxWeight) of the configured backend addr.
func (p *Proxy) SetWeight(addr string, w int) error {
	if w < 0 || w > MaxWeight {
		return fmt.Errorf("weight %d for %s: must be 0-%d", w, addr, MaxWeight)
	}
	b, err := p.backendByAddr(addr)
	if err != nil {
		return err
	}
	b.adm.weight.Store(int32(w))
	p.evaluate()
	return nil
}

// Admin returns the administrative state of the configured backends, in configuration order.
func (p *Proxy) Admin() []BackendAdmin {
	rc := p.cfg.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]BackendAdmin, 0, len(rc.backends))
	for _, b := range rc.backends {
		out = append(out, b.adm.snapshotLocked(b.addr))
	}
	return out
}

func (a *admin) snapshotLocked(addr string) BackendAdmin {
	return BackendAdmin{Addr: addr, State: AdminState(a.state.Load()), Weight: int(a.weight.Load()), Since: a.since, GraceEnd: a.graceEnd}
}

// closeBackend closes (resets) the open connections to b and returns how many.
func (p *Proxy) closeBackend(b *backendState) int {
	p.mu.Lock()
	var victims []*session
	for _, s := range p.sessions {
		if s.be == b {
			victims = append(victims, s)
		}
	}
	p.mu.Unlock()
	for _, s := range victims {
		s.abort()
	}
	return len(victims)
}

// weighted reorders up (the accepting UP backends, already rotated) by weight: for
// roundrobin the first is chosen by smooth weighted round-robin (nginx's), for leastconn they
// are sorted by open connections per weight. With equal weights the order is left as it is.
func (p *Proxy) weighted(up []*backendState, leastconn bool) {
	if len(up) < 2 {
		return
	}
	w := make([]int64, len(up))
	equal := true
	for i, b := range up {
		w[i] = int64(b.adm.weight.Load())
		equal = equal && w[i] == w[0]
	}
	if equal || leastconn {
		return
	}
	p.wrrMu.Lock()
	total, best := 0, 0
	for i, b := range up {
		b.adm.cw += int(w[i])
		total += int(w[i])
		if b.adm.cw > up[best].adm.cw {
			best = i
		}
	}
	up[best].adm.cw -= total
	p.wrrMu.Unlock()
	first := up[best]
	copy(up[1:best+1], up[:best])
	up[0] = first
}

// lessLoaded compares open connections per weight (leastconn): a/wa < b/wb.
func lessLoaded(ca, wa, cb, wb int64) bool {
	if wa == wb {
		return ca < cb
	}
	return ca*wb < cb*wa
}

// CloseLocal closes (resets) the open connections whose local address is one of addrs (the
// VIPs after this host gave them up: the clients' packets now reach another host, so those
// connections can never finish here) and returns how many.
func (p *Proxy) CloseLocal(addrs []netip.Addr) int {
	p.mu.Lock()
	var victims []*session
	for _, s := range p.sessions {
		if slices.Contains(addrs, s.localAP.Addr().Unmap()) {
			victims = append(victims, s)
		}
	}
	p.mu.Unlock()
	for _, s := range victims {
		s.abort()
	}
	return len(victims)
}
