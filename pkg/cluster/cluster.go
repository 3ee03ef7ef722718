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
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"strconv"
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
