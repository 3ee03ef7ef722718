package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Source MAC check: the raw IPv4 socket stays the only way adverts come in
// (so the kernel's IP checks, netfilter rules and multicast membership apply
// as for Keepalived); an AF_PACKET tap on the same interface tells which
// Ethernet source MAC each of those packets came from.
//
// Pairing is exact, not timing based: Linux hands a received frame to the
// interface's ETH_P_ALL taps before the IP layer sees it (dev->ptype_all is
// walked before the protocol handlers in __netif_receive_skb_core, in the
// same softirq), so when the raw socket returns a packet, its frame is
// already queued on the tap. The tap's frames go into a ring of (hash of the
// IP packet, length, source MAC); a packet read from the raw socket takes
// the ring entry with its hash and length. (Only per CPU is the order the
// same on both sockets: frames of different senders received on different
// CPUs can reach them in different orders, so entries are matched by
// content, not by position.) The hash is maphash with a per-router random
// seed, so a sender cannot make two packets collide on purpose.

const (
	tapRingSize  = 4096 // ring entries (16 bytes each)
	tapBatch     = 64   // frames read per lock hold by the drain goroutine
	tapRcvBuf    = 2 << 20
	maxMACBinds  = 64               // sources whose MAC we remember (enough for any VRRP segment)
	macBindTTL   = 5 * time.Minute  // a binding not confirmed by an advert for this long is forgotten
	pendingTTL   = 10 * time.Second // a source being resolved that stops sending is forgotten after this
	sweepEvery   = time.Minute      // how often expired bindings are looked for (besides when full)
	evictGap     = time.Second      // table full: at most one least recently heard source forgotten per gap
	macRecheck   = time.Second
	neighKickGap = 2 * time.Second
	afterKick    = 100 * time.Millisecond // next neighbour lookup after a re-resolve
	resolveWait  = 3 * time.Second        // first sight: how long an on-link source may take to answer ARP
)

// noMAC marks a frame whose device reported no 6-byte source address
// (multicast bit set: no real sender has it).
var noMAC = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

type tapEntry struct {
	h   uint64
	n   uint16
	mac [6]byte
}

// macTap is an AF_PACKET (SOCK_DGRAM) socket on the VRRP interface that
// records the source MAC of every VRRP frame for our VRID.
type macTap struct {
	f      *os.File
	rc     syscall.RawConn
	closed atomic.Bool
	seed   maphash.Seed

	mu    sync.Mutex
	buf   []byte
	sa    unix.RawSockaddrLinklayer
	salen uint32
	ring  [tapRingSize]tapEntry
	head  int
	count int
	lost  uint64 // entries evicted unused (ring full)

	drainAll func(fd uintptr) // drainLocked(fd, -1), made once (no allocation per lookup)
}

// tapFilter accepts what can become a valid advert for vrid: IPv4, protocol
// 112, TTL 255, not a fragment, VRRP version 2 or 3 type 1, our VRID;
// received for this host (not our own outgoing frames, not another host's
// unicast seen in promiscuous mode). Offsets are from the IP header
// (SOCK_DGRAM).
func tapFilter(vrid uint8) ([]bpf.RawInstruction, error) {
	const drop, keep = 0, 0x40000
	const dropAt = 17 // index of the final "drop"
	skip := func(i int) uint8 { return uint8(dropAt - i - 1) }
	prog := []bpf.Instruction{
		/* 0 */ bpf.LoadExtension{Num: bpf.ExtProto},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.ETH_P_IP, SkipTrue: skip(1)},
		/* 2 */ bpf.LoadExtension{Num: bpf.ExtType},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OTHERHOST, SkipTrue: skip(3)},
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: skip(4)},
		/* 5 */ bpf.LoadAbsolute{Off: 0, Size: 1},
		/* 6 */ bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0},
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0x40, SkipTrue: skip(7)},
		/* 8 */ bpf.LoadAbsolute{Off: 8, Size: 2}, // TTL, protocol
		/* 9 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(TTL)<<8 | IPProtocol, SkipTrue: skip(9)},
		/* 10 */ bpf.LoadAbsolute{Off: 6, Size: 2},
		/* 11 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x3fff, SkipTrue: skip(11)}, // MF or offset: a fragment
		/* 12 */ bpf.LoadMemShift{Off: 0},
		/* 13 */ bpf.LoadIndirect{Off: 0, Size: 2}, // VRRP version/type, VRID
		/* 14 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x3100 | uint32(vrid), SkipTrue: 1},
		/* 15 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0x2100 | uint32(vrid), SkipTrue: skip(15)},
		/* 16 */ bpf.RetConstant{Val: keep},
		/* 17 */ bpf.RetConstant{Val: drop},
	}
	return bpf.Assemble(prog)
}

