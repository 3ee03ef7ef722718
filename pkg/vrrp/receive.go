package vrrp

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// rxFilter holds what the receive path checks an advert against. It is
// replaced as a whole (atomic pointer) on Reconfigure.
type rxFilter struct {
	version   int
	vrid      uint8
	own       netip.Addr
	multicast bool
	peers     []netip.Addr
	authType  uint8
	authData  [8]byte
	interval  time.Duration // v2: must match
	maxPeer   time.Duration // v3: longest interval accepted (Config.MaxPeerAdvertInterval)
	vips      []netip.Addr
	hmac      *hmacVerifier // nil: no authentication trailer expected
}

func newRxFilter(cfg Config, own netip.Addr) *rxFilter {
	f := &rxFilter{
		version:   cfg.Version,
		vrid:      cfg.VRID,
		own:       own,
		multicast: len(cfg.UnicastPeers) == 0,
		peers:     append([]netip.Addr(nil), cfg.UnicastPeers...),
		interval:  cfg.AdvertInterval,
		maxPeer:   cfg.peerIntervalBound(),
	}
	if cfg.Version == 2 && cfg.AuthPass != "" {
		f.authType = AuthPass
		f.authData = PassData(cfg.AuthPass)
	}
	for _, p := range cfg.VIPs {
		f.vips = append(f.vips, p.Addr())
	}
	if len(cfg.AuthHMACKey) > 0 {
		f.hmac = newHMACVerifier(cfg.AuthHMACKey, cfg.AuthHMACKeyID, hmacWindow(cfg.AdvertInterval))
	}
	return f
}

// inherit takes over the state the receive path keeps in old, the filter f
// replaces (receive goroutine only): the authentication replay marks, so
// that a reload does not let a captured advert be replayed once more.
func (f *rxFilter) inherit(old *rxFilter) {
	if old != nil && f.hmac != nil && old.hmac != nil {
		f.hmac.marks, f.hmac.clock = old.hmac.marks, old.hmac.clock
	}
}

// check validates one received IPv4 packet and decodes it into p. It
// returns "" for an advert to hand to the state machine, or the drop reason
// and the error describing it.
func (f *rxFilter) check(raw []byte, p *Packet) (IPv4Header, string, error) {
	h, payload, err := SplitIPv4(raw)
	if err != nil {
		return h, errReason(err), err
	}
	if h.Protocol != IPProtocol {
		e := perrN("ip_header", "not IP protocol 112", int64(h.Protocol), IPProtocol)
		return h, e.Reason, e
	}
	if h.Src == f.own {
		e := perr("own_address", "packet with our own source address "+h.Src.String())
		return h, e.Reason, e
	}
	if !f.multicast && !f.isPeer(h.Src) {
		e := perr("unknown_source", "source "+h.Src.String()+" is not in vrrp.unicast_peers")
		return h, e.Reason, e
	}
	// TTL 255 proves the sender is on our link (RFC 5798 7.1). Enforced in
	// unicast mode as well (Keepalived does not by default): forged adverts
	// from off-link cannot move the VIP.
	if h.TTL != TTL {
		e := perrN("ttl", "IPv4 TTL is not 255", int64(h.TTL), TTL)
		return h, e.Reason, e
	}
	if err := p.Unmarshal(payload, h.Src, h.Dst); err != nil {
		return h, errReason(err), err
	}
	if p.Version != f.version {
		e := perrN("version", "VRRP version differs from vrrp.version", int64(p.Version), int64(f.version))
		return h, e.Reason, e
	}
	if p.VRID != f.vrid {
		e := perrN("vrid", "advert for another virtual router", int64(p.VRID), int64(f.vrid))
		return h, e.Reason, e
	}
	if f.hmac != nil {
		// Authenticated before any other field is looked at (as Keepalived).
		n := headerLen + 4*len(p.Addrs)
		if p.Version == 2 {
			n += authLen
		}
		var tr []byte
		switch len(payload) {
		case n:
		case n + hmacTrailerLen:
			tr = payload[n:]
		default:
			e := perrN("auth_malformed", "advert length fits neither no trailer nor a 28-byte authentication trailer", int64(len(payload)), int64(n+hmacTrailerLen))
			return h, e.Reason, e
		}
		if reason, err := f.hmac.verify(time.Now(), p.Version, p.VRID, h.Src, payload[:n], tr); reason != "" {
			return h, reason, err
		}
	}
	if p.Version == 3 && p.AdvertInterval > f.maxPeer {
		// Adopted, it would stretch our Master_Down_Timer to 3 times it:
		// one such advert (priority 255, 40.95 s) silenced failover for
		// minutes. A deviation from RFC 5798: see the package doc.
		e := perrN("interval_too_long", "advert interval longer than vrrp.max_peer_advert_interval (ms)", p.AdvertInterval.Milliseconds(), f.maxPeer.Milliseconds())
		return h, e.Reason, e
	}
	if p.Version == 2 {
		if p.AuthType != f.authType {
			e := perrN("auth", "authentication type differs", int64(p.AuthType), int64(f.authType))
			return h, e.Reason, e
		}
		if f.authType == AuthPass && p.AuthData != f.authData {
			e := perr("auth", "wrong PASS authentication data from "+h.Src.String())
			return h, e.Reason, e
		}
		if p.AdvertInterval != f.interval {
			e := perrN("interval", "VRRPv2 advert interval differs from ours (s)", int64(p.AdvertInterval/time.Second), int64(f.interval/time.Second))
			return h, e.Reason, e
		}
	}
	if len(p.Addrs) != len(f.vips) {
		e := perrN("addr_count", "advert lists a different number of VIPs", int64(len(p.Addrs)), int64(len(f.vips)))
		return h, e.Reason, e
	}
	for _, a := range p.Addrs {
		if !f.hasVIP(a) {
			e := perr("addr_list", "advert lists "+a.String()+" which is not in vrrp.vips")
			return h, e.Reason, e
		}
	}
	return h, "", nil
}

