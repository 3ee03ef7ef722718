package vrrp

import (
	"net/netip"
	"time"
)

// Status reporting: what /stats, the gossip layer and the daemon read of the router.

// Transition is one state change.
type Transition struct {
	From, To State
	At       time.Time
	Reason   string
}

// PeerStatus is what we know about another router from its adverts.
type PeerStatus struct {
	LastAdvertAt time.Time
	Priority     uint8
	Interval     time.Duration
	Adverts      uint64
}

// TrackStatus is the state of one Track.
type TrackStatus struct {
	Name    string
	Weight  int
	Failing bool
	Reason  string
}

// Status is a snapshot of a Router, safe to keep and share.
type Status struct {
	State             State
	Priority          uint8 // configured
	EffectivePriority uint8 // after tracking
	MasterAddr        netip.Addr
	PrimaryAddr       netip.Addr
	VIPs              []netip.Prefix
	HoldsVIP          bool
	Since             time.Time
	Transitions       []Transition // the last 32, oldest first
	TransitionsTotal  uint64       // all state changes since start
	AdvertsSent       uint64
	AdvertsReceived   uint64
	GARPsSent         uint64
	Drops             map[string]uint64 // received packets dropped, by reason
	SendErrors        map[string]uint64 // failed sends: "send" (adverts), "garp"
	// SourceTable counts what the source MAC check did because its table of
	// bound sources was full: "source_table_full" (a new source refused:
	// its adverts only keep a BACKUP where it is), "source_evicted" (the
	// least recently heard source forgotten to make room), "source_expired"
	// (a binding no advert confirmed for its TTL forgotten); SourcesBound
	// is how many sources it holds now (at most 64).
	SourceTable    map[string]uint64
	SourcesBound   int
	Faults         []string
	Tracks         []TrackStatus
	LastAdvertFrom netip.Addr
	LastAdvertAt   time.Time
	// Peers holds, per source address, the last valid advert received.
	Peers                map[netip.Addr]PeerStatus
	Interface            string
	VRID                 uint8
	Version              int
	Multicast            bool
	AdvertInterval       time.Duration
	MasterAdvertInterval time.Duration
}

// OnStateChange registers fn, called from the router's goroutine after
// every state change. fn must return quickly (hand work to another
// goroutine); it may call Status.
func (r *Router) OnStateChange(fn func(from, to State)) {
	r.mu.Lock()
	r.onChange = append(r.onChange, fn)
	r.mu.Unlock()
}

// Subscribe returns a channel that receives a Status after every state or
// priority change (only the latest is kept if the reader is slow), and a
// function that ends the subscription.
func (r *Router) Subscribe() (<-chan Status, func()) {
	ch := make(chan Status, 1)
	r.mu.Lock()
	id := r.nextSub
	r.nextSub++
	r.subs[id] = ch
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		delete(r.subs, id)
		r.mu.Unlock()
	}
}

// Status returns a snapshot.
func (r *Router) Status() Status {
	r.mu.Lock()
	s := r.statusLocked()
	r.mu.Unlock()
	return s
}

func (r *Router) statusLocked() Status {
	s := r.st
	s.VIPs = append([]netip.Prefix(nil), r.cfg.VIPs...)
	s.Transitions = append([]Transition(nil), r.st.Transitions...)
	s.Faults = append([]string(nil), r.st.Faults...)
	s.Tracks = make([]TrackStatus, 0, len(r.tracks))
	for _, t := range r.tracks {
		s.Tracks = append(s.Tracks, TrackStatus{Name: t.name, Weight: t.weight, Failing: t.failing, Reason: t.reason})
	}
	s.Peers = make(map[netip.Addr]PeerStatus, len(r.peers))
	for k, v := range r.peers {
		s.Peers[k] = v
	}
	s.AdvertsSent = r.advertsSent.Load()
	s.AdvertsReceived = r.advertsRecv.Load()
	s.GARPsSent = r.garpsSent.Load()
	s.Drops = r.drops.snapshot()
	s.SendErrors = r.sendErrs.snapshot()
	s.SourceTable = r.guardLog.snapshot()
	for _, k := range []string{"source_table_full", "source_evicted"} {
		s.SourceTable[k] += 0 // every event present, zeros included
	}
	s.SourceTable["source_expired"] = r.sources.expired.Load()
	s.SourcesBound = int(r.sources.bound.Load())
	return s
}

// LastAdvertFrom returns when the last valid advert from addr arrived
// (zero if never). The gossip layer uses it to spot blocked VRRP.
func (r *Router) LastAdvertFrom(addr netip.Addr) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peers[addr].LastAdvertAt
}

func (r *Router) notify() {
	r.mu.Lock()
	if len(r.subs) == 0 {
		r.mu.Unlock()
		return
	}
	s := r.statusLocked()
	for _, ch := range r.subs {
		select {
		case <-ch: // drop the stale one
		default:
		}
		select {
		case ch <- s:
		default:
		}
	}
	r.mu.Unlock()
}

func (r *Router) recordPeer(a rxAdvert) {
	r.advertsRecv.Add(1)
	r.mu.Lock()
	p := r.peers[a.src]
	p.LastAdvertAt = a.at
	p.Priority = a.priority
	p.Interval = a.interval
	p.Adverts++
	r.peers[a.src] = p
	r.st.LastAdvertFrom = a.src
	r.st.LastAdvertAt = a.at
	r.mu.Unlock()
}
