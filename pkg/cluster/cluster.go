// Package cluster owns the gossip path between vipd load-balancer peers (hashicorp/memberlist):
// sharing each node's VRRP state, priority, backend view, config fingerprint and connection
// table; detecting split brain, blocked VRRP (IP protocol 112 dropped), config drift, backend
// disagreement and lost peers, each as an alarm with cause and fix; optionally resolving split
// brain by making the lower-priority master resign; and, on taking the VIP, asking pkg/connreset
// to reset the clients of the connections a dead master held.
//
// It is a detector and a second opinion beside VRRP, not the election itself.
package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vipd-project/vipd/pkg/connreset"
)

// Conn is one client connection through a VIP (client addr:port, VIP:port).
type Conn = connreset.Conn

// Local gives this node's current state. It is called often (every ~200 ms): keep it cheap.
type Local interface {
	LocalState() NodeState
}

// ConnSource lists the client connections this node's proxy holds through the VIP.
type ConnSource interface {
	Conns() []Conn
}

// Resetter resets the clients of connections this node does not hold (pkg/connreset).
type Resetter interface {
	Reset(ctx context.Context, conns []Conn) (connreset.Result, error)
}

// Deps are what the daemon's wiring provides.
type Deps struct {
	// Local is required.
	Local Local
	// Conns is the proxy's connection table; nil shares no connections.
	Conns ConnSource
	// Resetter overrides the raw-socket resetter New would open when cfg.ConnReset is set.
	Resetter Resetter
	// OnSplitBrain is called with resign=true when this node must give up the VIP (split_brain:
	// resign-lower, and this node is the lower-priority master), and with false when it may
	// take part in the election again. The wiring maps it to a VRRP track of weight 0 (FAULT).
	// It is called from the cluster's own goroutine, never concurrently with itself.
	OnSplitBrain func(resign bool, reason string)
	// Reannounce is called (from the cluster's goroutine) while this node is MASTER when a
	// peer that was MASTER at the same time stops being so (it resigned, stepped down, or went
	// silent), and with resign-lower also when such a peer that will resign is first seen:
	// clients that followed its gratuitous ARPs must be pointed back here. The wiring maps it
	// to a gratuitous ARP burst (vrrp.Router.Announce).
	Reannounce func(reason string)
	// Logger; default discards.
	Logger *slog.Logger
	// Tuning; zero fields take defaults.
	Tuning Tuning
}

// Tuning holds timings. Defaults suit 2-3 nodes on a LAN.
type Tuning struct {
	ProbeInterval    time.Duration // memberlist probe interval (500ms)
	StateInterval    time.Duration // periodic state push (250ms)
	PollInterval     time.Duration // local-state change poll and evaluation tick (200ms)
	StaleAfter       time.Duration // a peer whose last state is older is not alive (1.5s)
	SplitBrainHold   time.Duration // both MASTER this long before split_brain (500ms)
	DisagreementHold time.Duration // backend views differ this long before alarm (2s)
	PeerLostGrace    time.Duration // after start, before never-joined peers count as lost (5s)
	ConnSyncInterval time.Duration // connection table push at most this often (1s)
	ConnTableTTL     time.Duration // a dead peer's table is used for resets this long (2m)
	RejoinMin        time.Duration // first rejoin retry (500ms)
	RejoinMax        time.Duration // rejoin backoff cap (5s)
	MinResign        time.Duration // stay resigned at least this long (2s)
	ResetDelay       time.Duration // after the VIP is held, before the first reset probes (50ms)
	ResetRounds      int           // probe rounds per takeover (2: catches clients whose ARP was late)
	ResetRoundGap    time.Duration // between rounds (1s, > the client's 500ms out-of-window ACK limit)
	// EvidenceMaxAge: a peer's state older than this is no evidence of what it is now, for
	// anything that changes VRRP behaviour (resign-lower) or raises split_brain/blocked_vrrp
	// (default: two push periods, so one lost UDP push is tolerated, plus one evaluation tick;
	// 2 x 400ms + 200ms = 1s with the defaults, below StaleAfter).
	EvidenceMaxAge time.Duration
}

