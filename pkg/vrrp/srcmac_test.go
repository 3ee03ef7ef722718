package vrrp

import (
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeNeigh is a neighbour table: ip -> (mac, state), counting lookups and
// re-resolutions; answers[ip] is who replies to ARP for ip (the entry
// becomes REACHABLE with it on reverify); offLink marks routed addresses.
type fakeNeigh struct {
	entries   map[netip.Addr]fakeEntry
	answers   map[netip.Addr][6]byte
	offLink   bool
	lookups   int
	reverifed []netip.Addr
}

type fakeEntry struct {
	mac   [6]byte
	state uint16
}

func newFakeNeigh() *fakeNeigh {
	return &fakeNeigh{entries: map[netip.Addr]fakeEntry{}, answers: map[netip.Addr][6]byte{}}
}

func (f *fakeNeigh) lookup(ip netip.Addr) ([6]byte, uint16, bool) {
	f.lookups++
	e, ok := f.entries[ip]
	if !ok || e.state&nudUsable == 0 {
		return [6]byte{}, 0, false
	}
	return e.mac, e.state, true
}

func (f *fakeNeigh) reverify(ip netip.Addr) error {
	f.reverifed = append(f.reverifed, ip)
	delete(f.entries, ip)
	if m, ok := f.answers[ip]; ok {
		f.entries[ip] = fakeEntry{m, unix.NUD_REACHABLE}
	}
	return nil
}

func (f *fakeNeigh) onLink(netip.Addr) bool { return !f.offLink }

var (
	macOwn   = [6]byte{2, 0, 0, 0, 0, 1}
	macPeer  = [6]byte{2, 0, 0, 0, 0, 2}
	macNew   = [6]byte{2, 0, 0, 0, 0, 3} // the peer's replacement NIC
	macEvil  = [6]byte{2, 0, 0, 0, 0, 66}
	peerAddr = netip.MustParseAddr("10.0.0.2")
)

func TestMACGuardLearnsAndDropsForgeries(t *testing.T) {
	nt := newFakeNeigh()
	nt.answers[peerAddr] = macPeer
	g := newMACGuard(net.HardwareAddr(macOwn[:]), nt)
	now := t0
	// No neighbour entry: the first advert is held back while ARP
	// resolves the peer...
	if v := g.check(now, peerAddr, macPeer); v.reason != "source_unresolved" || len(nt.reverifed) != 1 {
		t.Fatalf("first advert: %+v, %d re-resolutions", v, len(nt.reverifed))
	}
	// ...and the next one, an interval later, finds the answer.
	now = now.Add(100 * time.Millisecond)
	if v := g.check(now, peerAddr, macPeer); v.reason != "" || v.event != "learned" || v.via != "neighbour table" {
		t.Fatalf("second advert: %+v", v)
	}
	if v := g.check(now, peerAddr, macPeer); v.reason != "" || v.event != "" {
		t.Fatalf("third advert: %+v", v)
	}
	// A forgery: dropped, naming the bound MAC.
	now = now.Add(10 * time.Millisecond)
	v := g.check(now, peerAddr, macEvil)
	if v.reason != "spoofed_source" || v.want != macPeer {
		t.Fatalf("forged advert: %+v", v)
	}
	// A flood of forgeries costs a few neighbour lookups per second and
	// one re-resolution per 2 s.
	lookups, kicks := nt.lookups, len(nt.reverifed)
	for i := 0; i < 1000; i++ {
		now = now.Add(time.Millisecond) // 1 s in all
		if v := g.check(now, peerAddr, macEvil); v.reason != "spoofed_source" {
			t.Fatalf("forgery %d accepted: %+v", i, v)
		}
	}
	if d := nt.lookups - lookups; d > 3 {
		t.Errorf("%d neighbour lookups during a 1 s flood, want <= 3", d)
	}
	if d := len(nt.reverifed) - kicks; d > 1 {
		t.Errorf("%d re-resolutions in 1 s", d)
	}
	// The genuine peer is still accepted in the middle of it.
	if v := g.check(now, peerAddr, macPeer); v.reason != "" {
		t.Fatalf("genuine advert during a flood: %+v", v)
	}
	// Our own MAC: reflection.
	if v := g.check(now, peerAddr, macOwn); v.reason != "own_mac" {
		t.Fatalf("own MAC: %+v", v)
	}
}

// The forger speaks first, before the guard has ever heard the peer (a
// silent backup in multicast mode): the ARP answer of the genuine owner
// decides, not the first advert.
func TestMACGuardForgerFirst(t *testing.T) {
	nt := newFakeNeigh()
	nt.answers[peerAddr] = macPeer
	g := newMACGuard(net.HardwareAddr(macOwn[:]), nt)
	now := t0
	for i := 0; i < 100; i++ {
		v := g.check(now, peerAddr, macEvil)
		want := "spoofed_source"
		if now.Sub(t0) < afterKick { // ARP not looked at again yet
			want = "source_unresolved"
		}
		if v.reason != want {
			t.Fatalf("forgery %d: %+v, want %s", i, v, want)
		}
		now = now.Add(5 * time.Millisecond)
	}
	if v := g.check(now, peerAddr, macPeer); v.reason != "" {
		t.Fatalf("genuine advert: %+v", v)
	}
}

// Where ARP gives no answer (the peer is routed, or on-link but silent), the
// MAC of its first adverts is trusted: at once off-link, after resolveWait
// on-link.
func TestMACGuardNoARPAnswer(t *testing.T) {
	nt := newFakeNeigh()
	nt.offLink = true
	g := newMACGuard(net.HardwareAddr(macOwn[:]), nt)
	if v := g.check(t0, peerAddr, macPeer); v.reason != "" || v.event != "learned" || v.via != "first adverts" {
		t.Fatalf("off-link first advert: %+v", v)
	}
	if v := g.check(t0, peerAddr, macEvil); v.reason != "spoofed_source" {
		t.Fatalf("off-link forgery: %+v", v)
	}
	nt = newFakeNeigh()
	g = newMACGuard(net.HardwareAddr(macOwn[:]), nt)
	now := t0
	for now.Sub(t0) < resolveWait {
		if v := g.check(now, peerAddr, macPeer); v.reason != "source_unresolved" {
			t.Fatalf("on-link, unresolved, %v after first sight: %+v", now.Sub(t0), v)
		}
		now = now.Add(100 * time.Millisecond)
	}
	if v := g.check(now, peerAddr, macPeer); v.reason != "" || v.event != "learned" {
		t.Fatalf("after resolveWait: %+v", v)
	}
	if len(nt.reverifed) < 2 || len(nt.reverifed) > 4 {
		t.Errorf("%d ARP re-resolutions in %v", len(nt.reverifed), resolveWait)
	}
}

func TestMACGuardNeighbourTableIsTheAuthority(t *testing.T) {
	nt := newFakeNeigh()
	nt.entries[peerAddr] = fakeEntry{macPeer, unix.NUD_STALE}
	g := newMACGuard(net.HardwareAddr(macOwn[:]), nt)
	// The forger speaks first: the neighbour entry decides, not the first
	// advert.
	if v := g.check(t0, peerAddr, macEvil); v.reason != "spoofed_source" || v.want != macPeer || v.via != "neighbour table" {
		t.Fatalf("forgery before the first genuine advert: %+v", v)
	}
	if v := g.check(t0, peerAddr, macPeer); v.reason != "" {
		t.Fatalf("genuine advert: %+v", v)
	}
	// A PERMANENT entry (operator-pinned) is never re-verified.
	nt.entries[peerAddr] = fakeEntry{macPeer, unix.NUD_PERMANENT}
	g2 := newMACGuard(net.HardwareAddr(macOwn[:]), nt)
	g2.check(t0, peerAddr, macPeer)
	for i := 0; i < 10; i++ {
		if v := g2.check(t0.Add(time.Duration(i)*3*time.Second), peerAddr, macEvil); v.reason != "spoofed_source" {
			t.Fatalf("forgery against a permanent entry: %+v", v)
		}
	}
	if len(nt.reverifed) != 0 {
		t.Errorf("permanent entry re-verified %d times", len(nt.reverifed))
	}
}

// A replaced NIC must not lock the peer out for ever: once the kernel's
// neighbour table maps the address to the new MAC (ARP confirmed it, helped
// by the re-verification the guard asks for), the new MAC is accepted and
// the old one is not.
func TestMACGuardReplacedNIC(t *testing.T) {
	nt := newFakeNeigh()
	nt.entries[peerAddr] = fakeEntry{macPeer, unix.NUD_REACHABLE}
	g := newMACGuard(net.HardwareAddr(macOwn[:]), nt)
	now := t0
	if v := g.check(now, peerAddr, macPeer); v.event != "learned" {
		t.Fatalf("first advert: %+v", v)
	}
	// The peer comes back with a new NIC; our neighbour entry is still old.
	nt.entries[peerAddr] = fakeEntry{macPeer, unix.NUD_STALE}
	now = now.Add(5 * time.Second)
	if v := g.check(now, peerAddr, macNew); v.reason != "spoofed_source" {
		t.Fatalf("unconfirmed new MAC accepted: %+v", v)
	}
	if len(nt.reverifed) != 1 || nt.reverifed[0] != peerAddr {
		t.Fatalf("no re-verification asked for a stale entry: %v", nt.reverifed)
	}
	// ARP confirms the new MAC (milliseconds after the re-resolve); the
	// guard looks again afterKick later.
	nt.entries[peerAddr] = fakeEntry{macNew, unix.NUD_REACHABLE}
	nt.answers[peerAddr] = macNew
	lookups := nt.lookups
	now = now.Add(afterKick / 2)
	if v := g.check(now, peerAddr, macNew); v.reason != "spoofed_source" || nt.lookups != lookups {
		t.Fatalf("looked again before afterKick: %+v (%d lookups)", v, nt.lookups-lookups)
	}
	now = now.Add(afterKick)
	v := g.check(now, peerAddr, macNew)
	if v.reason != "" || v.event != "rebound" || v.want != macPeer {
		t.Fatalf("confirmed new MAC: %+v", v)
	}
	if v := g.check(now, peerAddr, macPeer); v.reason != "spoofed_source" {
		t.Fatalf("old MAC still accepted after the change: %+v", v)
	}
}

// TestMACGuardBoundedTable: the table of bound sources is capped, and a full
// table never means "accept unchecked" (it did: after 64 sprayed addresses a
// new source, e.g. a peer forged by another host, passed with any MAC). A new
// source beyond the cap makes room by forgetting the least recently heard
// source, at most once per evictGap; otherwise it is refused
// (source_table_full) without a neighbour lookup.
func TestMACGuardBoundedTable(t *testing.T) {
	nt := &fakeNeigh{offLink: true, entries: map[netip.Addr]fakeEntry{}}
	g := newMACGuard(net.HardwareAddr(macOwn[:]), nt)
	now := t0
	// The genuine peer, bound from the neighbour table, heard every 200 ms.
	nt.entries[peerAddr] = fakeEntry{macPeer, unix.NUD_REACHABLE}
	if v := g.check(now, peerAddr, macPeer); v.reason != "" {
		t.Fatalf("peer: %+v", v)
	}
	delete(nt.entries, peerAddr) // (its entry aged out of the kernel)
	spray := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }
	for i := 0; i < maxMACBinds-1; i++ {
		if v := g.check(now, spray(i), macEvil); v.reason != "" {
			t.Fatalf("source %d: %+v", i, v)
		}
	}
	if len(g.binds) != maxMACBinds {
		t.Fatalf("%d bindings, want %d", len(g.binds), maxMACBinds)
	}
	if b := g.tally.bound.Load(); b != maxMACBinds {
		t.Fatalf("Status counter: %d bound, want %d", b, maxMACBinds)
	}
	// Full. The old code accepted this forged advert "from 10.0.0.9" unchecked.
	victim := netip.MustParseAddr("10.0.0.9")
	nt.entries[victim] = fakeEntry{macPeer, unix.NUD_STALE}
	now = now.Add(200 * time.Millisecond)
	g.check(now, peerAddr, macPeer) // the peer is heard
	v := g.check(now, victim, macEvil)
	if v.reason != "spoofed_source" || !v.evicted.IsValid() || v.evicted == peerAddr {
		t.Fatalf("forged advert from a new source with the table full: %+v, want spoofed_source after forgetting a sprayed source", v)
	}
	if len(g.binds) != maxMACBinds {
		t.Fatalf("%d bindings after an eviction, want %d", len(g.binds), maxMACBinds)
	}
	// A second new source within evictGap is refused, at no netlink cost.
	n := nt.lookups
	if v := g.check(now, netip.MustParseAddr("10.9.9.9"), macEvil); v.reason != "source_table_full" {
		t.Fatalf("second new source within evictGap: %+v, want source_table_full", v)
	}
	if nt.lookups != n {
		t.Errorf("neighbour lookup for a refused source")
	}
	// A spray at full rate for 2 minutes: one source forgotten per evictGap, never the
	// peer heard every 200 ms, which stays bound to its MAC.
	refused, evicted := 0, 0
	for i := 0; i < 600; i++ {
		now = now.Add(200 * time.Millisecond)
		if v := g.check(now, peerAddr, macPeer); v.reason != "" {
			t.Fatalf("peer refused during the spray: %+v", v)
		}
		v := g.check(now, spray(1000+i), macEvil)
		switch {
		case v.reason == "source_table_full":
			refused++
		case v.evicted == peerAddr:
			t.Fatalf("the peer heard every 200 ms was forgotten")
		case v.evicted.IsValid():
			evicted++
		}
	}
	t.Logf("spray of 600 new sources in 120 s: %d refused, %d forgotten to make room", refused, evicted)
	if evicted > 121 || evicted < 100 || refused+evicted != 600 {
		t.Errorf("%d evictions and %d refusals for 600 new sources in 120 s, want about one eviction per second", evicted, refused)
	}
	if v := g.check(now, peerAddr, macEvil); v.reason != "spoofed_source" {
		t.Fatalf("forged advert from the peer after the spray: %+v", v)
	}
}