func (f *rxFilter) isPeer(a netip.Addr) bool {
	for _, p := range f.peers {
		if p == a {
			return true
		}
	}
	return false
}

func (f *rxFilter) hasVIP(a netip.Addr) bool {
	for _, v := range f.vips {
		if v == a {
			return true
		}
	}
	return false
}

func errReason(err error) string {
	if pe, ok := err.(*ParseError); ok {
		return pe.Reason
	}
	return "other"
}

// dropCounter counts drops by reason and logs them at most once per reason
// per logEvery, with the number of drops since the last line.
type dropCounter struct {
	mu       sync.Mutex
	counts   map[string]uint64
	lastLog  map[string]time.Time
	pending  map[string]uint64
	logEvery time.Duration
	log      *slog.Logger
	what     string // log message: "dropped VRRP packet" unless set
}

func newDropCounter(log *slog.Logger, every time.Duration) *dropCounter {
	return &dropCounter{
		counts:   map[string]uint64{},
		lastLog:  map[string]time.Time{},
		pending:  map[string]uint64{},
		logEvery: every,
		log:      log,
	}
}

func (d *dropCounter) drop(now time.Time, reason string, src netip.Addr, err error) {
	d.dropf(now, reason, src, func() error { return err })
}

// dropf is drop with the error built only when a line is logged (keeps a
// flood of drops free of allocations).
func (d *dropCounter) dropf(now time.Time, reason string, src netip.Addr, mkErr func() error) {
	d.mu.Lock()
	d.counts[reason]++
	d.pending[reason]++
	last, seen := d.lastLog[reason]
	if seen && now.Sub(last) < d.logEvery {
		d.mu.Unlock()
		return
	}
	n := d.pending[reason]
	d.pending[reason] = 0
	d.lastLog[reason] = now
	d.mu.Unlock()
	lvl := slog.LevelWarn
	switch reason {
	case "vrid":
		lvl = slog.LevelDebug // other VRRP groups on the same link are normal
	case "source_unresolved":
		lvl = slog.LevelInfo // the first advert of a new peer, while ARP resolves it
	}
	msg := "dropped VRRP packet"
	if n > 1 {
		msg = "dropped VRRP packets"
	}
	if d.what != "" {
		msg = d.what
	}
	var detail string
	if err := mkErr(); err != nil {
		detail = err.Error()
	}
	d.log.Log(context.Background(), lvl, msg, "reason", reason, "count", n, "src", src, "error", detail, "log_every", d.logEvery)
}

func (d *dropCounter) snapshot() map[string]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]uint64, len(d.counts))
	for k, v := range d.counts {
		out[k] = v
	}
	return out
}
