package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
)

// Alarm kinds.
const (
	AlarmSplitBrain          = "split_brain"
	AlarmBlockedVRRP         = "blocked_vrrp"
	AlarmConfigDrift         = "config_drift"
	AlarmBackendDisagreement = "backend_disagreement"
	AlarmPeerLost            = "peer_lost"
	AlarmGossipKey           = "gossip_key"
)

// AlarmKinds lists every kind, for exporting gauges that are zero when nothing is wrong.
var AlarmKinds = []string{AlarmSplitBrain, AlarmBlockedVRRP, AlarmConfigDrift,
	AlarmBackendDisagreement, AlarmPeerLost, AlarmGossipKey}

// Alarm is one active condition: its kind, the peer it concerns, since when, and a message
// naming the cause and the fix.
type Alarm struct {
	Kind    string    `json:"kind"`
	Peer    string    `json:"peer,omitempty"`
	Since   time.Time `json:"since"`
	Message string    `json:"message"`
}

type alarmKey struct{ kind, peer string }

// Counters are cumulative numbers the stats package can export.
type Counters struct {
	AlarmsRaised       map[string]uint64 `json:"alarms_raised"` // by kind
	StateSent          uint64            `json:"state_sent"`
	StateReceived      uint64            `json:"state_received"`
	StatesRejected     uint64            `json:"states_rejected"` // under a name that is not a gossip member
	ConnTablesSent     uint64            `json:"conn_tables_sent"`
	ConnTablesReceived uint64            `json:"conn_tables_received"`
	ConnTablesRejected uint64            `json:"conn_tables_rejected"` // refused, or entries dropped (see handleConns)
	ConnResetRuns      uint64            `json:"conn_reset_runs"`
	ConnResetProbes    uint64            `json:"conn_reset_probes"`
	JoinFailures       uint64            `json:"join_failures"`
	Resignations       uint64            `json:"resignations"`
}

func (c *Cluster) evalLoop(ctx context.Context) {
	t := time.NewTicker(c.tun.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
		c.evaluate()
	}
}

type condition struct {
	key  alarmKey
	msg  string
	hold time.Duration
}