// TestMACGuardExpiresBindings: a binding no advert has confirmed for
// macBindTTL is forgotten (a peer that left, a sprayed address); the
// address is then bound again as a new source, so a forger gains nothing.
func TestMACGuardExpiresBindings(t *testing.T) {
	nt := newFakeNeigh()
	gone := netip.MustParseAddr("10.0.0.7")
	macGone := [6]byte{2, 0, 0, 0, 0, 7}
	nt.entries[peerAddr] = fakeEntry{macPeer, unix.NUD_REACHABLE}
	nt.entries[gone] = fakeEntry{macGone, unix.NUD_REACHABLE}
	g := newMACGuard(net.HardwareAddr(macOwn[:]), nt)
	for _, c := range []struct {
		src netip.Addr
		mac [6]byte
	}{{peerAddr, macPeer}, {gone, macGone}} {
		if v := g.check(t0, c.src, c.mac); v.reason != "" {
			t.Fatalf("%v: %+v", c.src, v)
		}
	}
	delete(nt.entries, gone) // the host left
	// The peer keeps advertising; "gone" is only forged now and then, which
	// must not keep its binding alive.
	now := t0
	for now.Sub(t0) < macBindTTL+sweepEvery+time.Second {
		now = now.Add(time.Second)
		if v := g.check(now, peerAddr, macPeer); v.reason != "" {
			t.Fatalf("peer: %+v", v)
		}
		if now.Sub(t0) < macBindTTL-10*time.Second && now.Sub(t0)%(10*time.Second) == 0 {
			if v := g.check(now, gone, macEvil); v.reason != "spoofed_source" {
				t.Fatalf("forged %s while bound: %+v", gone, v)
			}
		}
	}
	if _, ok := g.binds[gone]; ok {
		t.Fatalf("binding of a source silent for %v not expired", now.Sub(t0))
	}
	if _, ok := g.binds[peerAddr]; !ok {
		t.Fatal("binding of the peer expired although it advertised")
	}
	if n, b := g.tally.expired.Load(), g.tally.bound.Load(); n != 1 || b != 1 {
		t.Fatalf("Status counters: %d expired, %d bound; want 1 expired, 1 bound (the peer)", n, b)
	}
	// Heard again: a new source (ARP first), not accepted unchecked.
	if v := g.check(now, gone, macEvil); v.reason != "source_unresolved" {
		t.Fatalf("expired source heard again: %+v, want source_unresolved (ARP first)", v)
	}
	// A source being resolved that stops sending goes after pendingTTL.
	if b := g.binds[gone]; b == nil || !b.pending {
		t.Fatal("no pending binding")
	}
	g.check(now.Add(pendingTTL+sweepEvery), peerAddr, macPeer)
	if _, ok := g.binds[gone]; ok {
		t.Fatal("pending binding of a source that stopped sending not expired")
	}
	if n := g.tally.expired.Load(); n != 2 {
		t.Fatalf("Status counter: %d expired, want 2", n)
	}
}

