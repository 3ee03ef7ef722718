package vrrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

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

const maxTransitions = 32

// Router runs one VRRP instance on one interface. Create it with New,
// run it with Run.
type Router struct {
	log     *slog.Logger
	ifi     *net.Interface
	primary netip.Addr

	conn     *rawConn
	tap      *macTap         // nil: no source MAC check
	guard    *macGuard       // used by the receive goroutine only
	sources  *sourceTally    // the guard's counters, for Status
	nlRx     *netlink.Handle // neighbour lookups from the receive goroutine
	nlh      *netlink.Handle
	vip      *vipManager
	garp     *garper
	linkCh   chan netlink.LinkUpdate
	linkDone chan struct{}

	rx          atomic.Pointer[rxFilter]
	drops       *dropCounter
	sendErrs    *dropCounter
	guardLog    *dropCounter // source MAC table bound: source_table_full, source_evicted
	advertsSent atomic.Uint64
	advertsRecv atomic.Uint64
	garpsSent   atomic.Uint64

	advCh    chan rxAdvert
	wake     chan struct{}
	annReq   chan struct{}
	do       chan func(now time.Time) // run in the Run goroutine (handover.go)
	hold     atomic.Bool              // maintenance (handover.go)
	reconfCh chan reconfReq
	ready    chan struct{}
	done     chan struct{}
	running  atomic.Bool
	closed   sync.Once

	mu       sync.Mutex
	cfg      Config
	tracks   []*Track
	linkUp   bool
	st       Status
	peers    map[netip.Addr]PeerStatus
	onChange []func(from, to State)
	subs     map[int]chan Status
	nextSub  int

	// Owned by the Run goroutine.
	m       *Machine
	ann     *announcer
	sendBuf []byte
	signer  *hmacSigner // nil: adverts sent without an authentication trailer
}

type rxAdvert struct {
	at       time.Time
	src      netip.Addr
	priority uint8
	interval time.Duration
	weak     string // "" or why the source MAC is not verified (source_unresolved, unverified_source, source_table_full): see weakAdvertOK
}

type reconfReq struct {
	cfg Config
	res chan error
}

