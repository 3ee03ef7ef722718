package cluster

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Joining the configured peers, and rejoining those that are missing.

// joinLoop joins configured peers that are not alive members, with backoff, for ever: restarts
// and partitions heal on their own.
func (c *Cluster) joinLoop(ctx context.Context) {
	if len(c.cfg.Peers) == 0 {
		return
	}
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		missing := c.missingPeers()
		if len(missing) == 0 {
			wait = c.tun.RejoinMin
			continue
		}
		n, err := c.ml.Join(missing)
		if err == nil && n > 0 {
			c.logger.Info("joined gossip peers", "peers", missing, "contacted", n)
			wait = c.tun.RejoinMin
			c.Notify()
			continue
		}
		c.mu.Lock()
		c.ctr.JoinFailures++
		mismatch := !c.keyMismatch.IsZero() && time.Since(c.keyMismatch) < 30*time.Second
		c.mu.Unlock()
		hint := "peer down, vipd not running there, or TCP/UDP gossip port blocked; gossip key mismatch? (cluster.key_file must be the same on all LB hosts)"
		if mismatch {
			hint = "gossip key mismatch? undecryptable gossip was received: cluster.key_file must be the same on all LB hosts"
		}
		if wait >= c.tun.RejoinMax || wait == 0 {
			c.logger.Warn("join gossip peers failed", "peers", missing, "err", err, "hint", hint)
		} else {
			c.logger.Debug("join gossip peers failed", "peers", missing, "err", err)
		}
		if wait == 0 {
			wait = c.tun.RejoinMin
		} else {
			wait = min(wait*2, c.tun.RejoinMax)
		}
	}
}

// missingPeers resolves the configured peers and returns those no alive member answers at.
func (c *Cluster) missingPeers() []string {
	alive := make(map[string]bool)
	for _, n := range c.memberNodes() {
		alive[net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))] = true
	}
	var missing []string
	resolved := make(map[string][]string, len(c.cfg.Peers))
	for _, p := range c.cfg.Peers {
		addrs := resolvePeer(p)
		resolved[p] = addrs
		found := false
		for _, a := range addrs {
			if alive[a] {
				found = true
			}
		}
		if !found {
			missing = append(missing, p)
		}
	}
	c.mu.Lock()
	c.resolved = resolved
	c.mu.Unlock()
	return missing
}

func resolvePeer(p string) []string {
	host, port, err := net.SplitHostPort(p)
	if err != nil {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return []string{net.JoinHostPort(a.Unmap().String(), port)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip, port))
	}
	return out
}