func TestTapRingPairing(t *testing.T) {
	tp := &macTap{seed: maphash.MakeSeed()}
	push := func(pkt []byte, mac [6]byte) {
		tp.pushLocked(tapEntry{h: maphash.Bytes(tp.seed, pkt), n: uint16(len(pkt)), mac: mac})
	}
	take := func(pkt []byte, want [6]byte, prefer bool) ([6]byte, bool) {
		return tp.takeLocked(maphash.Bytes(tp.seed, pkt), uint16(len(pkt)), want, prefer)
	}
	a, b, c := []byte("advert a"), []byte("advert b"), []byte("advert c")
	// The IP layer dropped a (it is never read from the raw socket); b and
	// c come out of the raw socket in the other order than the tap's
	// (received on two CPUs): each still finds its own frame.
	push(a, macEvil)
	push(b, macPeer)
	push(c, macEvil)
	if m, ok := take(c, [6]byte{}, false); !ok || m != macEvil {
		t.Fatalf("c: %v %v", m, ok)
	}
	if m, ok := take(b, [6]byte{}, false); !ok || m != macPeer {
		t.Fatalf("b after c: %v %v", m, ok)
	}
	if _, ok := take(b, [6]byte{}, false); ok {
		t.Fatal("b taken twice")
	}
	// (a stays until the ring wraps; here it is taken, and the used
	// entries behind it go with it.)
	if m, ok := take(a, [6]byte{}, false); !ok || m != macEvil || tp.count != 0 {
		t.Fatalf("a: %v %v, %d left", m, ok, tp.count)
	}
	// The same bytes twice, a replay and the genuine frame: prefer picks
	// the genuine one whatever the order, and the other stays.
	push(a, macPeer)
	push(a, macEvil)
	if m, _ := take(a, macPeer, true); m != macPeer {
		t.Fatalf("prefer: %v", m)
	}
	if m, _ := take(a, macPeer, true); m != macEvil {
		t.Fatalf("the replay: %v", m)
	}
	// A full ring forgets the oldest.
	for i := 0; i < tapRingSize+5; i++ {
		push([]byte{byte(i), byte(i >> 8)}, macPeer)
	}
	if tp.count != tapRingSize || tp.lost < 5 {
		t.Fatalf("count %d lost %d", tp.count, tp.lost)
	}
	if _, ok := take([]byte{0, 0}, macPeer, false); ok {
		t.Fatal("evicted entry found")
	}
	// The accept path does not allocate.
	pkt := []byte{7, 7, 7}
	g := newMACGuard(net.HardwareAddr(macOwn[:]), &fakeNeigh{offLink: true})
	g.check(t0, peerAddr, macPeer)
	if n := testing.AllocsPerRun(100, func() {
		push(pkt, macPeer)
		m, _ := take(pkt, macPeer, true)
		g.check(t0, peerAddr, m)
	}); n != 0 {
		t.Errorf("pairing and check allocate %v times", n)
	}
}

