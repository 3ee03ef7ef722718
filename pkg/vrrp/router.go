package vrrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

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
