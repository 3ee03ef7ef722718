package cluster

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
)

// The push loop: this node's state to every member, and the states members send back.

// pushLoop sends the local state to every peer on change and every StateInterval.
func (c *Cluster) pushLoop(ctx context.Context) {
	poll := time.NewTicker(c.tun.PollInterval)
	defer poll.Stop()
	var last NodeState
	var lastSent time.Time
	for {
		force := false
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		case <-c.push:
			force = true
		}
		st := c.deps.Local.LocalState()
		changed := stateChanged(last, st)
		c.setLocal(st)
		if changed {
			c.kickEval()
		}
		if !force && !changed && time.Since(lastSent) < c.tun.StateInterval {
			continue
		}
		last, lastSent = st, time.Now()
		c.sendState(st)
	}
}

func stateChanged(a, b NodeState) bool {
	if a.VRRPState != b.VRRPState || a.EffectivePriority != b.EffectivePriority ||
		a.HoldsVIP != b.HoldsVIP || a.ConfigFingerprint != b.ConfigFingerprint ||
		len(a.Backends) != len(b.Backends) || a.PrimaryAddr != b.PrimaryAddr {
		return true
	}
	for k, v := range a.Backends {
		if w, ok := b.Backends[k]; !ok || w != v {
			return true
		}
	}
	return false
}

func (c *Cluster) setLocal(st NodeState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.VRRPState != c.local.VRRPState || c.localSince.IsZero() {
		c.localSince = time.Now()
	}
	c.local = st
}

func (c *Cluster) wireLocal(st NodeState) wireState {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	w := wireState{NodeState: st, Boot: c.boot, Seq: c.seq, Resigned: c.resign != nil, Conns: c.localConns}
	w.Name = c.cfg.NodeName
	now := time.Now()
	if len(st.LastAdvertFrom) > 0 {
		w.AdvertAgeMs = make(map[string]int64, len(st.LastAdvertFrom))
		for a, t := range st.LastAdvertFrom {
			w.AdvertAgeMs[a.String()] = now.Sub(t).Milliseconds()
		}
	}
	return w
}

// memberNodes returns the other gossip members (alive or suspect) as fresh copies made from
// what the event delegate recorded. memberlist's Members() hands out pointers to its own node
// records, which its goroutines rewrite without a lock a reader could take (the race detector
// caught SendReliable reading one while a gossip packet updated it).
func (c *Cluster) memberNodes() []*memberlist.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*memberlist.Node
	for _, p := range c.peers {
		if !p.member {
			continue
		}
		ap, err := netip.ParseAddrPort(p.addr)
		if err != nil {
			continue
		}
		out = append(out, &memberlist.Node{Name: p.name, Addr: net.IP(ap.Addr().AsSlice()), Port: ap.Port()})
	}
	return out
}

func (c *Cluster) sendState(st NodeState) {
	msg, err := encodeState(c.wireLocal(st))
	if err != nil {
		c.logger.Error("gossip state not sent", "err", err)
		return
	}
	for _, n := range c.memberNodes() {
		if len(msg) > 1200 {
			err = c.ml.SendReliable(n, msg)
		} else {
			err = c.ml.SendBestEffort(n, msg)
		}
		if err != nil {
			c.logger.Debug("gossip state not sent", "peer", n.Name, "err", err)
			continue
		}
		c.mu.Lock()
		c.ctr.StateSent++
		c.mu.Unlock()
	}
}

// handleState records a peer's state (from a message or a push/pull).
func (c *Cluster) handleState(w wireState) {
	if w.Name == c.cfg.NodeName {
		return
	}
	c.mu.Lock()
	// Only a gossip member's state counts: a holder of the key who sends states under invented
	// names would otherwise grow the peer table and raise a peer_lost alarm for each.
	p := c.peers[w.Name]
	if p == nil || !p.member {
		c.ctr.StatesRejected++
		c.mu.Unlock()
		return
	}
	if p.hasState && w.Boot == p.state.Boot && w.Seq <= p.state.Seq {
		c.mu.Unlock()
		return // reordered or duplicate
	}
	now := time.Now()
	if !p.hasState || p.state.Boot != w.Boot {
		p.bootSeen = now // first state of this run of the peer's daemon
	}
	if !p.hasState || p.state.VRRPState != w.VRRPState || p.state.Boot != w.Boot {
		p.stateSince = now
	}
	p.state, p.hasState, p.lastSeen = w, true, now
	c.lastStateAt = now
	c.ctr.StateReceived++
	c.mu.Unlock()
	c.kickEval()
}

func (c *Cluster) peerLocked(name string) *peer {
	p := c.peers[name]
	if p == nil {
		p = &peer{name: name}
		c.peers[name] = p
	}
	return p
}