// New checks the configuration and the host (interface, IPv4 address,
// capabilities) and opens the sockets, in the calling goroutine's network
// namespace. It does not change the host apart from nothing: stale VIPs are
// removed by Run.
func New(cfg Config, log *slog.Logger) (*Router, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkCaps(); err != nil {
		return nil, err
	}
	nlh, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	r := &Router{
		log:      log.With("vrid", cfg.VRID, "interface", cfg.Interface),
		nlh:      nlh,
		cfg:      cfg,
		advCh:    make(chan rxAdvert, 64),
		wake:     make(chan struct{}, 1),
		annReq:   make(chan struct{}, 1),
		do:       make(chan func(time.Time)),
		reconfCh: make(chan reconfReq),
		ready:    make(chan struct{}),
		done:     make(chan struct{}),
		peers:    map[netip.Addr]PeerStatus{},
		subs:     map[int]chan Status{},
		linkUp:   true,
	}
	ok := false
	defer func() {
		if !ok {
			r.closeAll()
		}
	}()
	link, err := nlh.LinkByName(cfg.Interface)
	if err != nil {
		var names []string
		if links, lerr := nlh.LinkList(); lerr == nil {
			for _, l := range links {
				names = append(names, l.Attrs().Name)
			}
		}
		return nil, fmt.Errorf("vrrp.interface: no interface %q on this host (%v); existing interfaces: %s", cfg.Interface, err, strings.Join(names, ", "))
	}
	a := link.Attrs()
	r.ifi = &net.Interface{Index: a.Index, MTU: a.MTU, Name: a.Name, HardwareAddr: a.HardwareAddr, Flags: a.Flags}
	r.vip = &vipManager{h: nlh, ifindex: a.Index, vips: cfg.VIPs}
	addrs, err := nlh.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list IPv4 addresses of %s: %w", cfg.Interface, err)
	}
	r.primary = primaryAddr(addrs, cfg.VIPs)
	if cfg.UnicastSource.IsValid() {
		if r.primary != cfg.UnicastSource && !hasAddr(addrs, cfg.UnicastSource) {
			r.log.Warn("vrrp.unicast_source is not an address of the interface; the kernel may refuse to send from it", "unicast_source", cfg.UnicastSource)
		}
		r.primary = cfg.UnicastSource
	}
	if !r.primary.IsValid() {
		return nil, fmt.Errorf("vrrp.interface: %s has no IPv4 address of its own (VIPs do not count): add one (e.g. ip addr add 10.0.0.2/24 dev %s) or set vrrp.unicast_source", cfg.Interface, cfg.Interface)
	}
	// The tap first: every packet the raw socket ever returns then has its
	// frame recorded.
	if cfg.NoSourceMACCheck {
		r.log.Warn("VRRP source MAC check off (vrrp.no_source_mac_check): adverts forged with a peer's address by another host on the link are accepted")
	} else if len(a.HardwareAddr) == 6 {
		if err := r.openMACCheck(a.Index); err != nil {
			r.log.Warn("no VRRP source MAC check: adverts forged with a peer's address by another host on the link are accepted", "error", err)
		}
	}
	r.conn, err = openRaw(cfg.Interface, a.Index, r.primary, len(cfg.UnicastPeers) == 0)
	if err != nil {
		return nil, err
	}
	r.garp, err = openGARP(r.ifi)
	if err != nil {
		if len(a.HardwareAddr) != 6 {
			r.log.Warn("no gratuitous ARP on this interface", "error", err)
			r.garp = nil
		} else {
			return nil, err
		}
	}
	if cfg.TrackInterface {
		r.linkCh = make(chan netlink.LinkUpdate, 16)
		r.linkDone = make(chan struct{})
		done := r.linkDone
		err := netlink.LinkSubscribeWithOptions(r.linkCh, r.linkDone, netlink.LinkSubscribeOptions{
			ErrorCallback: func(err error) {
				select {
				case <-done:
				default:
					r.log.Warn("link state subscription", "error", err)
				}
			},
		})
		if err != nil {
			close(r.linkDone)
			r.linkDone = nil
			return nil, fmt.Errorf("subscribe to link state of %s: %w", cfg.Interface, err)
		}
		r.linkUp = linkIsUp(a)
	}
	r.rx.Store(newRxFilter(cfg, r.primary))
	r.drops = newDropCounter(r.log, 10*time.Second)
	r.sendErrs = newDropCounter(r.log, 10*time.Second)
	r.guardLog = newDropCounter(r.log, 10*time.Second)
	r.guardLog.what = "VRRP source MAC table full"
	if r.sources == nil { // no source MAC check: zeros
		r.sources = &sourceTally{}
	}
	r.st = Status{
		State:                StateInit,
		Priority:             cfg.Priority,
		EffectivePriority:    cfg.Priority,
		PrimaryAddr:          r.primary,
		Since:                time.Now(),
		Interface:            cfg.Interface,
		VRID:                 cfg.VRID,
		Version:              cfg.Version,
		Multicast:            len(cfg.UnicastPeers) == 0,
		AdvertInterval:       cfg.AdvertInterval,
		MasterAdvertInterval: cfg.AdvertInterval,
	}
	ok = true
	return r, nil
}

func primaryAddr(addrs []netlink.Addr, vips []netip.Prefix) netip.Addr {
outer:
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok {
			continue
		}
		for _, v := range vips {
			if v.Addr() == ip {
				continue outer
			}
		}
		return ip
	}
	return netip.Addr{}
}

func hasAddr(addrs []netlink.Addr, want netip.Addr) bool {
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == want {
			return true
		}
	}
	return false
}

func linkIsUp(a *netlink.LinkAttrs) bool {
	return a.Flags&net.FlagUp != 0 && a.RawFlags&unix.IFF_RUNNING != 0
}

// checkCaps reports missing CAP_NET_ADMIN / CAP_NET_RAW in the effective set.
func checkCaps() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil // cannot tell; the socket calls will say
	}
	var missing []string
	if data[0].Effective&(1<<unix.CAP_NET_ADMIN) == 0 {
		missing = append(missing, "CAP_NET_ADMIN (add/remove the VIP)")
	}
	if data[0].Effective&(1<<unix.CAP_NET_RAW) == 0 {
		missing = append(missing, "CAP_NET_RAW (VRRP raw socket, gratuitous ARP)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("vrrp: missing capabilities %s: run vipd as root, or under systemd with AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE as in deploy/vipd.service (or setcap cap_net_admin,cap_net_raw,cap_net_bind_service+ep on the binary)", strings.Join(missing, ", "))
	}
	return nil
}

// Ready is closed once the sockets are open and the state machine started.
func (r *Router) Ready() <-chan struct{} { return r.ready }

// Done is closed when Run has returned.
func (r *Router) Done() <-chan struct{} { return r.done }