func (t *Tuning) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.ProbeInterval, 500*time.Millisecond)
	def(&t.StateInterval, 250*time.Millisecond)
	def(&t.PollInterval, 200*time.Millisecond)
	def(&t.StaleAfter, 1500*time.Millisecond)
	def(&t.SplitBrainHold, 500*time.Millisecond)
	def(&t.DisagreementHold, 2*time.Second)
	def(&t.PeerLostGrace, 5*time.Second)
	def(&t.ConnSyncInterval, time.Second)
	def(&t.ConnTableTTL, 2*time.Minute)
	def(&t.RejoinMin, 500*time.Millisecond)
	def(&t.RejoinMax, 5*time.Second)
	def(&t.MinResign, 2*time.Second)
	def(&t.ResetDelay, 50*time.Millisecond)
	def(&t.ResetRoundGap, time.Second)
	if t.EvidenceMaxAge <= 0 {
		t.EvidenceMaxAge = 2*t.statePeriod() + t.PollInterval
	}
	if t.ResetRounds <= 0 {
		t.ResetRounds = 2
	}
}

// statePeriod is how often the push loop really sends the state when nothing changes: it runs
// on the poll tick, so StateInterval rounded up to whole PollIntervals (400ms by default).
func (t *Tuning) statePeriod() time.Duration {
	n := (t.StateInterval + t.PollInterval - 1) / t.PollInterval
	return max(n, 1) * t.PollInterval
}

// Cluster is one node's membership in the gossip cluster.
type Cluster struct {
	cfg    Config
	deps   Deps
	tun    Tuning
	logger *slog.Logger
	key    []byte
	boot   int64

	ml       *memberlist.Memberlist
	resetter Resetter
	ownReset *connreset.Resetter
	addr     string // set by Start
	// connResetStatus is set by Start: on, off, or unavailable: why.
	connResetStatus string
	// configHook lets tests adjust the memberlist config (a netns-aware transport).
	configHook func(*memberlist.Config) error
	cancel     context.CancelFunc
	runCtx     context.Context
	wg         sync.WaitGroup
	kick       chan struct{} // evaluate now
	push       chan struct{} // send state now
	hookMu     sync.Mutex    // serializes OnSplitBrain calls

	// mu guards the fields below. Never call memberlist while holding it: memberlist calls
	// the delegates (which take mu) with its own locks held.

	mu          sync.Mutex
	started     time.Time
	seq         uint64
	peers       map[string]*peer
	tables      map[string]*peerTable
	resolved    map[string][]string // configured peer -> ip:port
	alarms      map[alarmKey]*Alarm
	pending     map[alarmKey]time.Time
	resign      *resignState
	hookResign  bool // last value given to OnSplitBrain
	local       NodeState
	localSince  time.Time // when local.VRRPState last changed
	localConns  int
	keyMismatch time.Time // last undecryptable gossip
	keyFrom     string
	lastStateAt time.Time // when the last (decrypted) peer state arrived
	keyLogged   map[string]time.Time
	// tableRejectLogged rate-limits the log line for refused connection tables.
	tableRejectLogged time.Time
	ctr               Counters
	connSeq           atomic.Uint64 // sequence of connection table snapshots
}

type peer struct {
	name       string
	addr       string // memberlist ip:port
	member     bool   // alive or suspect in memberlist
	gossip     string // memberlist state
	state      wireState
	hasState   bool
	lastSeen   time.Time
	stateSince time.Time // when state.VRRPState last changed, or the peer restarted (our clock)
	bootSeen   time.Time // first state from the peer's current run
	// masterWithUs: seen MASTER (fresh, after our own transition) while we are MASTER.
	masterWithUs bool
	lastChanged  time.Time // member state change
}