// evaluate recomputes every condition, raises and clears alarms, and drives resign-lower.
func (c *Cluster) evaluate() {
	now := time.Now()
	c.mu.Lock()
	local := c.local
	if local.Name == "" && local.VRRPState == "" && c.localSince.IsZero() {
		c.mu.Unlock()
		return // no local state yet
	}
	var conds []condition
	add := func(kind, peer, msg string, hold time.Duration) {
		conds = append(conds, condition{alarmKey{kind, peer}, msg, hold})
	}
	// Tables of peers that stopped sending them are kept for one takeover, ConnTableTTL long.
	for name, t := range c.tables {
		if now.Sub(t.at) > c.tun.ConnTableTTL {
			delete(c.tables, name)
		}
	}
	// A peer renamed (same address, new node_name) supersedes its old name.
	aliveAt := make(map[string]bool)
	for _, p := range c.peers {
		if c.aliveLocked(p, now) && p.addr != "" {
			aliveAt[p.addr] = true
		}
	}
	for n, p := range c.peers {
		if !c.aliveLocked(p, now) && p.addr != "" && aliveAt[p.addr] {
			delete(c.peers, n)
		}
	}
	names := make([]string, 0, len(c.peers))
	for n := range c.peers {
		names = append(names, n)
	}
	sort.Strings(names)
	var splitPeers []*peer
	var reannounce []string
	for _, name := range names {
		p := c.peers[name]
		// A peer MASTER beside us, while it lasts and once it ends (resigned, stepped down,
		// silent): its gratuitous ARPs may have taken clients with it. The winner of
		// resign-lower announces at once, so clients are back here before the loser drops
		// the VIP, and again when it did.
		if isMaster(local.VRRPState) && c.masterNowLocked(p, now) {
			if !p.masterWithUs && c.cfg.SplitBrain == SplitBrainResignLower && !lowerThan(local, c.cfg.NodeName, p.state) {
				reannounce = append(reannounce, name)
			}
			p.masterWithUs = true
		} else if p.masterWithUs {
			p.masterWithUs = false
			if isMaster(local.VRRPState) {
				reannounce = append(reannounce, name)
			}
		}
		if !c.aliveLocked(p, now) {
			if p.member || p.hasState || !p.lastChanged.IsZero() {
				add(AlarmPeerLost, name, c.lostMsg(p, now), 0)
			}
			continue
		}
		ps := p.state
		sameVR := ps.VRID == local.VRID
		th := c.blockedAfter(p, local)
		// Split brain: only on evidence that the peer is MASTER now (see masterNowLocked),
		// never on a last word from a peer that may be dead or frozen.
		if sameVR && isMaster(local.VRRPState) && c.masterNowLocked(p, now) {
			add(AlarmSplitBrain, name, fmt.Sprintf(
				"split brain: this node (%s, priority %d) and %s (%s, priority %d) are both MASTER for VRID %d, so the VIP is on two hosts and ARP caches flip between them; "+
					"usual cause: VRRP adverts (IP protocol 112) dropped between them by a firewall or security group, or different VRRP settings (version, auth, VRID); see blocked_vrrp/config_drift",
				local.Name, local.EffectivePriority, name, addrOr(ps.PrimaryAddr, p.addr), ps.EffectivePriority, local.VRID), c.tun.SplitBrainHold)
			splitPeers = append(splitPeers, p)
		}
		// Blocked VRRP, inbound: the peer claims MASTER, freshly, but its adverts do not arrive
		// here. A peer that went quiet on gossip may be dead: that is peer_lost, not this.
		if sameVR && ps.PrimaryAddr.IsValid() && now.Sub(p.stateSince) > th && c.advertsBlockedLocked(p, local, now) {
			age, ok := advertAge(local.LastAdvertFrom, ps.PrimaryAddr, now)
			add(AlarmBlockedVRRP, name, fmt.Sprintf(
				"blocked VRRP: %s is alive on gossip and MASTER for VRID %d, but no VRRP advert from %s has arrived here for %s (%d advert intervals): "+
					"IP protocol 112 (VRRP) from %s to this host is dropped; allow protocol 112 (vrrp) between the LB hosts in the firewall (nftables/iptables: ip protocol vrrp accept) or the cloud security group, or use unicast_peers where multicast is filtered",
				name, local.VRID, ps.PrimaryAddr, ageText(age, ok), c.cfg.BlockedVRRPIntervals, ps.PrimaryAddr), 0)
		}
		// Blocked VRRP, outbound: we are MASTER, the peer is BACKUP (or resigned) and does not
		// hear us.
		// A peer that just started needs a moment to hear (and report) our adverts.
		if sameVR && isMaster(local.VRRPState) && local.PrimaryAddr.IsValid() && now.Sub(c.localSince) > th &&
			(strings.EqualFold(ps.VRRPState, "BACKUP") || ps.Resigned) && now.Sub(p.stateSince) > th && c.freshLocked(p, now) &&
			now.Sub(p.bootSeen) > th+time.Second {
			ms, ok := ps.AdvertAgeMs[local.PrimaryAddr.String()]
			age := time.Duration(ms) * time.Millisecond
			if !ok || age > th {
				add(AlarmBlockedVRRP, name, fmt.Sprintf(
					"blocked VRRP: this node is MASTER for VRID %d but %s (alive on gossip, %s) has received no VRRP advert from %s for %s: "+
						"IP protocol 112 (VRRP) from this host to %s is dropped; allow protocol 112 (vrrp) between the LB hosts in the firewall (nftables/iptables: ip protocol vrrp accept) or the cloud security group",
					local.VRID, name, ps.VRRPState, local.PrimaryAddr, ageText(age, ok), addrOr(ps.PrimaryAddr, p.addr)), 0)
			}
		}
		// Config drift.
		if d := drift(local, ps); len(d) > 0 {
			add(AlarmConfigDrift, name, fmt.Sprintf("config drift with %s: %s; make the settings the same on all LB hosts (vipd check -c /etc/vipd/vipd.yaml on each) and reload",
				name, strings.Join(d, "; ")), 0)
		}
		// Backend disagreement.
		if d := disagree(local.Backends, ps.Backends); len(d) > 0 {
			add(AlarmBackendDisagreement, name, fmt.Sprintf("backend disagreement with %s: %s; one LB cannot reach a backend the other can: check routes/firewall from each LB host to the backend, and the backend itself",
				name, strings.Join(d, "; ")), c.tun.DisagreementHold)
		}
	}
	// Configured peers that never joined.
	if now.Sub(c.started) > c.tun.PeerLostGrace {
		known := make(map[string]bool)
		for _, p := range c.peers {
			if p.addr != "" {
				known[p.addr] = true
			}
		}
		for _, cp := range c.cfg.Peers {
			found := false
			for _, a := range c.resolved[cp] {
				found = found || known[a]
			}
			if !found {
				add(AlarmPeerLost, cp, fmt.Sprintf("peer lost: configured gossip peer %s has never joined: vipd not running there, TCP and UDP port %s blocked, or gossip key mismatch? (cluster.key_file must be the same on all LB hosts)",
					cp, portOf(cp)), 0)
			}
		}
	}
	// Undecryptable gossip.
	// It clears 2 s after the last undecryptable packet once decrypted state flows again (the
	// keys were made equal), else after 30 s of quiet.
	keyHealed := now.Sub(c.keyMismatch) >= 2*time.Second && c.lastStateAt.After(c.keyMismatch)
	if !c.keyMismatch.IsZero() && now.Sub(c.keyMismatch) < 30*time.Second && !keyHealed {
		add(AlarmGossipKey, c.keyFrom, fmt.Sprintf("gossip key mismatch? gossip from %s could not be decrypted or was not encrypted: cluster.key_file must hold the same key on all LB hosts (compare: sha256sum /etc/vipd/gossip.key)",
			orUnknown(c.keyFrom)), 0)
	}

	logs := c.applyLocked(conds, now)
	hook := c.resignLocked(local, splitPeers, now)
	c.mu.Unlock()

	for _, l := range logs {
		l()
	}
	if hook != nil {
		c.hookMu.Lock()
		c.deps.OnSplitBrain(hook.resign, hook.reason)
		c.hookMu.Unlock()
	}
	if len(reannounce) > 0 && c.deps.Reannounce != nil {
		reason := fmt.Sprintf("%s MASTER beside us, or was and no longer is", strings.Join(reannounce, ", "))
		c.logger.Info("announcing the VIP again: "+reason, "peers", reannounce)
		c.deps.Reannounce(reason)
	}
}

