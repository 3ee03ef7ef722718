package e2e

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vipd-project/vipd/test/lab"
)

// TestVRRPForgedPeer: the client (a third host on the LB link) sends well-formed VRRPv3 adverts
// with a peer's source address — TTL 255, valid checksum, right VRID and VIP — 50 "from lb2"
// with priority 254 at lb1 (MASTER) and 50 "from lb1" with priority 0 at lb2 (BACKUP). Only
// their Ethernet source MAC (the client's) betrays them. Nothing may move, in multicast and
// unicast, and vipd must count them under spoofed_source (those of the first ~100 ms may be
// held back as source_unresolved while vipd ARP-resolves a peer it has never heard, e.g. a
// silent backup in multicast mode) and log lines naming both MACs. Root only.
func TestVRRPForgedPeer(t *testing.T) {
	vrrpNeedRoot(t)
	bin := vipdBin(t)
	for _, mode := range []string{"multicast", "unicast"} {
		t.Run(mode, func(t *testing.T) {
			unicast := mode == "unicast"
			p := vrrpNewLab(t, bin)
			p.start(unicast, nil) // lb1 MASTER first, then lb2 BACKUP: lb1 has never heard lb2
			ctx := vrrpCtx(t, 30*time.Second)
			before := map[string]*lab.Stats{}
			logLen := map[string]int{}
			for _, d := range []*lab.Vipd{p.d1, p.d2} {
				st, err := d.Stats(ctx)
				if err != nil {
					t.Fatal(err)
				}
				before[d.Host.Name], logLen[d.Host.Name] = st, len(d.Log())
			}
			forge := func(src, dst netip.Addr, prio int) vrrpRawPacket {
				a := vrrpRawAdvert{Version: 3, VRID: 51, Priority: prio, Interval: 200 * time.Millisecond, Addrs: []netip.Addr{p.vip}}
				return vrrpRawPacket{What: "forged advert from " + src.String(), Dst: dst, Data: vrrpIPv4Packet(src, dst, 255, a.marshal(src, dst))}
			}
			toLB1, toLB2 := vrrpGroup, vrrpGroup
			if unicast {
				toLB1, toLB2 = p.lb1.Addr, p.lb2.Addr
			}
			pkts := []vrrpRawPacket{forge(p.lb2.Addr, toLB1, 254), forge(p.lb1.Addr, toLB2, 0)}
			const repeat = 50
			start := time.Now()
			sent, err := vrrpSendRaw(p.client, pkts, repeat)
			if err != nil {
				t.Fatal(err)
			}
			elapsed := time.Since(start)
			time.Sleep(3*200*time.Millisecond + 300*time.Millisecond)
			s1, s2 := p.states(ctx)
			if s1 != "MASTER" || s2 != "BACKUP" {
				t.Fatalf("after %d forged adverts in %v: lb1=%s lb2=%s, want MASTER/BACKUP", sent, elapsed, s1, s2)
			}
			p.expectHolder(p.lb1)
			clientMAC, err := p.client.MAC()
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range []*lab.Vipd{p.d1, p.d2} {
				st, err := d.Stats(ctx)
				if err != nil {
					t.Fatal(err)
				}
				b := before[d.Host.Name]
				if st.VRRP.TransitionsTotal != b.VRRP.TransitionsTotal {
					t.Errorf("%s: %d state transitions during the forged stream", d.Host.Name, st.VRRP.TransitionsTotal-b.VRRP.TransitionsTotal)
				}
				delta := func(k string) uint64 { return st.VRRP.Drops[k] - b.VRRP.Drops[k] }
				spoofed, unresolved := delta("spoofed_source"), delta("source_unresolved")
				t.Logf("%s (%s): %d forged adverts at it in %v: spoofed_source %d, source_unresolved %d; all drops %v",
					d.Host.Name, mode, repeat, elapsed.Round(time.Millisecond), spoofed, unresolved, st.VRRP.Drops)
				if spoofed+unresolved != repeat || spoofed == 0 {
					t.Errorf("%s: spoofed_source %d + source_unresolved %d, want %d, most spoofed_source", d.Host.Name, spoofed, unresolved, repeat)
				}
				if n := st.VRRP.Drops["unverified_source"] + st.VRRP.Drops["own_mac"]; n != 0 {
					t.Errorf("%s: genuine adverts dropped: %v", d.Host.Name, st.VRRP.Drops)
				}
				// One rate-limited line that names the forger's MAC and the peer's.
				peerMAC := p.mac2
				if d == p.d2 {
					peerMAC = p.mac1
				}
				lines := 0
				for _, line := range strings.Split(d.Log()[logLen[d.Host.Name]:], "\n") {
					if strings.Contains(line, "spoofed_source") {
						lines++
						if !strings.Contains(line, clientMAC) || !strings.Contains(line, peerMAC) {
							t.Errorf("%s: drop line does not name both MACs (%s, %s): %s", d.Host.Name, clientMAC, peerMAC, line)
						}
					}
				}
				if lines == 0 || lines > 3 {
					t.Errorf("%s: %d spoofed_source log lines for %d forged adverts, want 1-3", d.Host.Name, lines, repeat)
				}
			}
		})
	}
}

