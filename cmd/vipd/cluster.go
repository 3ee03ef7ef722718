package main

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/vipd-project/vipd/pkg/cluster"
	"github.com/vipd-project/vipd/pkg/stats"
	"github.com/vipd-project/vipd/pkg/vrrp"
)

// This file wires the gossip layer: it feeds pkg/cluster this node's state and connection
// table, maps split-brain resignation onto a VRRP track of weight 0 (FAULT), and tells the
// cluster when VRRP took the VIP so it can reset a dead master's clients.

// localState implements cluster.Local from the daemon's parts.
type localState struct{ d *daemon }

func (l localState) LocalState() cluster.NodeState {
	d := l.d
	d.mu.Lock()
	cfg, fp := d.cfg, d.fingerprint
	d.mu.Unlock()
	st := d.router.Status()
	ns := cluster.NodeState{
		Name:              cfg.NodeName,
		Version:           version,
		VRRPState:         st.State.String(),
		Priority:          int(st.Priority),
		EffectivePriority: int(st.EffectivePriority),
		HoldsVIP:          st.HoldsVIP,
		VIPs:              slices.Clone(cfg.VRRP.VIPs),
		VRID:              cfg.VRRP.VRID,
		ProtoVersion:      cfg.VRRP.Version,
		AdvertInterval:    cfg.VRRP.AdvertInterval.D(),
		PrimaryAddr:       st.PrimaryAddr,
		ConfigFingerprint: fp,
		LastAdvertFrom:    make(map[netip.Addr]time.Time, len(st.Peers)),
	}
	for a, p := range st.Peers {
		ns.LastAdvertFrom[a] = p.LastAdvertAt
	}
	if d.monitor != nil {
		hs := d.monitor.Status()
		ns.Backends = make(map[string]bool, len(hs))
		for _, h := range hs {
			ns.Backends[h.Addr] = h.Up
		}
	}
	return ns
}

// proxyConns implements cluster.ConnSource from the proxy's connection table.
type proxyConns struct{ d *daemon }

func (p proxyConns) Conns() []cluster.Conn {
	cs := p.d.proxy.Conns()
	out := make([]cluster.Conn, len(cs))
	for i, c := range cs {
		out[i] = cluster.Conn{Client: c.Client, VIP: c.Local}
	}
	return out
}

// newCluster creates the gossip member, if configured; runCluster starts it.
func (d *daemon) newCluster() error {
	if !d.cfg.Cluster.Enabled {
		return nil
	}
	d.sbTrack = d.router.Track("split-brain", 0)
	deps := cluster.Deps{
		Local:        localState{d},
		OnSplitBrain: func(resign bool, reason string) { d.sbTrack.Set(resign, reason) },
		Reannounce:   func(string) { d.router.Announce() },
		Logger:       d.log,
	}
	if d.proxy != nil {
		deps.Conns = proxyConns{d}
	}
	cl, err := cluster.New(d.cfg.ClusterConfig(), deps)
	if err != nil {
		return err
	}
	d.cluster = cl
	d.router.OnStateChange(func(_, to vrrp.State) {
		cl.Notify() // push the new state to the peer now, not at the next poll
		if to == vrrp.StateMaster {
			go cl.OnBecameMaster()
		}
	})
	return nil
}

func (d *daemon) runCluster(ctx context.Context) error {
	if err := d.cluster.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	// A peer stopping at the same time cannot acknowledge our leave: not an error of ours.
	if err := d.cluster.Stop(); err != nil {
		d.log.Warn("cluster: leaving the gossip cluster", "err", err)
	}
	return nil
}

func clusterView(v cluster.View) *stats.ClusterView {
	out := &stats.ClusterView{Enabled: true}
	for _, m := range v.Members {
		out.Members = append(out.Members, stats.MemberView{
			Name:              m.Name,
			Addr:              m.Addr,
			Self:              m.Self,
			Alive:             m.Alive,
			VRRPState:         m.VRRPState,
			Priority:          m.EffectivePriority,
			HoldsVIP:          m.HoldsVIP,
			Backends:          m.Backends,
			ConfigFingerprint: m.ConfigFingerprint,
			Version:           m.Version,
			LastSeen:          m.LastSeen,
		})
	}
	for _, a := range v.Alarms {
		out.Alarms = append(out.Alarms, stats.Alarm{Kind: a.Kind, Since: a.Since, Message: a.Message})
	}
	return out
}