type peerTable struct {
	conns []Conn
	at    time.Time
	boot  int64
	seq   uint64
}

type resignState struct {
	peer   string
	since  time.Time
	reason string
}

// New validates cfg and loads the key (refusing a group/world-readable key file). It opens
// no socket: Start does.
func New(cfg Config, deps Deps) (*Cluster, error) {
	cfg.SetDefaults()
	if !cfg.Enabled {
		return nil, errors.New("cluster: not enabled (cluster.enabled: false)")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Local == nil {
		return nil, errors.New("cluster: no local state source (Deps.Local)")
	}
	key, err := LoadKey(cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	deps.Tuning.setDefaults()
	return &Cluster{
		cfg:      cfg,
		deps:     deps,
		tun:      deps.Tuning,
		logger:   logger.With("component", "cluster"),
		key:      key,
		boot:     time.Now().UnixNano(),
		kick:     make(chan struct{}, 1),
		push:     make(chan struct{}, 1),
		peers:    make(map[string]*peer),
		tables:   make(map[string]*peerTable),
		resolved: make(map[string][]string),
		alarms:   make(map[alarmKey]*Alarm),
		pending:  make(map[alarmKey]time.Time),
	}, nil
}

// Start binds the gossip port, joins the configured peers in the background and starts the
// detection loops. They stop when ctx is done or Stop is called.
func (c *Cluster) Start(ctx context.Context) error {
	bind, _ := parseBind(c.cfg.Bind)
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.cfg.NodeName
	mc.BindAddr = bind.Addr().String()
	mc.BindPort = int(bind.Port())
	mc.AdvertisePort = int(bind.Port())
	if c.cfg.Advertise != "" {
		a, p, _ := parseAdvertise(c.cfg.Advertise)
		mc.AdvertiseAddr = a.String()
		if p != 0 {
			mc.AdvertisePort = p
		}
	}
	mc.SecretKey = c.key
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	mc.ProbeInterval = c.tun.ProbeInterval
	mc.ProbeTimeout = c.tun.ProbeInterval * 3 / 5
	mc.SuspicionMult = 2
	mc.AwarenessMaxMultiplier = 2
	mc.GossipInterval = 200 * time.Millisecond
	mc.GossipToTheDeadTime = 5 * time.Second
	mc.PushPullInterval = 10 * time.Second
	mc.TCPTimeout = 2 * time.Second
	mc.DeadNodeReclaimTime = 5 * time.Second
	mc.Delegate = &delegate{c}
	mc.Events = &events{c}
	mc.Logger = log.New(&mlLog{c: c}, "", 0)

	if c.cfg.ConnReset && c.deps.Resetter == nil {
		r, err := connreset.New(connreset.Config{
			Rate:   c.cfg.ConnResetRate,
			Max:    max(1, c.cfg.ConnTableMax*max(1, len(c.cfg.Peers))),
			Logger: c.logger,
		})
		if err != nil {
			c.logger.Warn("connection reset after failover disabled", "err", err,
				"fix", "run vipd with CAP_NET_RAW or set cluster.conn_reset: false")
			c.connResetStatus = "unavailable: " + err.Error()
		} else {
			c.ownReset = r
			c.resetter = r
			c.connResetStatus = "on"
		}
	} else if c.cfg.ConnReset {
		c.resetter = c.deps.Resetter
		c.connResetStatus = "on"
	} else {
		c.connResetStatus = "off"
	}

	if c.configHook != nil {
		if err := c.configHook(mc); err != nil {
			if c.ownReset != nil {
				c.ownReset.Close()
			}
			return fmt.Errorf("start gossip on %s: %w", c.cfg.Bind, err)
		}
	}
	c.mu.Lock()
	c.started = time.Now()
	c.mu.Unlock()
	ml, err := memberlist.Create(mc)
	if err != nil {
		if c.ownReset != nil {
			c.ownReset.Close()
		}
		return fmt.Errorf("start gossip on %s: %w", c.cfg.Bind, err)
	}
	c.ml = ml
	n := ml.LocalNode()
	c.addr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	ctx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	c.runCtx = ctx
	c.logger.Info("gossip started", "node", c.cfg.NodeName, "addr", c.Addr(), "peers", c.cfg.Peers,
		"split_brain", c.cfg.SplitBrain)
	c.loop(ctx, c.pushLoop)
	c.loop(ctx, c.evalLoop)
	c.loop(ctx, c.joinLoop)
	if c.deps.Conns != nil && c.cfg.ConnTableMax > 0 {
		c.loop(ctx, c.connLoop)
	}
	return nil
}

func (c *Cluster) loop(ctx context.Context, f func(context.Context)) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f(ctx)
	}()
}