func TestIPBytesTrimsPadding(t *testing.T) {
	p := ipPacket(255, peerAddr, MulticastGroup, make([]byte, 12))
	padded := append(append([]byte(nil), p...), make([]byte, 14)...)
	if got := ipBytes(padded); len(got) != len(p) {
		t.Fatalf("trimmed to %d, want %d", len(got), len(p))
	}
	if got := ipBytes([]byte{1, 2}); len(got) != 2 {
		t.Fatal("short input changed")
	}
}

func TestTapFilterAssembles(t *testing.T) {
	for _, vrid := range []uint8{1, 51, 255} {
		prog, err := tapFilter(vrid)
		if err != nil || len(prog) != 18 {
			t.Fatalf("vrid %d: %d instructions, %v", vrid, len(prog), err)
		}
		// Every conditional jump lands inside the program.
		for i, ins := range prog {
			if ins.Op&0x07 == 0x05 && ins.Op != 0x05 { // BPF_JMP, not JA
				if i+1+int(ins.Jt) >= len(prog) || i+1+int(ins.Jf) >= len(prog) {
					t.Fatalf("instruction %d jumps out: %+v", i, ins)
				}
			}
		}
	}
}

// Counting a dropped forgery allocates nothing (the log line, at most one
// per 10 s, builds its message only when written).
func TestDropfAllocs(t *testing.T) {
	d := newDropCounter(slog.New(slog.DiscardHandler), 10*time.Second)
	mac := macEvil
	d.dropf(t0, "spoofed_source", peerAddr, func() error { return fmt.Errorf("from %s", macString(mac)) })
	if n := testing.AllocsPerRun(100, func() {
		d.dropf(t0, "spoofed_source", peerAddr, func() error { return fmt.Errorf("from %s", macString(mac)) })
	}); n != 0 {
		t.Errorf("dropf allocates %v times per drop", n)
	}
}