// applyLocked raises conditions that held long enough and clears the rest; it returns the log
// calls to make after unlocking.
func (c *Cluster) applyLocked(conds []condition, now time.Time) []func() {
	var logs []func()
	active := make(map[alarmKey]bool, len(conds))
	for _, cd := range conds {
		active[cd.key] = true
		if a := c.alarms[cd.key]; a != nil {
			a.Message = cd.msg
			continue
		}
		first, ok := c.pending[cd.key]
		if !ok {
			first = now
			c.pending[cd.key] = now
		}
		if now.Sub(first) < cd.hold {
			continue
		}
		a := &Alarm{Kind: cd.key.kind, Peer: cd.key.peer, Since: first, Message: cd.msg}
		c.alarms[cd.key] = a
		if c.ctr.AlarmsRaised == nil {
			c.ctr.AlarmsRaised = make(map[string]uint64)
		}
		c.ctr.AlarmsRaised[a.Kind]++
		al := *a
		logs = append(logs, func() {
			c.logger.Warn("cluster alarm raised: "+al.Message, "alarm", al.Kind, "peer", al.Peer)
		})
	}
	for k := range c.pending {
		if !active[k] {
			delete(c.pending, k)
		}
	}
	for k, a := range c.alarms {
		if !active[k] {
			delete(c.alarms, k)
			al := *a
			logs = append(logs, func() {
				c.logger.Info("cluster alarm cleared", "alarm", al.Kind, "peer", al.Peer,
					"lasted", now.Sub(al.Since).Round(time.Millisecond))
			})
		}
	}
	return logs
}

type hookCall struct {
	resign bool
	reason string
}