// Addr is this node's gossip address (ip:port) once started.
func (c *Cluster) Addr() string { return c.addr }

// Stop leaves the cluster (peers see a graceful leave), stops the loops and, if this node had
// resigned, calls OnSplitBrain(false, "").
func (c *Cluster) Stop() error {
	if c.cancel == nil {
		return nil
	}
	c.cancel()
	c.wg.Wait()
	var errs []error
	if err := c.ml.Leave(500 * time.Millisecond); err != nil {
		errs = append(errs, fmt.Errorf("leave gossip: %w", err))
	}
	if err := c.ml.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("shut down gossip: %w", err))
	}
	if c.ownReset != nil {
		c.ownReset.Close()
	}
	c.mu.Lock()
	c.resign = nil
	release := c.hookResign
	c.hookResign = false
	c.mu.Unlock()
	if release && c.deps.OnSplitBrain != nil {
		c.hookMu.Lock()
		c.deps.OnSplitBrain(false, "")
		c.hookMu.Unlock()
	}
	c.cancel = nil
	return errors.Join(errs...)
}

// Notify tells the cluster that the local state changed (VRRP transition, backend up/down):
// it is pushed to peers and evaluated at once instead of at the next poll.
func (c *Cluster) Notify() {
	select {
	case c.push <- struct{}{}:
	default:
	}
}

func (c *Cluster) kickEval() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

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

// delegate implements memberlist.Delegate: state travels in user messages (NotifyMsg) and in
// the TCP push/pull (LocalState/MergeRemoteState), which also carries the connection table.
type delegate struct{ c *Cluster }

func (d *delegate) NodeMeta(int) []byte               { return nil }
func (d *delegate) GetBroadcasts(int, int) [][]byte   { return nil }
func (d *delegate) NotifyMsg(b []byte)                { d.c.handleMsg(b) }
func (d *delegate) MergeRemoteState(b []byte, _ bool) { d.c.handleMsg(b) }
func (d *delegate) LocalState(bool) []byte            { return d.c.bundle() }

// events implements memberlist.EventDelegate.
type events struct{ c *Cluster }

func (e *events) NotifyJoin(n *memberlist.Node)   { e.c.member(n, true) }
func (e *events) NotifyUpdate(n *memberlist.Node) { e.c.member(n, true) }
func (e *events) NotifyLeave(n *memberlist.Node)  { e.c.member(n, false) }

// bundle is this node's push/pull state: its NodeState and its connection table.
func (c *Cluster) bundle() []byte {
	st, err := encodeState(c.wireLocal(c.deps.Local.LocalState()))
	if err != nil {
		return nil
	}
	conns := encodeConns(connTable{Name: c.cfg.NodeName, Boot: c.boot, Seq: c.connSeq.Add(1), Conns: c.snapshotConns()})
	return encodeBundle(st, conns)
}

