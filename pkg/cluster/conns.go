package cluster

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// Connection tables: what each peer's proxy holds through the VIPs, kept for a takeover.

// MaxPeerTables caps how many peers' connection tables a node keeps: an LB tier has two or
// three hosts, and a holder of the gossip key who joins under many names must not make us
// keep (and at takeover probe) a table for each.
const MaxPeerTables = 8

// handleConns keeps a peer's connection table for resets at takeover. Gossip messages carry no
// authenticated sender beyond the shared key, so a table is tied to the member it names: that
// name must be a gossip member right now whose current run (boot) sent the latest state. Only
// connections to our own VIPs are kept (the reset probes are sent from that address), at most
// ConnTableMax of them (decodeConns), for at most MaxPeerTables peers.
func (c *Cluster) handleConns(t connTable) {
	if t.Name == c.cfg.NodeName {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	reject := func(why string) {
		c.ctr.ConnTablesRejected++
		if now := time.Now(); now.Sub(c.tableRejectLogged) >= 10*time.Second {
			c.tableRejectLogged = now
			c.logger.Warn("connection table from gossip refused (logged at most every 10 s)", "peer", t.Name, "why", why,
				"refused_total", c.ctr.ConnTablesRejected)
		}
	}
	p := c.peers[t.Name]
	switch {
	case p == nil || !p.member:
		reject("not a gossip member")
		return
	case !p.hasState || p.state.Boot != t.Boot:
		reject("not from the member's current run")
		return
	case c.tables[t.Name] == nil && len(c.tables) >= MaxPeerTables:
		reject(fmt.Sprintf("already keeping %d tables", MaxPeerTables))
		return
	}
	if old := c.tables[t.Name]; old != nil && old.boot == t.Boot && t.Seq <= old.seq {
		return
	}
	ours := vipSet(c.local.VIPs)
	conns := make([]Conn, 0, len(t.Conns))
	for _, cn := range t.Conns {
		if ours[cn.VIP.Addr().Unmap()] {
			conns = append(conns, normConn(cn))
		}
	}
	if dropped := len(t.Conns) - len(conns); dropped > 0 {
		reject(fmt.Sprintf("%d connections to addresses that are not our VIPs", dropped))
	}
	c.tables[t.Name] = &peerTable{conns: conns, at: time.Now(), boot: t.Boot, seq: t.Seq}
	c.ctr.ConnTablesReceived++
}

// connLoop pushes this node's connection table to peers when it changed, at most every
// ConnSyncInterval, and every 10 intervals regardless (for peers that restarted).
func (c *Cluster) connLoop(ctx context.Context) {
	t := time.NewTicker(c.tun.ConnSyncInterval)
	defer t.Stop()
	var last []byte
	var lastSent time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		conns := c.snapshotConns()
		msg := encodeConns(connTable{Name: c.cfg.NodeName, Boot: c.boot, Seq: c.connSeq.Add(1), Conns: conns})
		body := msg[1+1+len(c.cfg.NodeName)+16:] // without name, boot, seq
		if bytes.Equal(body, last) && time.Since(lastSent) < 10*c.tun.ConnSyncInterval {
			continue
		}
		last, lastSent = bytes.Clone(body), time.Now()
		for _, n := range c.memberNodes() {
			if err := c.ml.SendReliable(n, msg); err != nil {
				c.logger.Debug("connection table not sent", "peer", n.Name, "err", err)
				last = nil // retry next tick
				continue
			}
			c.mu.Lock()
			c.ctr.ConnTablesSent++
			c.mu.Unlock()
		}
	}
}

// snapshotConns returns the local table: only connections to a VIP (when the local state lists
// VIPs; a listener on ":6443" also takes connections to the host's own address), addresses
// unmapped, sorted, capped at ConnTableMax.
func (c *Cluster) snapshotConns() []Conn {
	if c.deps.Conns == nil || c.cfg.ConnTableMax <= 0 {
		return nil
	}
	c.mu.Lock()
	vipList := c.local.VIPs
	c.mu.Unlock()
	vips := vipSet(vipList)
	all := c.deps.Conns.Conns()
	conns := make([]Conn, 0, min(len(all), c.cfg.ConnTableMax))
	for _, cn := range all {
		cn = normConn(cn)
		if len(vips) > 0 && !vips[cn.VIP.Addr()] {
			continue
		}
		if len(conns) == c.cfg.ConnTableMax {
			break
		}
		conns = append(conns, cn)
	}
	sortConns(conns)
	c.mu.Lock()
	c.localConns = len(conns)
	c.mu.Unlock()
	return conns
}
