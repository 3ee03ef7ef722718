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