// An advert from a source still being resolved may only keep a BACKUP
// where it is; it may not make anyone take or give up the VIP.
func TestWeakAdvertOK(t *testing.T) {
	mk := func(preempt bool, master bool) *Router {
		m := NewMachine(MachineConfig{Version: 3, Priority: 100, AdvertInterval: 100 * time.Millisecond, Preempt: preempt, PrimaryAddr: netip.MustParseAddr("10.0.0.1")})
		m.Handle(t0, Event{Kind: EvStartup})
		if master {
			m.Handle(t0.Add(time.Second), Event{Kind: EvTimer})
		}
		return &Router{m: m}
	}
	adv := func(prio uint8, iv time.Duration) rxAdvert {
		return rxAdvert{src: peerAddr, priority: prio, interval: iv, weak: "source_unresolved"}
	}
	cases := []struct {
		name   string
		r      *Router
		a      rxAdvert
		want   bool
		wantSt State
	}{
		{"backup, higher master", mk(true, false), adv(200, 100*time.Millisecond), true, StateBackup},
		{"backup, equal", mk(true, false), adv(100, 100*time.Millisecond), true, StateBackup},
		{"backup, lower, preempt", mk(true, false), adv(50, 100*time.Millisecond), false, StateBackup},
		{"backup, lower, no preempt", mk(false, false), adv(50, 100*time.Millisecond), true, StateBackup},
		{"backup, priority 0", mk(false, false), adv(0, 100*time.Millisecond), false, StateBackup},
		{"backup, longer interval", mk(true, false), adv(200, time.Second), false, StateBackup},
		// Adopted, a shorter interval shrinks Master_Down_Interval: the genuine master's
		// next advert would come too late (found by a flood with 300 ms forgeries).
		{"backup, shorter interval", mk(true, false), adv(200, 50*time.Millisecond), false, StateBackup},
		{"master, higher", mk(true, true), adv(254, 100*time.Millisecond), false, StateMaster},
	}
	for _, c := range cases {
		if st := c.r.m.State(); st != c.wantSt {
			t.Fatalf("%s: machine in %v", c.name, st)
		}
		if got := c.r.weakAdvertOK(c.a); got != c.want {
			t.Errorf("%s: weakAdvertOK %v, want %v", c.name, got, c.want)
		}
	}
}
