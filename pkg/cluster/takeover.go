package cluster

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"time"
)

// Takeover: after this node took the VIP, reset the clients of connections a dead master held.

// OnBecameMaster is called by the wiring when VRRP has taken the VIP (addresses added and the
// gratuitous ARP burst sent). If conn_reset is on, it resets, in the background and at the
// configured rate, the clients of the connections that other nodes held and this node does not.
//
// A peer that still claims MASTER StaleAfter (1.5 s) after this call is skipped (split brain:
// its clients still reach it); one that steps down (preemption) is handled when it does. A
// crashed master's last state says
// MASTER and is fresh for a while; it is treated as gone once it has been silent for
// 2.5 state intervals (625 ms by default), which with 200 ms adverts has passed by the time
// VRRP fails over (3 intervals + skew), so the reset starts at once.
func (c *Cluster) OnBecameMaster() {
	if c.resetter == nil || c.runCtx == nil || c.runCtx.Err() != nil {
		return
	}
	called := time.Now()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx := c.runCtx
		// Probes must leave after the VIP is on our interface and the gratuitous ARPs went
		// out, or the clients' answers go to the dead master's MAC.
		if !c.waitHoldsVIP(ctx, 2*time.Second) {
			c.logger.Warn("took over as MASTER but the VIP is not on the interface after 2s: resetting clients anyway")
		}
		var own map[Conn]bool
		if c.deps.Conns != nil {
			local := c.deps.Conns.Conns()
			own = make(map[Conn]bool, len(local))
			for _, cn := range local {
				own[normConn(cn)] = true
			}
		}
		deadline := time.Now().Add(c.tun.StaleAfter)
		for {
			conns, from, wait := c.takeoverConns(own, called)
			if len(conns) > 0 {
				c.resetConns(ctx, conns, from, 1)
				if c.tun.ResetRounds > 1 {
					c.wg.Add(1)
					go func() {
						defer c.wg.Done()
						for round := 2; round <= c.tun.ResetRounds; round++ {
							select {
							case <-ctx.Done():
								return
							case <-time.After(c.tun.ResetRoundGap):
							}
							c.resetConns(ctx, conns, from, round)
						}
					}()
				}
			}
			if wait <= 0 || time.Now().After(deadline) {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
}

// waitHoldsVIP waits until the local state says the VIP is held (then a little longer for the
// gratuitous ARP burst to reach the clients). It reports false on timeout.
func (c *Cluster) waitHoldsVIP(ctx context.Context, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !c.deps.Local.LocalState().HoldsVIP {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
	case <-time.After(c.tun.ResetDelay):
	}
	return true
}

func (c *Cluster) resetConns(ctx context.Context, conns []Conn, from []string, round int) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	start := time.Now()
	res, err := c.resetter.Reset(ctx, conns)
	c.mu.Lock()
	c.ctr.ConnResetRuns++
	c.ctr.ConnResetProbes += uint64(res.Sent)
	c.mu.Unlock()
	lvl := slog.LevelInfo
	if err != nil {
		lvl = slog.LevelWarn
	}
	c.logger.Log(ctx, lvl, "reset clients of the previous master's connections", "from", from, "round", round,
		"tracked", len(conns), "sent", res.Sent, "held_here", res.Held, "over_cap", res.OverCap,
		"failed", res.Failed, "took", time.Since(start), "err", err)
}

// takeoverConns collects and consumes the tables of peers that are gone or not MASTER. For a
// peer heard as MASTER recently but not since called, it returns how long to wait before it
// counts as silent.
func (c *Cluster) takeoverConns(own map[Conn]bool, called time.Time) ([]Conn, []string, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	quiet := c.tun.StateInterval * 5 / 2
	seen := make(map[Conn]bool)
	var out []Conn
	var from []string
	var wait time.Duration
	for name, t := range c.tables {
		if now.Sub(t.at) > c.tun.ConnTableTTL {
			delete(c.tables, name)
			continue
		}
		if p := c.peers[name]; p != nil && p.member && p.hasState && isMaster(p.state.VRRPState) &&
			p.state.VRID == c.local.VRID && now.Sub(p.lastSeen) < quiet {
			// Heard as MASTER recently. Silent since: wait until it counts as gone. Heard
			// after our takeover: either it is about to step down (preemption) or this is a
			// split brain; look again shortly, and leave its clients alone if it stays MASTER.
			w := p.lastSeen.Add(quiet).Sub(now)
			if p.lastSeen.After(called) {
				w = c.tun.PollInterval
			}
			if wait == 0 || w < wait {
				wait = w
			}
			continue
		}
		for _, cn := range t.conns {
			if !own[cn] && !seen[cn] {
				seen[cn] = true
				out = append(out, cn)
			}
		}
		from = append(from, name)
		delete(c.tables, name)
	}
	return out, from, wait
}

func normConn(c Conn) Conn {
	return Conn{Client: netip.AddrPortFrom(c.Client.Addr().Unmap(), c.Client.Port()),
		VIP: netip.AddrPortFrom(c.VIP.Addr().Unmap(), c.VIP.Port())}
}

// vipSet parses "10.0.0.100/24" or "10.0.0.100" entries; unparseable ones are skipped.
func vipSet(vips []string) map[netip.Addr]bool {
	out := make(map[netip.Addr]bool, len(vips))
	for _, v := range vips {
		if p, err := netip.ParsePrefix(v); err == nil {
			out[p.Addr().Unmap()] = true
		} else if a, err := netip.ParseAddr(v); err == nil {
			out[a.Unmap()] = true
		}
	}
	return out
}

func isMaster(s string) bool { return strings.EqualFold(s, "MASTER") }

func (c *Cluster) aliveLocked(p *peer, now time.Time) bool {
	return p.member && p.hasState && now.Sub(p.lastSeen) <= c.tun.StaleAfter
}
