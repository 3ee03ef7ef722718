package vrrp

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// ipPacket wraps a VRRP message in an IPv4 header (header checksum left 0:
// the receive path does not look at it, the kernel has).
func ipPacket(ttl uint8, src, dst netip.Addr, msg []byte) []byte {
	b := make([]byte, 20, 20+len(msg))
	b[0] = 0x45
	b[1] = 0xc0
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(msg)))
	b[8] = ttl
	b[9] = IPProtocol
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	return append(b, msg...)
}

func TestRxFilter(t *testing.T) {
	vip := netip.MustParsePrefix("10.0.0.100/24")
	own := netip.MustParseAddr("10.0.0.1")
	peer := netip.MustParseAddr("10.0.0.2")
	stranger := netip.MustParseAddr("10.0.0.66")
	v3 := Config{Version: 3, VRID: 51, AdvertInterval: time.Second, VIPs: []netip.Prefix{vip}}
	v2 := Config{Version: 2, VRID: 51, AdvertInterval: time.Second, VIPs: []netip.Prefix{vip}, AuthPass: "123456"}
	uni := v3
	uni.UnicastPeers = []netip.Addr{peer}
	fast := v3 // 200 ms: peers' intervals are bounded at 1 s (3 x 200 ms, floor 1 s)
	fast.AdvertInterval = 200 * time.Millisecond
	wide := fast
	wide.MaxPeerAdvertInterval = 10 * time.Second

	adv := func(mod func(p *Packet)) Packet {
		p := Packet{Version: 3, VRID: 51, Priority: 200, AdvertInterval: time.Second, Addrs: []netip.Addr{vip.Addr()}}
		if mod != nil {
			mod(&p)
		}
		return p
	}
	v2adv := func(mod func(p *Packet)) Packet {
		return adv(func(p *Packet) {
			p.Version, p.AuthType, p.AuthData = 2, AuthPass, PassData("123456")
			if mod != nil {
				mod(p)
			}
		})
	}
	cases := []struct {
		name   string
		cfg    Config
		ttl    uint8
		src    netip.Addr
		dst    netip.Addr
		p      Packet
		reason string
	}{
		{"valid multicast", v3, 255, peer, MulticastGroup, adv(nil), ""},
		{"valid to our address", v3, 255, peer, own, adv(nil), ""},
		{"ttl 64", v3, 64, peer, MulticastGroup, adv(nil), "ttl"},
		{"ttl 254", uni, 254, peer, own, adv(nil), "ttl"},
		{"own source", v3, 255, own, MulticastGroup, adv(nil), "own_address"},
		{"other vrid", v3, 255, peer, MulticastGroup, adv(func(p *Packet) { p.VRID = 52 }), "vrid"},
		{"v2 to v3 router", v3, 255, peer, MulticastGroup, v2adv(nil), "version"},
		{"more vips", v3, 255, peer, MulticastGroup, adv(func(p *Packet) { p.Addrs = append(p.Addrs, stranger) }), "addr_count"},
		{"other vip", v3, 255, peer, MulticastGroup, adv(func(p *Packet) { p.Addrs = []netip.Addr{stranger} }), "addr_list"},
		{"unicast from peer", uni, 255, peer, own, adv(nil), ""},
		{"unicast from stranger", uni, 255, stranger, own, adv(nil), "unknown_source"},
		{"v2 valid", v2, 255, peer, MulticastGroup, v2adv(nil), ""},
		{"v2 wrong pass", v2, 255, peer, MulticastGroup, v2adv(func(p *Packet) { p.AuthData = PassData("654321") }), "auth"},
		{"v2 no auth", v2, 255, peer, MulticastGroup, v2adv(func(p *Packet) { p.AuthType, p.AuthData = 0, [8]byte{} }), "auth"},
		{"peer interval at the bound", fast, 255, peer, MulticastGroup, adv(nil), ""},
		{"peer interval 40.95 s (forged: would stretch Master_Down_Timer to 2 min)", fast, 255, peer, MulticastGroup,
			adv(func(p *Packet) { p.AdvertInterval = 40950 * time.Millisecond }), "interval_too_long"},
		{"peer interval 1.01 s", fast, 255, peer, MulticastGroup, adv(func(p *Packet) { p.AdvertInterval = 1010 * time.Millisecond }), "interval_too_long"},
		{"peer interval 1.01 s, unicast", func() Config { c := fast; c.UnicastPeers = uni.UnicastPeers; return c }(), 255, peer, own,
			adv(func(p *Packet) { p.AdvertInterval = 1010 * time.Millisecond }), "interval_too_long"},
		{"peer interval 10 s within a configured bound", wide, 255, peer, MulticastGroup, adv(func(p *Packet) { p.AdvertInterval = 10 * time.Second }), ""},
		{"v2 interval mismatch", v2, 255, peer, MulticastGroup, v2adv(func(p *Packet) { p.AdvertInterval = 3 * time.Second }), "interval"},
	}
	for _, c := range cases {
		msg, err := c.p.Marshal(c.src, c.dst)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		f := newRxFilter(c.cfg, own)
		var p Packet
		_, reason, err := f.check(ipPacket(c.ttl, c.src, c.dst, msg), &p)
		if reason != c.reason {
			t.Errorf("%s: reason %q (%v), want %q", c.name, reason, err, c.reason)
		}
		if c.reason == "" && p.Priority != 200 {
			t.Errorf("%s: priority %d", c.name, p.Priority)
		}
	}
	// Bad checksum and garbage.
	f := newRxFilter(v3, own)
	ga := adv(nil)
	good, _ := ga.Marshal(peer, MulticastGroup)
	bad := append([]byte(nil), good...)
	bad[2] = 1
	var p Packet
	if _, r, _ := f.check(ipPacket(255, peer, MulticastGroup, bad), &p); r != "checksum" {
		t.Errorf("bad checksum: %q", r)
	}
	if _, r, _ := f.check([]byte{1, 2, 3}, &p); r != "length" {
		t.Errorf("garbage: %q", r)
	}
	// The valid path does not allocate.
	pkt := ipPacket(255, peer, MulticastGroup, good)
	if n := testing.AllocsPerRun(100, func() { f.check(pkt, &p) }); n != 0 {
		t.Errorf("valid advert check allocates %v times", n)
	}
}