// Close releases the sockets of a Router whose Run was never called (Run
// closes them itself). Safe to call more than once.
func (r *Router) Close() error {
	if r.running.Load() {
		return nil
	}
	r.closeAll()
	return nil
}

func (r *Router) closeAll() {
	r.closed.Do(func() {
		if r.conn != nil {
			r.conn.close()
		}
		if r.tap != nil {
			r.tap.close()
		}
		if r.nlRx != nil {
			r.nlRx.Close()
		}
		if r.garp != nil {
			r.garp.close()
		}
		if r.linkDone != nil {
			close(r.linkDone)
		}
		if r.nlh != nil {
			r.nlh.Close()
		}
	})
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

// Track is a condition that lowers the router's priority by its weight
// while it fails (weight 0: FAULT while it fails). Create with Router.Track.
type Track struct {
	r       *Router
	name    string
	weight  int
	failing bool
	reason  string
}

// Track registers (or returns the existing) tracked condition name. While
// failing, the effective priority is lowered by weight (floor 1); weight 0
// means FAULT: the router gives up the VIP and does not become master until
// the condition clears. A negative weight is taken as its absolute value.
// A new Track starts as not failing.
func (r *Router) Track(name string, weight int) *Track {
	if weight < 0 {
		weight = -weight
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.tracks {
		if t.name == name {
			t.weight = weight
			return t
		}
	}
	t := &Track{r: r, name: name, weight: weight}
	r.tracks = append(r.tracks, t)
	return t
}

// Set reports whether the condition fails now, with a reason for logs and
// Status.
func (t *Track) Set(failing bool, reason string) {
	t.r.mu.Lock()
	changed := t.failing != failing
	t.failing, t.reason = failing, reason
	t.r.mu.Unlock()
	if changed {
		t.r.log.Info("tracked condition changed", "track", t.name, "failing", failing, "reason", reason, "weight", t.weight)
		t.r.kick()
	}
}

// Announce asks for a gratuitous ARP burst now if we are master (no-op
// otherwise), e.g. when the gossip layer saw a split brain end.
func (r *Router) Announce() {
	select {
	case r.annReq <- struct{}{}:
	default:
	}
}

func (r *Router) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// effective computes the effective priority and the fault reasons (r.mu held).
func (r *Router) effectiveLocked() (uint8, []string) {
	var faults []string
	if !r.linkUp {
		faults = append(faults, "link "+r.cfg.Interface+" down")
	}
	sum := 0
	for _, t := range r.tracks {
		if !t.failing {
			continue
		}
		if t.weight == 0 {
			faults = append(faults, "track "+t.name+": "+t.reason)
			continue
		}
		sum += t.weight
	}
	p := int(r.cfg.Priority) - sum
	if p < 1 {
		p = 1
	}
	sort.Strings(faults)
	return uint8(p), faults
}

// Reconfigure applies a new configuration: priority, preempt,
// preempt_delay, advert_interval, garp_*, unicast_peers (within unicast
// mode) and auth_pass change live. Changing interface, vrid, version, vips,
// unicast_source, track_interface or switching multicast/unicast is refused
// with an error naming the field; the old configuration keeps running.
func (r *Router) Reconfigure(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	old := r.cfg
	r.mu.Unlock()
	if err := old.reconfigurable(cfg); err != nil {
		return err
	}
	if !r.running.Load() {
		r.mu.Lock()
		r.cfg = cfg
		r.st.Priority = cfg.Priority
		r.st.AdvertInterval = cfg.AdvertInterval
		r.mu.Unlock()
		r.rx.Store(newRxFilter(cfg, r.primary))
		return nil
	}
	req := reconfReq{cfg: cfg, res: make(chan error, 1)}
	select {
	case r.reconfCh <- req:
		return <-req.res
	case <-r.done:
		return errors.New("vrrp: router stopped")
	}
}

func (r *Router) machineConfig(cfg Config) MachineConfig {
	return MachineConfig{
		Version:        cfg.Version,
		Priority:       cfg.Priority,
		AdvertInterval: cfg.AdvertInterval,
		Preempt:        cfg.Preempt,
		PreemptDelay:   cfg.PreemptDelay,
		PrimaryAddr:    r.primary,
		SolePeer:       len(cfg.UnicastPeers) == 1,
	}
}

// Run runs the router until ctx is cancelled. It removes VIPs left behind
// by a crash, starts the election, and on cancellation (if master) sends a
// priority-0 advert and removes the VIPs, then returns nil. It can be
// called once; the sockets are closed when it returns.
func (r *Router) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("vrrp: Run called twice")
	}
	defer close(r.done)
	rxDone := make(chan struct{})
	tapDone := make(chan struct{})
	defer func() {
		r.closeAll()
		<-rxDone // the receiver ends when its socket is closed
		<-tapDone
	}()
	if r.tap != nil {
		go r.tap.run(tapDone)
	} else {
		close(tapDone)
	}

	if stale, err := r.vip.present(); err != nil {
		r.log.Warn("check for stale VIPs", "error", err)
	} else if len(stale) > 0 {
		r.log.Warn("removing VIP left behind (we are not master yet)", "vips", stale)
		if err := r.vip.del(); err != nil {
			r.log.Error("remove stale VIP", "error", err)
		}
	}

	go r.receive(rxDone)
	r.ann = newAnnouncer(r)
	go r.ann.run()
	defer r.ann.shutdown()

	r.mu.Lock()
	cfg := r.cfg
	prio, faults := r.effectiveLocked()
	r.mu.Unlock()
	r.m = NewMachine(r.machineConfig(cfg))
	r.setSigner(cfg)
	now := time.Now()
	r.apply(now, r.m.Handle(now, Event{Kind: EvPriority, Priority: prio}))
	if len(faults) > 0 {
		r.apply(now, r.m.Handle(now, Event{Kind: EvFault, Reason: strings.Join(faults, "; ")}))
	}
	r.apply(now, r.m.Handle(now, Event{Kind: EvHold, Hold: r.hold.Load()}))
	r.apply(now, r.m.Handle(now, Event{Kind: EvStartup}))
	r.updatePrioStatus(prio, faults)
	r.log.Info("VRRP started", "version", cfg.Version, "priority", cfg.Priority, "advert_interval", cfg.AdvertInterval,
		"max_peer_advert_interval", cfg.peerIntervalBound(),
		"primary", r.primary, "mode", map[bool]string{true: "multicast", false: "unicast"}[len(cfg.UnicastPeers) == 0], "vips", cfg.VIPs)
	close(r.ready)

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var refresh <-chan time.Time
	if cfg.GARPRefresh > 0 {
		tk := time.NewTicker(cfg.GARPRefresh)
		defer tk.Stop()
		refresh = tk.C
	}
	linkCh := r.linkCh
	for {
		if dl := r.m.NextDeadline(); !dl.IsZero() {
			timer.Reset(time.Until(dl))
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case <-ctx.Done():
			now := time.Now()
			r.apply(now, r.m.Handle(now, Event{Kind: EvShutdown}))
			r.mu.Lock()
			holds := r.st.HoldsVIP
			r.mu.Unlock()
			if holds {
				r.release()
			}
			r.log.Info("VRRP stopped")
			return nil
		case now := <-timer.C:
			r.apply(now, r.m.Handle(now, Event{Kind: EvTimer}))
		case a := <-r.advCh:
			if a.weak != "" && !r.weakAdvertOK(a) {
				r.drops.dropf(a.at, a.weak, a.src, func() error {
					switch a.weak {
					case "unverified_source":
						return fmt.Errorf("advert from %s (priority %d): its Ethernet frame was not seen on the packet socket (queue overflow under a flood?): source MAC unknown, not trusted to change our state", a.src, a.priority)
					case "source_table_full":
						return fmt.Errorf("advert from %s (priority %d): the source MAC check's table is full (%d sources heard recently): not trusted to change our state", a.src, a.priority, maxMACBinds)
					}
					return fmt.Errorf("advert from %s (priority %d) while ARP resolves %s: not trusted to change our state until its MAC is known", a.src, a.priority, a.src)
				})
				continue
			}
			r.recordPeer(a)
			now := time.Now()
			r.apply(now, r.m.Handle(now, Event{Kind: EvAdvert, Priority: a.priority, Src: a.src, Interval: a.interval}))
		case <-r.wake:
			r.reevaluate()
		case f := <-r.do:
			f(time.Now())
		case <-r.annReq:
			if r.m.State() == StateMaster {
				r.ensureVIP()
				r.ann.burst()
			}
		case req := <-r.reconfCh:
			req.res <- r.applyConfig(req.cfg)
		case u, ok := <-linkCh:
			if !ok {
				r.log.Warn("link state subscription ended; link tracking off")
				linkCh = nil
				continue
			}
			if u.Attrs().Index != r.ifi.Index {
				continue
			}
			up := linkIsUp(u.Attrs())
			r.mu.Lock()
			changed := up != r.linkUp
			r.linkUp = up
			r.mu.Unlock()
			if changed {
				r.log.Info("link state changed", "up", up)
				r.reevaluate()
			}
		case <-refresh:
			if r.m.State() == StateMaster {
				r.ensureVIP()
				r.ann.refresh()
			}
		}
	}
}