// resignLocked implements split_brain: resign-lower. The lower-priority master of a raised
// split brain resigns; it stays resigned while that peer is alive on gossip, MASTER, and its
// adverts do not reach us (the cause persists), at least MinResign.
func (c *Cluster) resignLocked(local NodeState, split []*peer, now time.Time) *hookCall {
	if c.cfg.SplitBrain != SplitBrainResignLower || c.deps.OnSplitBrain == nil {
		return nil
	}
	if c.resign == nil {
		for _, p := range split {
			if c.alarms[alarmKey{AlarmSplitBrain, p.name}] == nil || !lowerThan(local, c.cfg.NodeName, p.state) {
				continue
			}
			// Resign only for the cause resign-lower exists for: the peer is MASTER on fresh
			// gossip and its adverts do not reach us. If they do, VRRP itself sends the lower
			// router back to BACKUP within an advert interval; resigning on top of it would
			// only add transitions.
			if !c.advertsBlockedLocked(p, local, now) {
				continue
			}
			reason := fmt.Sprintf("split brain with %s (priority %d > %d here, or equal and higher address): resigning the VIP while it lasts (cluster.split_brain: resign-lower)",
				p.name, p.state.EffectivePriority, local.EffectivePriority)
			c.resign = &resignState{peer: p.name, since: now, reason: reason}
			c.hookResign = true
			c.ctr.Resignations++
			c.logger.Warn("resigning VIP: "+reason, "peer", p.name)
			return &hookCall{true, reason}
		}
		return nil
	}
	p := c.peers[c.resign.peer]
	// Stay resigned only while the peer is MASTER on fresh gossip: a peer that went quiet may
	// be dead, and then every moment in FAULT is a moment without a VIP holder.
	keep := p != nil && c.freshLocked(p, now) && isMaster(p.state.VRRPState) && p.state.VRID == local.VRID
	if keep && now.Sub(c.resign.since) >= c.tun.MinResign && c.advertsFlowLocked(p, local, now) {
		keep = false // VRRP flows again: the election decides
	}
	if keep {
		return nil
	}
	why := "peer no longer MASTER"
	if p == nil || !c.freshLocked(p, now) {
		why = "peer silent on gossip (it may be down)"
	} else if isMaster(p.state.VRRPState) {
		why = "VRRP adverts from the peer arrive again"
	}
	c.logger.Info("split brain resolved, rejoining the VRRP election", "peer", c.resign.peer, "why", why,
		"resigned_for", now.Sub(c.resign.since).Round(time.Millisecond))
	c.resign = nil
	c.hookResign = false
	return &hookCall{false, ""}
}

// freshLocked reports whether the peer's last state is recent enough to describe it now: it
// is a member and its state is at most EvidenceMaxAge old. A crashed or frozen peer stops being
// fresh within that bound, long before it stops being "alive" (StaleAfter), so nothing that
// changes VRRP behaviour acts on its last word.
func (c *Cluster) freshLocked(p *peer, now time.Time) bool {
	return p.member && p.hasState && now.Sub(p.lastSeen) <= c.tun.EvidenceMaxAge
}

// masterNowLocked reports whether there is evidence that the peer is MASTER now, while we are
// MASTER: a fresh gossip state saying MASTER that arrived after our own transition to MASTER.
// A state from before our transition says what the peer was when we decided it was gone: it is
// no evidence at all (a crashed master's last state says MASTER for up to StaleAfter).
func (c *Cluster) masterNowLocked(p *peer, now time.Time) bool {
	return isMaster(p.state.VRRPState) && c.freshLocked(p, now) && p.lastSeen.After(c.localSince)
}

// advertsBlockedLocked reports whether the peer's adverts fail to reach us while it says it is
// MASTER: its latest (fresh) state arrived more than the blocked_vrrp bound after the last
// advert we heard from it (or we never heard one). A peer that simply died stops both at once,
// so its last state is never newer than its last advert by that much.
func (c *Cluster) advertsBlockedLocked(p *peer, local NodeState, now time.Time) bool {
	if !isMaster(p.state.VRRPState) || !c.freshLocked(p, now) {
		return false
	}
	t, ok := advertAt(local.LastAdvertFrom, p.state.PrimaryAddr)
	return !ok || p.lastSeen.Sub(t) > c.blockedAfter(p, local)
}

// advertsFlowLocked reports whether VRRP adverts from the peer reach us (one within the
// blocked_vrrp bound).
func (c *Cluster) advertsFlowLocked(p *peer, local NodeState, now time.Time) bool {
	age, ok := advertAge(local.LastAdvertFrom, p.state.PrimaryAddr, now)
	return ok && age <= c.blockedAfter(p, local)
}

// blockedAfter is how long a peer may stay silent on VRRP before its adverts count as not
// arriving: blocked_vrrp_intervals of its advert interval (ours if it did not say).
func (c *Cluster) blockedAfter(p *peer, local NodeState) time.Duration {
	iv := p.state.AdvertInterval
	if iv <= 0 {
		iv = local.AdvertInterval
	}
	if iv <= 0 {
		iv = time.Second
	}
	return time.Duration(c.cfg.BlockedVRRPIntervals) * max(iv, 10*time.Millisecond)
}

// lowerThan reports whether the local node loses to peer: lower effective priority; on a tie,
// lower primary address; then lower name.
func lowerThan(local NodeState, localName string, peer wireState) bool {
	if local.EffectivePriority != peer.EffectivePriority {
		return local.EffectivePriority < peer.EffectivePriority
	}
	if c := local.PrimaryAddr.Compare(peer.PrimaryAddr); c != 0 {
		return c < 0
	}
	return localName < peer.Name
}

