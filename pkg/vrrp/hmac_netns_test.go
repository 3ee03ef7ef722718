package vrrp

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHMACForgedAdverts: lb1 and lb2 share an auth_hmac key; evil, a host of
// the link without it, tries to move the VIP, in multicast mode and in
// unicast mode where evil's address is even a configured peer of both (a
// decommissioned LB's address, say). It sends adverts from its own address
// with priority 255 without a trailer, then with a trailer made with another
// key, then replays a genuine advert of lb1 it captured (with the checksum
// recomputed for the new destination: the HMAC does not cover it). Nothing
// moves; every one is counted by reason. The pair itself elects and hands
// over with signed adverts. Without a key (the same test, authentication
// off) evil's first adverts make lb1 step down. Root only.
func TestHMACForgedAdverts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	for _, mode := range []string{"multicast", "unicast", "multicast_without_key", "unicast_without_key"} {
		t.Run(mode, func(t *testing.T) {
			testHMACForged(t, strings.HasPrefix(mode, "unicast"), !strings.HasSuffix(mode, "without_key"))
		})
	}
}

func testHMACForged(t *testing.T, unicast, withKey bool) {
	l := newTLab(t, "10.77.58.0/24", "lb1", "lb2", "evil")
	lb1h, lb2h, evil := l.Host("lb1"), l.Host("lb2"), l.Host("evil")
	vip := l.Addr(100)
	key, _ := ParseHMACKey("hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	base := Config{
		Interface: lb1h.Iface, VRID: 51, Version: 3, AdvertInterval: labAdvert,
		Preempt: true, VIPs: []netip.Prefix{netip.PrefixFrom(vip, 24)},
		GARPCount: 1, GARPInterval: 100 * time.Millisecond,
	}.WithDefaults()
	if withKey {
		base.AuthHMACKey, base.AuthHMACKeyID = key, 1
	}
	c1, c2 := base, base
	c1.Priority, c2.Priority = 100, 90
	if unicast {
		c1.UnicastPeers = []netip.Addr{lb2h.Addr, evil.Addr}
		c2.UnicastPeers = []netip.Addr{lb1h.Addr, evil.Addr}
	}
	lb2 := startNode(t, lb2h, c2)
	waitFor(t, "lb2 MASTER alone", 15*time.Second, func() bool { return lb2.is(StateMaster) })
	lb1 := startNode(t, lb1h, c1) // lb1 preempts lb2: each accepted the other's signed adverts
	waitFor(t, "lb1 MASTER and lb2 BACKUP", 15*time.Second, func() bool { return lb1.is(StateMaster) && lb2.is(StateBackup) })
	for _, h := range []*thost{lb1h, lb2h} { // evil is a known host: its MAC passes the source check
		if _, err := h.Exec(context.Background(), "ping", "-c1", "-W2", evil.Addr.String()); err != nil {
			t.Fatal(err)
		}
	}

	// A genuine advert of lb1, captured by evil.
	var captured []byte
	if withKey {
		captured = captureAdvert(t, evil, lb1h.Addr)
		if len(captured) != 20+headerLen+4+hmacTrailerLen {
			t.Fatalf("captured advert of %d bytes, want one with an authentication trailer", len(captured))
		}
	}
	b1, b2 := lb1.r.Status(), lb2.r.Status()

	const n = 20
	var pkts [][]byte
	var dsts []netip.Addr
	add := func(dst netip.Addr, pkt []byte) {
		pkts = append(pkts, pkt)
		dsts = append(dsts, dst)
	}
	targets := []netip.Addr{MulticastGroup}
	if unicast {
		targets = []netip.Addr{lb1h.Addr, lb2h.Addr}
	}
	wrongKey := append([]byte(nil), key...)
	wrongKey[31] ^= 0xff
	for i := 0; i < n; i++ {
		for _, dst := range targets {
			p := Packet{Version: 3, VRID: 51, Priority: 255, AdvertInterval: 100 * time.Millisecond, Addrs: []netip.Addr{vip}}
			msg, err := p.Marshal(evil.Addr, dst)
			if err != nil {
				t.Fatal(err)
			}
			add(dst, ipPacket(255, evil.Addr, dst, msg))
			signed := newHMACSigner(wrongKey, 1).appendTrailer(append([]byte(nil), msg...), 0, 3, 51, evil.Addr, clockSeq(time.Now())+uint64(i))
			add(dst, ipPacket(255, evil.Addr, dst, signed))
		}
	}
	if withKey {
		// The replay, "from lb1" to lb2, checksum fixed for the destination.
		dst := MulticastGroup
		if unicast {
			dst = lb2h.Addr
		}
		r := append([]byte(nil), captured...)
		copy(r[16:20], dst.AsSlice())
		msg := r[20 : 20+headerLen+4]
		binary.BigEndian.PutUint16(msg[6:8], 0)
		binary.BigEndian.PutUint16(msg[6:8], finish(sumBytes(pseudoSum(lb1h.Addr, dst, len(msg)), msg)))
		for i := 0; i < 3; i++ {
			add(dst, r)
		}
	}
	sendForgedFrom(t, evil, pkts, dsts, 5*time.Millisecond)
	time.Sleep(labMasterDown) // > Master_Down_Interval: a wrongly accepted advert would show
	d := func(s, b Status, k string) uint64 { return s.Drops[k] - b.Drops[k] }
	if withKey {
		// Let the receive goroutines count everything (generously: a loaded machine). A replay
		// is auth_replay, or auth_stale if it went out more than 5 s after the capture.
		waitFor(t, "every forged advert counted", 15*time.Second, func() bool {
			s1, s2 := lb1.r.Status(), lb2.r.Status()
			return d(s1, b1, "auth_missing")+d(s1, b1, "auth_bad_hmac") >= 2*n &&
				d(s2, b2, "auth_missing")+d(s2, b2, "auth_bad_hmac")+d(s2, b2, "auth_replay")+d(s2, b2, "auth_stale") >= 2*n+3
		})
	}

	s1, s2 := lb1.r.Status(), lb2.r.Status()
	moved := len(s1.Transitions) != len(b1.Transitions) || len(s2.Transitions) != len(b2.Transitions) || s1.State != StateMaster
	t.Logf("key=%v unicast=%v: lb1 drops %v, lb2 drops %v, moved %v", withKey, unicast, s1.Drops, s2.Drops, moved)
	if !withKey {
		if !moved {
			t.Fatal("without authentication evil's priority-255 adverts moved nothing: the contrast this test relies on is gone")
		}
		return
	}
	if moved || !lb1.hasVIP(t, vip) || lb2.hasVIP(t, vip) {
		t.Fatalf("a host without the key moved the VIP: lb1 %v lb2 %v, transitions %+v %+v", s1.State, s2.State,
			s1.Transitions[len(b1.Transitions):], s2.Transitions[len(b2.Transitions):])
	}
	for _, c := range []struct {
		name string
		s, b Status
	}{{"lb1", s1, b1}, {"lb2", s2, b2}} {
		if got := d(c.s, c.b, "auth_missing"); got != n {
			t.Errorf("%s: auth_missing %d, want %d", c.name, got, n)
		}
		if got := d(c.s, c.b, "auth_bad_hmac"); got != n {
			t.Errorf("%s: auth_bad_hmac %d, want %d", c.name, got, n)
		}
	}
	if got := d(s2, b2, "auth_replay") + d(s2, b2, "auth_stale"); got != 3 {
		t.Errorf("lb2: auth_replay+auth_stale %d, want the 3 replays", got)
	}
	if s2.AdvertsReceived <= b2.AdvertsReceived {
		t.Error("lb2 accepted no genuine advert of lb1 meanwhile")
	}
	// Signed handover: lb1 stops (signed priority 0), lb2 takes over.
	lb1.stop()
	waitFor(t, "lb2 MASTER after lb1 stops", 15*time.Second, func() bool { return lb2.is(StateMaster) && lb2.hasVIP(t, vip) })
}

// captureAdvert returns the IPv4 packet of the next VRRP advert from src that
// h receives (a packet socket on its interface).
func captureAdvert(t *testing.T, h *thost, src netip.Addr) []byte {
	t.Helper()
	var out []byte
	err := h.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		ifi, err := net.InterfaceByName(h.Iface)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index}); err != nil {
			return err
		}
		tv := unix.NsecToTimeval((15 * time.Second).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		buf := make([]byte, 2048)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return err
			}
			if n >= 20 && buf[9] == IPProtocol && netip.AddrFrom4([4]byte(buf[12:16])) == src {
				out = append([]byte(nil), ipBytes(buf[:n])...)
				return nil
			}
		}
	})
	if err != nil {
		t.Fatalf("capture an advert of %s: %v", src, errors.Unwrap(err))
	}
	return out
}