// reevaluate recomputes the effective priority and faults and feeds changes
// to the machine.
func (r *Router) reevaluate() {
	r.mu.Lock()
	prio, faults := r.effectiveLocked()
	r.mu.Unlock()
	now := time.Now()
	if h := r.hold.Load(); h != r.m.Held() {
		r.apply(now, r.m.Handle(now, Event{Kind: EvHold, Hold: h}))
		r.log.Info("maintenance", "on", h)
	}
	if len(faults) > 0 && r.m.State() != StateFault {
		r.apply(now, r.m.Handle(now, Event{Kind: EvPriority, Priority: prio}))
		r.apply(now, r.m.Handle(now, Event{Kind: EvFault, Reason: strings.Join(faults, "; ")}))
	} else if len(faults) == 0 && r.m.State() == StateFault {
		r.apply(now, r.m.Handle(now, Event{Kind: EvPriority, Priority: prio}))
		r.apply(now, r.m.Handle(now, Event{Kind: EvFaultClear}))
	} else {
		r.apply(now, r.m.Handle(now, Event{Kind: EvPriority, Priority: prio}))
	}
	r.updatePrioStatus(prio, faults)
}

func (r *Router) updatePrioStatus(prio uint8, faults []string) {
	r.mu.Lock()
	changed := r.st.EffectivePriority != prio || strings.Join(r.st.Faults, "\n") != strings.Join(faults, "\n")
	r.st.EffectivePriority = prio
	r.st.Faults = faults
	r.mu.Unlock()
	if changed {
		r.notify()
	}
}