func TestDropCounterRateLimitsLogs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	d := newDropCounter(log, 10*time.Second)
	now := t0
	for i := 0; i < 1000; i++ {
		d.drop(now.Add(time.Duration(i)*time.Millisecond), "ttl", addrB, perr("ttl", "x"))
	}
	d.drop(now.Add(11*time.Second), "ttl", addrB, perr("ttl", "x"))
	d.drop(now, "checksum", addrB, perr("checksum", "x"))
	lines := strings.Count(buf.String(), "\n")
	if lines != 3 {
		t.Fatalf("%d log lines for 1002 drops in 11 s (want 3):\n%s", lines, buf.String())
	}
	if !strings.Contains(buf.String(), "count=1000") {
		t.Fatalf("second line should carry the suppressed count:\n%s", buf.String())
	}
	s := d.snapshot()
	if s["ttl"] != 1001 || s["checksum"] != 1 {
		t.Fatalf("counts %v", s)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Interface: "eth0", VRID: 51, VIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.100/24")}}.WithDefaults()
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	cases := []struct {
		field string
		mod   func(c *Config)
	}{
		{"vrrp.interface", func(c *Config) { c.Interface = "" }},
		{"vrrp.vrid", func(c *Config) { c.VRID = 0 }},
		{"vrrp.version", func(c *Config) { c.Version = 4 }},
		{"vrrp.advert_interval", func(c *Config) { c.AdvertInterval = 15 * time.Millisecond }},
		{"vrrp.advert_interval", func(c *Config) { c.Version = 2; c.AdvertInterval = 500 * time.Millisecond }},
		{"vrrp.auth_pass", func(c *Config) { c.AuthPass = "x" }},
		{"vrrp.auth_pass", func(c *Config) { c.Version = 2; c.AdvertInterval = time.Second; c.AuthPass = "123456789" }},
		{"vrrp.vips", func(c *Config) { c.VIPs = nil }},
		{"vrrp.vips[0]", func(c *Config) { c.VIPs = []netip.Prefix{netip.MustParsePrefix("fd00::1/64")} }},
		{"vrrp.unicast_peers[1]", func(c *Config) {
			c.UnicastPeers = []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.2")}
		}},
		{"vrrp.garp.count", func(c *Config) { c.GARPCount = -1 }},
		{"vrrp.garp.refresh", func(c *Config) { c.GARPRefresh = time.Millisecond }},
		{"vrrp.preempt_delay", func(c *Config) { c.PreemptDelay = time.Hour }},
		{"vrrp.max_peer_advert_interval", func(c *Config) { c.MaxPeerAdvertInterval = 100 * time.Millisecond }},
		{"vrrp.auth_hmac_key_file", func(c *Config) { c.AuthHMACKey, c.AuthHMACKeyID = make([]byte, 31), 1 }},
		{"vrrp.auth_hmac_key_id", func(c *Config) { c.AuthHMACKey = make([]byte, 32) }},
		{"vrrp.auth_hmac_key_file", func(c *Config) {
			c.Version, c.AdvertInterval, c.AuthPass, c.AuthHMACKey, c.AuthHMACKeyID = 2, time.Second, "x", make([]byte, 32), 1
		}},
		{"vrrp.max_peer_advert_interval", func(c *Config) { c.MaxPeerAdvertInterval = 41 * time.Second }},
		{"vrrp.max_peer_advert_interval", func(c *Config) {
			c.Version, c.AdvertInterval, c.MaxPeerAdvertInterval = 2, time.Second, 3*time.Second
		}},
	}
	for _, c := range cases {
		cfg := good
		c.mod(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.field+":") {
			t.Errorf("want error naming %s, got %v", c.field, err)
		}
	}
	// Reconfigure's refusals name the field.
	next := good
	next.VRID = 52
	next.Priority = 50
	if err := good.reconfigurable(next); err == nil || !strings.Contains(err.Error(), "vrrp.vrid") || strings.Contains(err.Error(), "priority") {
		t.Errorf("reconfigurable: %v", err)
	}
	two := good
	two.VIPs = []netip.Prefix{netip.MustParsePrefix("10.0.0.100/24"), netip.MustParsePrefix("10.0.0.101/24")}
	swapped := two
	swapped.VIPs = []netip.Prefix{two.VIPs[1], two.VIPs[0]}
	if err := two.reconfigurable(swapped); err != nil {
		t.Errorf("reordered vips refused: %v", err)
	}
	swapped.VIPs = []netip.Prefix{two.VIPs[0], netip.MustParsePrefix("10.0.0.102/24")}
	if err := two.reconfigurable(swapped); err == nil || !strings.Contains(err.Error(), "vrrp.vips") {
		t.Errorf("changed vips: %v", err)
	}
	next = good
	next.Priority, next.Preempt, next.AdvertInterval = 50, true, 200*time.Millisecond
	if err := good.reconfigurable(next); err != nil {
		t.Errorf("live-changeable fields refused: %v", err)
	}
}