// openTap opens the tap on ifindex. It is bound (and filtered) before it
// starts to queue frames.
func openTap(ifname string, ifindex int, vrid uint8) (*macTap, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open packet socket on %s for the source MAC check: %w", ifname, err)
	}
	fail := func(what string, err error) (*macTap, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("packet socket on %s for the source MAC check: %s: %w", ifname, what, err)
	}
	raw, err := tapFilter(vrid)
	if err != nil {
		return fail("assemble filter", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}); err != nil {
		return fail("SO_ATTACH_FILTER", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1) // the filter drops them too (kernels < 4.20)
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, tapRcvBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, tapRcvBuf)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		return fail("bind", err)
	}
	f := os.NewFile(uintptr(fd), "vrrp-tap-"+ifname)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("packet socket on %s: %w", ifname, err)
	}
	t := &macTap{f: f, rc: rc, seed: maphash.MakeSeed(), buf: make([]byte, 2048)}
	t.drainAll = func(fd uintptr) { _ = t.drainLocked(fd, -1) }
	return t, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ipBytes trims b to the IPv4 total length when that is plausible (the tap
// sees Ethernet padding of short frames, the raw socket does not).
func ipBytes(b []byte) []byte {
	if len(b) < 20 {
		return b
	}
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if total >= 20 && total <= len(b) {
		return b[:total]
	}
	return b
}

// drainLocked moves up to max queued frames (max < 0: all) into the ring.
// It returns unix.EAGAIN when the socket queue is empty.
func (t *macTap) drainLocked(fd uintptr, max int) error {
	for i := 0; max < 0 || i < max; i++ {
		t.salen = uint32(unsafe.Sizeof(t.sa))
		n, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&t.buf[0])), uintptr(len(t.buf)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&t.sa)), uintptr(unsafe.Pointer(&t.salen)))
		if e != 0 {
			if e == unix.EINTR {
				continue
			}
			return e
		}
		if int(n) > len(t.buf) {
			continue
		}
		pkt := ipBytes(t.buf[:n])
		ent := tapEntry{h: maphash.Bytes(t.seed, pkt), n: uint16(len(pkt))}
		if t.sa.Halen == 6 {
			copy(ent.mac[:], t.sa.Addr[:6])
		} else {
			ent.mac = noMAC // the device gives no Ethernet source: nothing to check
		}
		t.pushLocked(ent)
	}
	return nil
}

func (t *macTap) pushLocked(e tapEntry) {
	if t.count == tapRingSize {
		t.head = (t.head + 1) % tapRingSize
		t.count--
		t.lost++
	}
	t.ring[(t.head+t.count)%tapRingSize] = e
	t.count++
}

// takeLocked finds and removes the entry of a packet with hash h and length
// n, newest first; if several match (the same bytes sent again), the one
// from want when prefer is set (identical bytes have the same effect
// whoever sent them: this keeps a replayed copy from shadowing the genuine
// frame). Only that entry goes: the order of the ring and of the raw socket
// can differ (frames from different senders may be received on different
// CPUs), and entries of packets the IP layer dropped (or that failed the
// receive checks) age out as the ring wraps.
func (t *macTap) takeLocked(h uint64, n uint16, want [6]byte, prefer bool) ([6]byte, bool) {
	pick := -1
	for i := t.count - 1; i >= 0; i-- {
		e := &t.ring[(t.head+i)%tapRingSize]
		if e.h != h || e.n != n {
			continue
		}
		if pick < 0 {
			pick = i
		}
		if !prefer || e.mac == want {
			pick = i
			break
		}
	}
	if pick < 0 {
		return [6]byte{}, false
	}
	e := &t.ring[(t.head+pick)%tapRingSize]
	mac := e.mac
	e.n = 0 // used: never matches again (a valid advert is longer)
	for t.count > 0 && t.ring[t.head].n == 0 {
		t.head = (t.head + 1) % tapRingSize
		t.count--
	}
	return mac, true
}