func (r *Router) applyConfig(cfg Config) error {
	r.mu.Lock()
	old := r.cfg
	if err := old.reconfigurable(cfg); err != nil {
		r.mu.Unlock()
		return err
	}
	r.cfg = cfg
	r.st.Priority = cfg.Priority
	r.st.AdvertInterval = cfg.AdvertInterval
	r.mu.Unlock()
	r.rx.Store(newRxFilter(cfg, r.primary))
	r.setSigner(cfg)
	now := time.Now()
	r.apply(now, r.m.Configure(now, r.machineConfig(cfg)))
	r.ann.configure(cfg.GARPCount, cfg.GARPInterval)
	r.reevaluate()
	r.log.Info("VRRP reconfigured", "priority", cfg.Priority, "preempt", cfg.Preempt, "preempt_delay", cfg.PreemptDelay,
		"advert_interval", cfg.AdvertInterval, "unicast_peers", cfg.UnicastPeers)
	if cfg.GARPRefresh != old.GARPRefresh {
		r.log.Warn("vrrp.garp.refresh change takes effect after a restart")
	}
	return nil
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

// apply performs the machine's actions.
func (r *Router) apply(now time.Time, acts []Action) {
	for _, a := range acts {
		switch a.Kind {
		case ActSendAdvert:
			r.sendAdvert(a.Priority)
		case ActAcquire:
			if err := r.vip.add(); err != nil {
				r.log.Error("add VIP", "error", err)
			}
			r.mu.Lock()
			r.st.HoldsVIP = true
			r.mu.Unlock()
			r.ann.burst()
		case ActRelease:
			r.release()
		case ActAnnounce:
			r.ann.burst()
		case ActStateChange:
			r.stateChange(now, a)
		}
	}
	r.mu.Lock()
	r.st.MasterAddr = r.m.MasterAddr()
	r.st.MasterAdvertInterval = r.m.MasterAdverInterval()
	r.mu.Unlock()
}

// ensureVIP puts back VIPs someone removed while we are master.
func (r *Router) ensureVIP() {
	have, err := r.vip.present()
	if err != nil {
		r.log.Warn("check VIPs", "error", err)
		return
	}
	if len(have) == len(r.vip.vips) {
		return
	}
	r.log.Warn("VIP missing while master (removed by someone else?); adding it again", "have", have, "want", r.vip.vips)
	if err := r.vip.add(); err != nil {
		r.log.Error("add VIP", "error", err)
	}
}

func (r *Router) release() {
	r.ann.stop()
	if err := r.vip.del(); err != nil {
		r.log.Error("remove VIP", "error", err)
	}
	r.mu.Lock()
	r.st.HoldsVIP = false
	r.mu.Unlock()
}

func (r *Router) stateChange(now time.Time, a Action) {
	r.mu.Lock()
	r.st.State = a.To
	r.st.Since = now
	r.st.Transitions = append(r.st.Transitions, Transition{From: a.From, To: a.To, At: now, Reason: a.Reason})
	r.st.TransitionsTotal++
	if n := len(r.st.Transitions); n > maxTransitions {
		r.st.Transitions = append(r.st.Transitions[:0:0], r.st.Transitions[n-maxTransitions:]...)
	}
	fns := append(([]func(from, to State))(nil), r.onChange...)
	r.mu.Unlock()
	lvl := slog.LevelInfo
	if a.To == StateFault {
		lvl = slog.LevelWarn
	}
	r.log.Log(context.Background(), lvl, "VRRP state change", "from", a.From.String(), "to", a.To.String(), "reason", a.Reason, "priority", r.m.Priority())
	for _, fn := range fns {
		fn(a.From, a.To)
	}
	r.notify()
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

// setSigner (re)creates the advert signer for cfg (Run goroutine), keeping
// the sequence growing across a key change.
func (r *Router) setSigner(cfg Config) {
	var seq uint64
	if r.signer != nil {
		seq = r.signer.seq
	}
	r.signer = nil
	if len(cfg.AuthHMACKey) > 0 {
		r.signer = newHMACSigner(cfg.AuthHMACKey, cfg.AuthHMACKeyID)
		r.signer.seq = seq
	}
}

func (r *Router) sendAdvert(prio uint8) {
	r.mu.Lock()
	cfg := r.cfg
	r.mu.Unlock()
	p := Packet{Version: cfg.Version, Type: TypeAdvertisement, VRID: cfg.VRID, Priority: prio, AdvertInterval: cfg.AdvertInterval}
	if cfg.Version == 2 && cfg.AuthPass != "" {
		p.AuthType, p.AuthData = AuthPass, PassData(cfg.AuthPass)
	}
	p.Addrs = make([]netip.Addr, 0, len(cfg.VIPs))
	for _, v := range cfg.VIPs {
		p.Addrs = append(p.Addrs, v.Addr())
	}
	dsts := cfg.UnicastPeers
	if len(dsts) == 0 {
		dsts = []netip.Addr{MulticastGroup}
	}
	var seq uint64
	if r.signer != nil {
		seq = r.signer.next(time.Now()) // one per advert: the copies to each peer carry the same
	}
	for _, dst := range dsts {
		b, err := p.AppendMarshal(r.sendBuf[:0], r.primary, dst)
		if err != nil {
			r.log.Error("marshal advert", "error", err)
			return
		}
		if r.signer != nil {
			b = r.signer.appendTrailer(b, 0, cfg.Version, cfg.VRID, r.primary, seq)
		}
		r.sendBuf = b
		if err := r.conn.send(b, r.primary, dst); err != nil {
			r.sendErrs.drop(time.Now(), "send", dst, err)
			continue
		}
		r.advertsSent.Add(1)
	}
}

// receive reads packets until the socket is closed. Everything that is not
// a valid advert is counted and dropped here; valid adverts go to Run. A
// full queue drops (reason queue_full) instead of blocking the reader.
func (r *Router) receive(done chan struct{}) {
	defer close(done)
	buf := make([]byte, 4096)
	var p Packet
	var prev *rxFilter
	for {
		n, err := r.conn.read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) || errors.Is(err, unix.EBADF) {
				return
			}
			r.drops.drop(time.Now(), "read_error", netip.Addr{}, err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		now := time.Now()
		f := r.rx.Load()
		if f != prev {
			f.inherit(prev) // Reconfigure replaced it: keep the replay marks
			prev = f
		}
		h, reason, err := f.check(buf[:n], &p)
		if reason != "" {
			r.drops.drop(now, reason, h.Src, err)
			continue
		}
		var weak string
		if r.tap != nil {
			var ok bool
			if ok, weak = r.sourceMACOK(now, buf[:n], h.Src); !ok {
				continue
			}
		}
		select {
		case r.advCh <- rxAdvert{at: now, src: h.Src, priority: p.Priority, interval: p.AdvertInterval, weak: weak}:
		default:
			r.drops.drop(now, "queue_full", h.Src, errors.New("advert queue full"))
		}
	}
}