func advertAt(m map[netip.Addr]time.Time, a netip.Addr) (time.Time, bool) {
	if !a.IsValid() {
		return time.Time{}, false
	}
	t, ok := m[a]
	if !ok {
		t, ok = m[a.Unmap()]
	}
	return t, ok
}

func advertAge(m map[netip.Addr]time.Time, a netip.Addr, now time.Time) (time.Duration, bool) {
	t, ok := advertAt(m, a)
	if !ok {
		return 0, false
	}
	return now.Sub(t), true
}

func ageText(d time.Duration, ok bool) string {
	if !ok {
		return "ever (none seen since start)"
	}
	return d.Round(10 * time.Millisecond).String()
}

func addrOr(a netip.Addr, alt string) string {
	if a.IsValid() {
		return a.String()
	}
	return alt
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown peer"
	}
	return s
}

func portOf(hp string) string {
	if i := strings.LastIndexByte(hp, ':'); i >= 0 {
		return hp[i+1:]
	}
	return hp
}

func (c *Cluster) lostMsg(p *peer, now time.Time) string {
	last := "no state ever received"
	if p.hasState {
		last = "last state " + now.Sub(p.lastSeen).Round(100*time.Millisecond).String() + " ago"
	}
	gs := p.gossip
	if gs == "" {
		gs = "unknown"
	}
	return fmt.Sprintf("peer lost: %s (%s) is not alive on gossip (memberlist: %s, %s): host down, vipd stopped, or TCP/UDP gossip port blocked between the LB hosts; VRRP still decides who holds the VIP",
		p.name, orUnknown(p.addr), gs, last)
}

// drift lists the settings that differ between two nodes.
func drift(a NodeState, b wireState) []string {
	var d []string
	if a.VRID != b.VRID {
		d = append(d, fmt.Sprintf("vrrp.vrid %d here, %d there", a.VRID, b.VRID))
	}
	va, vb := slices.Sorted(slices.Values(a.VIPs)), slices.Sorted(slices.Values(b.VIPs))
	if !slices.Equal(va, vb) {
		d = append(d, fmt.Sprintf("vrrp.vips %v here, %v there", va, vb))
	}
	if a.AdvertInterval != b.AdvertInterval {
		d = append(d, fmt.Sprintf("vrrp.advert_interval %s here, %s there", a.AdvertInterval, b.AdvertInterval))
	}
	if a.ProtoVersion != b.ProtoVersion {
		d = append(d, fmt.Sprintf("vrrp.version %d here, %d there", a.ProtoVersion, b.ProtoVersion))
	}
	var only, theirs []string
	for k := range a.Backends {
		if _, ok := b.Backends[k]; !ok {
			only = append(only, k)
		}
	}
	for k := range b.Backends {
		if _, ok := a.Backends[k]; !ok {
			theirs = append(theirs, k)
		}
	}
	if len(only)+len(theirs) > 0 {
		sort.Strings(only)
		sort.Strings(theirs)
		d = append(d, fmt.Sprintf("proxy.backends differ (only here: %v, only there: %v)", only, theirs))
	}
	if len(d) == 0 && a.ConfigFingerprint != "" && b.ConfigFingerprint != "" && a.ConfigFingerprint != b.ConfigFingerprint {
		d = append(d, fmt.Sprintf("config fingerprint %s here, %s there (other shared settings differ)", a.ConfigFingerprint, b.ConfigFingerprint))
	}
	return d
}

// disagree lists backends both nodes have but see in different states.
func disagree(a, b map[string]bool) []string {
	var d []string
	for k, up := range a {
		if upThere, ok := b[k]; ok && up != upThere {
			d = append(d, fmt.Sprintf("%s is %s here and %s there", k, upDown(up), upDown(upThere)))
		}
	}
	sort.Strings(d)
	return d
}

func upDown(up bool) string {
	if up {
		return "UP"
	}
	return "DOWN"
}

// Alarms returns the active alarms, sorted by kind and peer.
func (c *Cluster) Alarms() []Alarm {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.alarmsLocked()
}

func (c *Cluster) alarmsLocked() []Alarm {
	out := make([]Alarm, 0, len(c.alarms))
	for _, a := range c.alarms {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Peer < out[j].Peer
	})
	return out
}