func TestDefaultMaxPeerAdvertInterval(t *testing.T) {
	for _, c := range []struct{ ours, want time.Duration }{
		{10 * time.Millisecond, time.Second},
		{200 * time.Millisecond, time.Second},
		{time.Second, 3 * time.Second},
		{20 * time.Second, 40950 * time.Millisecond},
	} {
		if got := DefaultMaxPeerAdvertInterval(c.ours); got != c.want {
			t.Errorf("DefaultMaxPeerAdvertInterval(%v) = %v, want %v", c.ours, got, c.want)
		}
	}
}

func TestGARPFrames(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	frames, err := garpFrames(mac, tVIP)
	if err != nil || len(frames) != 2 {
		t.Fatalf("%v %d", err, len(frames))
	}
	for i, f := range frames {
		// Ethernet: dst broadcast, src mac, type 0x0806.
		if !bytes.Equal(f[0:6], []byte{255, 255, 255, 255, 255, 255}) || !bytes.Equal(f[6:12], mac) || f[12] != 0x08 || f[13] != 0x06 {
			t.Fatalf("frame %d ethernet header % x", i, f[:14])
		}
		a := f[14:]
		op := binary.BigEndian.Uint16(a[6:8])
		if op != uint16(i+1) {
			t.Fatalf("frame %d op %d", i, op)
		}
		// Sender = VIP at our MAC, target IP = VIP.
		if !bytes.Equal(a[8:14], mac) || !bytes.Equal(a[14:18], []byte{10, 0, 0, 100}) || !bytes.Equal(a[24:28], []byte{10, 0, 0, 100}) {
			t.Fatalf("frame %d arp % x", i, a[:28])
		}
	}
}

func BenchmarkRxCheck(b *testing.B) {
	vip := netip.MustParsePrefix("10.0.0.100/24")
	own, peer := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	f := newRxFilter(Config{Version: 3, VRID: 51, AdvertInterval: time.Second, VIPs: []netip.Prefix{vip}}, own)
	p := Packet{Version: 3, VRID: 51, Priority: 100, AdvertInterval: time.Second, Addrs: []netip.Addr{vip.Addr()}}
	msg, _ := p.Marshal(peer, MulticastGroup)
	for _, c := range []struct {
		name string
		pkt  []byte
	}{
		{"valid", ipPacket(255, peer, MulticastGroup, msg)},
		{"bad_ttl", ipPacket(64, peer, MulticastGroup, msg)},
		{"bad_checksum", ipPacket(255, peer, MulticastGroup, append(append([]byte(nil), msg[:7]...), msg[7]+1, 10, 0, 0, 100))},
	} {
		b.Run(c.name, func(b *testing.B) {
			var q Packet
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				f.check(c.pkt, &q)
			}
		})
	}
}