// TestVRRPForgedLongInterval: in multicast mode any host on the link may take part in the
// election, and RFC 5798 has a backup adopt the master's Max Adver Int. A short burst (3 adverts
// 100 ms apart, so that one comes after lb1's parting advert) from the client's own address with
// priority 255 and the largest interval (40.95 s) made lb1 step down and both LBs wait
// 3 x 40.95 s + skew for the "master" to go quiet: the pair had no MASTER for about 2.5 minutes. vipd now refuses intervals beyond vrrp.max_peer_advert_interval (default 3 x
// ours, at least 1 s): the pair keeps its master, and the refusal is counted and logged. An
// advert at the bound (1 s) is still obeyed as the RFC says, and the pair has a master again
// within about 3 x 1 s. Root only.
func TestVRRPForgedLongInterval(t *testing.T) {
	vrrpNeedRoot(t)
	bin := vipdBin(t)
	p := vrrpNewLab(t, bin)
	p.start(false, nil)
	ctx := vrrpCtx(t, 2*time.Minute)

	// noMaster sends the burst from the client and returns how long after it the pair was
	// last seen without a MASTER (0: never), once the pair has had a MASTER for 3 s in a row
	// (more than 3 x the bound); ok is false if that did not happen within limit.
	noMaster := func(interval time.Duration, limit time.Duration) (gap time.Duration, ok bool) {
		a := vrrpRawAdvert{Version: 3, VRID: 51, Priority: 255, Interval: interval, Addrs: []netip.Addr{p.vip}}
		src := p.client.Addr
		pkt := vrrpRawPacket{What: "advert from the client", Dst: vrrpGroup, Data: vrrpIPv4Packet(src, vrrpGroup, 255, a.marshal(src, vrrpGroup))}
		sent := time.Now()
		for i := 0; i < 3; i++ {
			if _, err := vrrpSendRaw(p.client, []vrrpRawPacket{pkt}, 1); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		var missing time.Time // last poll that saw no MASTER
		for time.Since(sent) < limit {
			s1, s2 := p.states(ctx)
			if s1 != "MASTER" && s2 != "MASTER" {
				missing = time.Now()
			} else if time.Since(sent) > 3*time.Second && (missing.IsZero() || time.Since(missing) > 3*time.Second) {
				if missing.IsZero() {
					return 0, true
				}
				return missing.Sub(sent), true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(sent), false
	}

	// The client is a known host of the link: both LBs have its MAC (otherwise vipd ARP-resolves
	// a new source first and its very first advert cannot make a master step down).
	for _, h := range []*lab.Host{p.lb1, p.lb2} {
		if err := h.Ping(p.client.Addr, 3*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	b1, err := p.d1.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	logLen := len(p.d1.Log())
	// Loose limit: about 2.5 min on the old code, 0 now; 30 s leaves room for a loaded machine.
	gap, back := noMaster(40950*time.Millisecond, 30*time.Second)
	t.Logf("3 adverts with priority 255 and interval 40.95 s: no MASTER for %v (recovered: %v)", gap.Round(10*time.Millisecond), back)
	// 0 here; allow a blip of a loaded machine (a starved backup taking over for an interval).
	if !back || gap > 5*time.Second {
		t.Fatalf("3 forged adverts (priority 255, interval 40.95 s) left the pair without a MASTER for %v (recovered: %v)", gap, back)
	}
	p.expectHolder(p.lb1)
	s1, err := p.d1.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := s1.VRRP.Drops["interval_too_long"] - b1.VRRP.Drops["interval_too_long"]; n != 3 {
		t.Errorf("lb1 counted %d interval_too_long drops, want 3 (all drops %v)", n, s1.VRRP.Drops)
	}
	if l := p.d1.Log()[logLen:]; !strings.Contains(l, "interval_too_long") || !strings.Contains(l, p.client.Addr.String()) {
		t.Errorf("lb1 logged no interval_too_long line naming %s:\n%s", p.client.Addr, l)
	}

	// At the bound (1 s, the default for a 200 ms pair) the advert is obeyed: lb1 steps down,
	// and the pair is whole again about 3 x 1 s + skew later.
	gap, back = noMaster(time.Second, 30*time.Second)
	t.Logf("3 adverts with priority 255 and interval 1 s (the bound): no MASTER for %v (recovered: %v)", gap.Round(10*time.Millisecond), back)
	if !back || gap > 15*time.Second {
		t.Fatalf("after 3 adverts at the bound the pair had no MASTER for %v (recovered: %v), want about 3 s", gap, back)
	}
	if err := p.waitStates(vrrpCtx(t, 15*time.Second), "MASTER", "BACKUP"); err != nil {
		t.Fatal(err)
	}
}

// TestVRRPStrangerCannotTakeVIP: the client, a host on the LB link that is not an LB host,
// sends well-formed adverts from its own address with priority 255, to both LBs and to the
// multicast group. With unicast peers (what bootstrap renders unless the topology says
// multicast) vipd accepts adverts only from its configured peer: nothing moves and every one
// is counted as unknown_source. In multicast mode the same adverts make the master step down:
// multicast trusts every host on the link (RFC 5798 has no authentication), which is what
// deploy/vipd.yaml and the README say. Root only.
func TestVRRPStrangerCannotTakeVIP(t *testing.T) {
	vrrpNeedRoot(t)
	bin := vipdBin(t)
	p := vrrpNewLab(t, bin)
	for _, h := range []*lab.Host{p.lb1, p.lb2} { // the client is a known host of the link
		if err := h.Ping(p.client.Addr, 3*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	stranger := func() []vrrpRawPacket {
		a := vrrpRawAdvert{Version: 3, VRID: 51, Priority: 255, Interval: 200 * time.Millisecond, Addrs: []netip.Addr{p.vip}}
		src := p.client.Addr
		var pkts []vrrpRawPacket
		for _, dst := range []netip.Addr{p.lb1.Addr, p.lb2.Addr, vrrpGroup} {
			pkts = append(pkts, vrrpRawPacket{What: "advert from the client", Dst: dst, Data: vrrpIPv4Packet(src, dst, 255, a.marshal(src, dst))})
		}
		return pkts
	}
	send := func() {
		for i := 0; i < 20; i++ { // 20 rounds over 1 s
			if _, err := vrrpSendRaw(p.client, stranger(), 1); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
	}
	for _, unicast := range []bool{true, false} {
		p.start(unicast, nil)
		ctx := vrrpCtx(t, 30*time.Second)
		before := map[*lab.Vipd]*lab.Stats{}
		for _, d := range []*lab.Vipd{p.d1, p.d2} {
			st, err := d.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			before[d] = st
		}
		send()
		moved := 0
		for _, d := range []*lab.Vipd{p.d1, p.d2} {
			st, err := d.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			b := before[d]
			moved += int(st.VRRP.TransitionsTotal - b.VRRP.TransitionsTotal)
			unknown := st.VRRP.Drops["unknown_source"] - b.VRRP.Drops["unknown_source"]
			t.Logf("unicast=%v %s: %d state changes, unknown_source +%d, drops %v", unicast, d.Host.Name,
				st.VRRP.TransitionsTotal-b.VRRP.TransitionsTotal, unknown, st.VRRP.Drops)
			if unicast && unknown < 20 {
				t.Errorf("%s: %d adverts from the client counted as unknown_source, want at least the 20 sent to it", d.Host.Name, unknown)
			}
		}
		if unicast {
			if moved != 0 {
				t.Fatalf("unicast peers: a host that is not a peer changed the LBs' state %d times", moved)
			}
			p.expectHolder(p.lb1)
		} else if moved == 0 {
			t.Fatalf("multicast: the client's priority-255 adverts moved nothing; multicast should trust every host on the link (update the docs if this changed)")
		}
	}
}