func (c *Cluster) handleMsg(b []byte) {
	if len(b) == 0 {
		return
	}
	b = bytes.Clone(b) // memberlist may reuse the buffer
	switch b[0] {
	case msgState:
		w, err := decodeState(b)
		if err != nil {
			c.logger.Warn("bad gossip message", "err", err)
			return
		}
		c.handleState(w)
	case msgConns:
		t, err := decodeConns(b, c.cfg.ConnTableMax)
		if err != nil {
			c.logger.Warn("bad gossip message", "err", err)
			return
		}
		c.handleConns(t)
	case msgBundle:
		st, cn, err := splitBundle(b)
		if err != nil {
			c.logger.Warn("bad gossip message", "err", err)
			return
		}
		c.handleMsg(st)
		if len(cn) > 0 {
			c.handleMsg(cn)
		}
	default:
		c.logger.Warn("bad gossip message", "type", b[0])
	}
}

func (c *Cluster) member(n *memberlist.Node, alive bool) {
	if n.Name == c.cfg.NodeName {
		return
	}
	c.mu.Lock()
	p := c.peerLocked(n.Name)
	p.member = alive
	p.addr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	p.gossip = stateName(n.State)
	p.lastChanged = time.Now()
	if n.State == memberlist.StateLeft {
		// A graceful leave (vipd stopped): it handed its clients over itself. A member that
		// failed keeps its table for the takeover's resets (ConnTableTTL).
		delete(c.tables, n.Name)
	}
	c.mu.Unlock()
	if alive {
		c.logger.Info("gossip peer joined", "peer", n.Name, "addr", p.addr)
		c.Notify() // send our state to the newcomer at once
	} else {
		c.logger.Info("gossip peer left or failed", "peer", n.Name, "addr", p.addr, "state", stateName(n.State))
	}
	c.kickEval()
}

func stateName(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	case memberlist.StateLeft:
		return "left"
	}
	return "unknown"
}

// mlLog adapts memberlist's log.Logger output to slog, and spots undecryptable gossip.
type mlLog struct{ c *Cluster }

func (l *mlLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	lvl := slog.LevelDebug
	switch {
	case strings.HasPrefix(msg, "[ERR]"):
		lvl = slog.LevelError
	case strings.HasPrefix(msg, "[WARN]"):
		lvl = slog.LevelWarn
	case strings.HasPrefix(msg, "[INFO]"):
		lvl = slog.LevelInfo
	}
	low := strings.ToLower(msg)
	if strings.Contains(low, "decrypt") || strings.Contains(low, "not encrypted") ||
		strings.Contains(low, "message authentication failed") {
		from := ""
		if i := strings.Index(msg, "from="); i >= 0 {
			from = strings.Fields(msg[i+len("from="):])[0]
		} else if i := strings.Index(msg, "failed to join "); i >= 0 {
			from = strings.TrimSuffix(strings.Fields(msg[i+len("failed to join "):])[0], ":")
		}
		if h, _, err := net.SplitHostPort(from); err == nil && strings.Contains(msg, "from=") {
			from = h // the source port of an inbound stream is ephemeral
		}
		if l.c.noteKeyMismatch(from) {
			l.c.logger.Warn("undecryptable gossip: gossip key mismatch? (cluster.key_file must hold the same key on all LB hosts)",
				"peer", from, "detail", msg)
		}
		return len(p), nil
	}
	// memberlist is chatty at DEBUG/INFO; keep those at debug.
	if lvl < slog.LevelWarn {
		lvl = slog.LevelDebug
	}
	l.c.logger.Log(context.Background(), lvl, "memberlist", "msg", msg)
	return len(p), nil
}

// noteKeyMismatch records undecryptable gossip; it reports whether to log it (at most once per
// 10 s per peer).
func (c *Cluster) noteKeyMismatch(from string) bool {
	c.mu.Lock()
	now := time.Now()
	c.keyMismatch = now
	c.keyFrom = from
	if c.keyLogged == nil {
		c.keyLogged = make(map[string]time.Time)
	}
	logIt := now.Sub(c.keyLogged[from]) >= 10*time.Second
	if logIt {
		c.keyLogged[from] = now
	}
	c.mu.Unlock()
	c.kickEval()
	return logIt
}