// lookup returns the source MAC of the frame that carried pkt (as read from
// the raw socket). ok is false if the tap never saw it (its queue
// overflowed) or is closed.
func (t *macTap) lookup(pkt []byte, want [6]byte, prefer bool) (mac [6]byte, ok bool) {
	pkt = ipBytes(pkt)
	if len(pkt) > 0xffff {
		return mac, false
	}
	h, n := maphash.Bytes(t.seed, pkt), uint16(len(pkt))
	t.mu.Lock()
	defer t.mu.Unlock()
	if mac, ok = t.takeLocked(h, n, want, prefer); ok {
		return mac, true
	}
	// The frame is queued on the socket but not drained yet.
	if err := t.rc.Control(t.drainAll); err != nil {
		return mac, false
	}
	return t.takeLocked(h, n, want, prefer)
}

// run drains the socket into the ring until the tap is closed, so that the
// socket queue never overflows while the raw socket is quiet.
func (t *macTap) run(done chan struct{}) {
	defer close(done)
	for {
		err := t.rc.Read(func(fd uintptr) bool {
			for errs := 0; ; {
				t.mu.Lock()
				err := t.drainLocked(fd, tapBatch)
				t.mu.Unlock()
				if err == unix.EAGAIN {
					return false // queue empty: wait for more
				}
				if err != nil {
					// ENETDOWN and the like are reported once by the
					// kernel; keep reading.
					if errs++; errs > 3 {
						return false
					}
				}
			}
		})
		if err != nil {
			if t.closed.Load() || errors.Is(err, os.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (t *macTap) close() error {
	t.closed.Store(true)
	return t.f.Close()
}

// neighbourTable is what macGuard needs from the kernel's neighbour (ARP)
// table of the VRRP interface.
type neighbourTable interface {
	// lookup returns the link-layer address of ip and its NUD state if
	// the entry has a usable one (REACHABLE, STALE, DELAY, PROBE,
	// PERMANENT).
	lookup(ip netip.Addr) (mac [6]byte, state uint16, ok bool)
	// reverify asks the kernel to resolve ip again now (a broadcast ARP
	// request), replacing the entry it has.
	reverify(ip netip.Addr) error
	// onLink says whether ip is reached directly on the interface (no
	// gateway): only then does its MAC mean anything.
	onLink(ip netip.Addr) bool
}

const nudUsable = unix.NUD_REACHABLE | unix.NUD_STALE | unix.NUD_DELAY | unix.NUD_PROBE | unix.NUD_PERMANENT

type nlNeighbours struct {
	h       *netlink.Handle
	ifindex int
}

func (n nlNeighbours) lookup(ip netip.Addr) ([6]byte, uint16, bool) {
	var mac [6]byte
	list, err := n.h.NeighList(n.ifindex, netlink.FAMILY_V4)
	if err != nil {
		return mac, 0, false
	}
	want := net.IP(ip.AsSlice())
	for _, e := range list {
		if !e.IP.Equal(want) || len(e.HardwareAddr) != 6 || e.State&nudUsable == 0 {
			continue
		}
		copy(mac[:], e.HardwareAddr)
		return mac, uint16(e.State), true
	}
	return mac, 0, false
}

// reverify deletes the entry and asks the kernel to
// resolve ip again at once (NTF_USE: as if a packet were sent to it), so a
// broadcast ARP request goes out now and whoever owns ip answers. Without
// the delete a STALE entry would first be probed by unicast to its old MAC
// (DELAY 5 s, then 3 probes 1 s apart) before a broadcast, and a REACHABLE
// one would keep the old MAC for up to 45 s. The guard never calls it for
// PERMANENT entries.
func (n nlNeighbours) reverify(ip netip.Addr) error {
	e := &netlink.Neigh{LinkIndex: n.ifindex, Family: netlink.FAMILY_V4, IP: net.IP(ip.AsSlice())}
	_ = n.h.NeighDel(e) // ENOENT: there was none
	e.Flags = netlink.NTF_USE
	if err := n.h.NeighSet(e); err != nil {
		return fmt.Errorf("re-resolve neighbour %s: %w", ip, err)
	}
	return nil
}

func (n nlNeighbours) onLink(ip netip.Addr) bool {
	routes, err := n.h.RouteGet(net.IP(ip.AsSlice()))
	if err != nil || len(routes) == 0 {
		return true // cannot tell: treat as on-link (the stricter rule)
	}
	r := routes[0]
	return r.Gw == nil && r.LinkIndex == n.ifindex
}

// macBinding is the MAC a source address is bound to.
type macBinding struct {
	mac       [6]byte
	fromNeigh bool // else learned from its first adverts
	pending   bool // first seen, address being resolved: no MAC yet
	since     time.Time
	lastSeen  time.Time // last advert that matched it (or, pending, any advert from the source)
	lastCheck time.Time
	lastKick  time.Time
}

func (b *macBinding) via() string {
	if b.fromNeigh {
		return "neighbour table"
	}
	return "first adverts"
}

// macGuard decides whether an otherwise valid advert came from the host
// that owns its source address. It is used by the receive goroutine only.
type macGuard struct {
	own   [6]byte
	nt    neighbourTable
	binds map[netip.Addr]*macBinding
	ttl   time.Duration // macBindTTL (tests shorten it)

	lastSweep time.Time
	lastEvict time.Time

	// What Status reads from other goroutines (the refusals and evictions
	// are counted with their log lines, in Router.guardLog).
	tally *sourceTally
}

// sourceTally is the part of the source table's state Status reports.
type sourceTally struct {
	expired atomic.Uint64 // bindings forgotten because no advert confirmed them for their TTL
	bound   atomic.Int64  // sources in the table now (bound or being resolved)
}

func newMACGuard(own net.HardwareAddr, nt neighbourTable) *macGuard {
	g := &macGuard{nt: nt, binds: map[netip.Addr]*macBinding{}, ttl: macBindTTL, tally: &sourceTally{}}
	copy(g.own[:], own)
	return g
}

// sweep forgets bindings no advert has confirmed for ttl (pendingTTL for
// sources still being resolved): a peer that left, or an address a forger
// sprayed once. A source forgotten and heard again is bound again as a new
// one (neighbour table, else ARP), so forgetting never trusts anything.
func (g *macGuard) sweep(now time.Time) {
	g.lastSweep = now
	for src, b := range g.binds {
		ttl := g.ttl
		if b.pending {
			ttl = pendingTTL
		}
		if now.Sub(b.lastSeen) > ttl {
			delete(g.binds, src)
			g.tally.expired.Add(1)
		}
	}
	g.tally.bound.Store(int64(len(g.binds)))
}

// makeRoom is called for a new source when the table is full: expired
// bindings go first; if none, the least recently heard source is forgotten,
// at most once per evictGap (a spray of new sources cannot churn the table
// or cost a netlink lookup per packet). It returns the source it forgot
// (invalid if none) and whether there is room now.
func (g *macGuard) makeRoom(now time.Time) (evicted netip.Addr, ok bool) {
	g.sweep(now)
	if len(g.binds) < maxMACBinds {
		return evicted, true
	}
	if !g.lastEvict.IsZero() && now.Sub(g.lastEvict) < evictGap {
		return evicted, false
	}
	var oldest time.Time
	for src, b := range g.binds {
		if !evicted.IsValid() || b.lastSeen.Before(oldest) {
			evicted, oldest = src, b.lastSeen
		}
	}
	delete(g.binds, evicted)
	g.lastEvict = now
	return evicted, true
}

// macVerdict is macGuard.check's answer: reason "" accepts; event, if set,
// is a rare change worth an info log line ("learned", "rebound").
type macVerdict struct {
	reason  string // "", "spoofed_source", "own_mac", "source_unresolved", "source_table_full"
	want    [6]byte
	event   string
	via     string     // where want comes from: "neighbour table" or "first adverts"
	evicted netip.Addr // a source forgotten to make room for this one
}

// expected returns the MAC src is bound to, if any (for the tap's tie
// break between identical frames).
func (g *macGuard) expected(src netip.Addr) ([6]byte, bool) {
	if b := g.binds[src]; b != nil && !b.pending {
		return b.mac, true
	}
	return [6]byte{}, false
}

// check applies the rule to a valid advert from src carried by a frame
// from mac:
//   - our own MAC: reflection or forgery, drop (own_mac);
//   - first advert from src: bind src to its neighbour entry's MAC if the
//     kernel has one (drop if the frame's MAC differs). With no entry, an
//     on-link src is resolved first: the guard asks the kernel for a
//     broadcast ARP request and drops adverts from src (source_unresolved)
//     until the owner of the address has answered (a millisecond on a LAN:
//     the genuine peer loses one advert, once); a src that does not answer
//     within resolveWait, or that is not on-link (a routed cloud network,
//     where frames come from the gateway), is bound to the MAC of its
//     adverts. At most maxMACBinds sources are remembered;
//   - MAC equal to the binding: accept;
//   - MAC differs: look at the neighbour table again (at most once per
//     macRecheck per source, so a flood costs no netlink storm); if it now
//     maps src to the frame's MAC (the peer's NIC was replaced and ARP has
//     confirmed it), rebind and accept; otherwise drop (spoofed_source) and,
//     unless the entry is PERMANENT, ask the kernel to resolve the address
//     again (at most once per neighKickGap per source), so that a replaced
//     NIC is confirmed by ARP within seconds instead of waiting for a
//     REACHABLE entry to age out or for traffic that may never come
//     (multicast mode sends nothing to the peer). Under a stream of
//     forgeries this costs one ARP exchange with the genuine peer per 2 s.
func (g *macGuard) check(now time.Time, src netip.Addr, mac [6]byte) macVerdict {
	defer func() { g.tally.bound.Store(int64(len(g.binds))) }()
	if mac == g.own {
		return macVerdict{reason: "own_mac", want: g.own}
	}
	if now.Sub(g.lastSweep) >= sweepEvery {
		g.sweep(now)
	}
	b := g.binds[src]
	if b == nil || b.pending {
		return g.first(now, src, mac, b)
	}
	if mac == b.mac {
		b.lastSeen = now
		return macVerdict{want: mac}
	}
	if now.Sub(b.lastCheck) < macRecheck {
		return macVerdict{reason: "spoofed_source", want: b.mac, via: b.via()}
	}
	b.lastCheck = now
	nm, state, ok := g.nt.lookup(src)
	if ok && nm == mac {
		old := b.mac
		b.mac, b.fromNeigh, b.lastSeen = mac, true, now
		return macVerdict{want: old, event: "rebound", via: "neighbour table"}
	}
	if ok {
		// The neighbour table is the authority when it has an entry.
		b.mac, b.fromNeigh = nm, true
	}
	if (!ok || state&unix.NUD_PERMANENT == 0) && now.Sub(b.lastKick) >= neighKickGap {
		b.lastKick = now
		if g.nt.reverify(src) == nil {
			// Look again soon: the ARP answer takes milliseconds.
			b.lastCheck = now.Add(afterKick - macRecheck)
		}
	}
	return macVerdict{reason: "spoofed_source", want: b.mac, via: b.via()}
}

// first handles src without a binding (b nil) or still being resolved.
func (g *macGuard) first(now time.Time, src netip.Addr, mac [6]byte, b *macBinding) macVerdict {
	unresolved := macVerdict{reason: "source_unresolved"}
	if b != nil {
		b.lastSeen = now
		if now.Sub(b.lastCheck) < afterKick {
			return unresolved
		}
	}
	var evicted netip.Addr
	if b == nil && len(g.binds) >= maxMACBinds {
		// Full: never accepted unchecked (that let a spray of 64 addresses
		// switch the check off). Room is made by expiry or, at most once
		// per evictGap, by forgetting the least recently heard source;
		// otherwise the source is refused, which the election loop treats
		// like one being resolved (see weakAdvertOK), at no netlink cost.
		var ok bool
		if evicted, ok = g.makeRoom(now); !ok {
			return macVerdict{reason: "source_table_full"}
		}
	}
	unresolved.evicted = evicted
	if nm, _, ok := g.nt.lookup(src); ok {
		if b == nil {
			b = &macBinding{}
			g.binds[src] = b
		}
		*b = macBinding{mac: nm, fromNeigh: true, since: now, lastSeen: now, lastCheck: now}
		if nm != mac {
			return macVerdict{reason: "spoofed_source", want: nm, via: "neighbour table", evicted: evicted}
		}
		return macVerdict{want: nm, event: "learned", via: "neighbour table", evicted: evicted}
	}
	learn := func() macVerdict {
		g.binds[src] = &macBinding{mac: mac, since: now, lastSeen: now, lastCheck: now}
		return macVerdict{want: mac, event: "learned", via: "first adverts", evicted: evicted}
	}
	if b == nil {
		if !g.nt.onLink(src) {
			return learn()
		}
		g.binds[src] = &macBinding{pending: true, since: now, lastSeen: now, lastCheck: now, lastKick: now}
		_ = g.nt.reverify(src)
		return unresolved
	}
	b.lastCheck = now
	if now.Sub(b.since) >= resolveWait {
		return learn() // on-link but silent to ARP: trust what we see
	}
	if now.Sub(b.lastKick) >= neighKickGap/2 {
		b.lastKick = now
		_ = g.nt.reverify(src)
	}
	return unresolved
}

func macString(m [6]byte) string { return net.HardwareAddr(m[:]).String() }

// openMACCheck opens the tap and the netlink handle the check needs (in the
// calling thread's network namespace, like every socket of New).
func (r *Router) openMACCheck(ifindex int) error {
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink for neighbour lookups: %w", err)
	}
	tap, err := openTap(r.cfg.Interface, ifindex, r.cfg.VRID)
	if err != nil {
		nl.Close()
		return err
	}
	r.nlRx, r.tap = nl, tap
	r.guard = newMACGuard(r.ifi.HardwareAddr, nlNeighbours{h: nl, ifindex: ifindex})
	r.sources = r.guard.tally
	return nil
}

// sourceMACOK applies the source MAC check to a valid advert (receive
// goroutine). It counts and logs (rate limited) what it drops. weak means
// the source is being resolved (source_unresolved): the election loop
// takes such an advert only where it can keep us BACKUP (see weakAdvertOK),
// so that routers started together elect as fast as before while a forger
// speaking first cannot make anyone give up or take the VIP.
//
// An advert whose frame the packet socket did not see (its queue overflowed
// under a flood) is weak too, with reason unverified_source: dropping it
// would let a flood of forgeries starve the backup of its master's genuine
// adverts and make it take over; taken only where it keeps us BACKUP, it
// can at worst hold a backup in BACKUP while the flood lasts.
func (r *Router) sourceMACOK(now time.Time, pkt []byte, src netip.Addr) (ok bool, weak string) {
	want, bound := r.guard.expected(src)
	mac, found := r.tap.lookup(pkt, want, bound)
	if !found {
		return true, "unverified_source"
	}
	if mac == noMAC {
		return true, ""
	}
	v := r.guard.check(now, src, mac)
	if v.evicted.IsValid() {
		r.guardLog.dropf(now, "source_evicted", v.evicted, func() error {
			return fmt.Errorf("VRRP source table full (%d sources): forgot the least recently heard, %s, to check the new source %s", maxMACBinds, v.evicted, src)
		})
	}
	switch v.event {
	case "learned":
		r.log.Info("VRRP peer bound to its MAC", "src", src, "mac", macString(mac), "via", v.via)
	case "rebound":
		r.log.Warn("VRRP peer MAC changed, confirmed by the neighbour table", "src", src, "old_mac", macString(v.want), "mac", macString(mac))
	}
	switch v.reason {
	case "":
		return true, ""
	case "source_table_full":
		r.guardLog.dropf(now, v.reason, src, func() error {
			return fmt.Errorf("new source %s not checked: %d sources heard recently, one forgotten per %v at most; its adverts only keep a BACKUP where it is", src, maxMACBinds, evictGap)
		})
		return true, v.reason
	case "source_unresolved":
		return true, v.reason
	}
	r.drops.dropf(now, v.reason, src, func() error {
		switch v.reason {
		case "own_mac":
			return fmt.Errorf("advert from %s sent from our own MAC %s (reflected or forged)", src, macString(mac))
		}
		return fmt.Errorf("advert from %s sent from MAC %s, but %s is at %s (%s): forged by another host on the link", src, macString(mac), src, macString(v.want), v.via)
	})
	return false, ""
}

// weakAdvertOK says whether an advert from a source still being resolved
// (or whose frame the tap did not see under a flood) may go to the state
// machine (Run goroutine): only if it would just keep us BACKUP under that
// master (reset Master_Down_Timer), never if it would make us take over
// (priority 0, preemption) or step down, and only with the interval we
// already use for the master: a backup adopts the interval of the adverts it
// takes, so a longer one would delay failover and a shorter one (a flood of
// forgeries carrying 300 ms against a 1 s master) would shrink the master
// down interval until the genuine master's next advert comes too late.
func (r *Router) weakAdvertOK(a rxAdvert) bool {
	m := r.m
	if m.State() != StateBackup || a.priority == 0 || a.interval != m.MasterAdverInterval() {
		return false
	}
	return !m.cfg.Preempt || a.priority >= m.Priority()
}
