package vrrp

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	hmacTestKey = func() []byte {
		k := make([]byte, 32)
		for i := range k {
			k[i] = byte(i) // Keepalived's man page example: hex:000102...1f
		}
		return k
	}()
	hmacSrc = netip.MustParseAddr("10.0.0.1")
	hmacVIP = netip.MustParseAddr("10.0.0.100")
)

// TestHMACTrailerVector: the trailer of a known advert, key and sequence is
// the one computed by an independent implementation of Keepalived's
// auth_hmac format (Python's hmac module, from vrrp_auth_hmac.c's
// description: pseudo header 4,version,vrid,0,source; message with the
// checksum read as zero; the trailer's first 12 bytes; 16 zero bytes;
// HMAC-SHA256 truncated to 16 bytes).
func TestHMACTrailerVector(t *testing.T) {
	const want = "31336401006475730a000064" + "01010000" + "69000000" + "8000" + "0007" + "063e1a9f2db5aa794e64e90d542b04c2"
	p := Packet{Version: 3, VRID: 51, Priority: 100, AdvertInterval: time.Second, Addrs: []netip.Addr{hmacVIP}}
	b, err := p.Marshal(hmacSrc, MulticastGroup)
	if err != nil {
		t.Fatal(err)
	}
	s := newHMACSigner(hmacTestKey, 1)
	b = s.appendTrailer(b, 0, 3, 51, hmacSrc, 0x69000000<<32|0x8000<<16|7)
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("advert with trailer\n got %s\nwant %s", got, want)
	}
}

func TestHMACVerify(t *testing.T) {
	now := time.Unix(0x69000000, 0)
	sign := func(key []byte, keyID uint8, seq uint64, mod func(p *Packet)) []byte {
		p := Packet{Version: 3, VRID: 51, Priority: 100, AdvertInterval: time.Second, Addrs: []netip.Addr{hmacVIP}}
		if mod != nil {
			mod(&p)
		}
		b, err := p.Marshal(hmacSrc, MulticastGroup)
		if err != nil {
			t.Fatal(err)
		}
		return newHMACSigner(key, keyID).appendTrailer(b, 0, 3, 51, hmacSrc, seq)
	}
	seqAt := func(d time.Duration) uint64 { return clockSeq(now.Add(d)) }
	v := newHMACVerifier(hmacTestKey, 1, hmacWindow(time.Second))
	check := func(b []byte, src netip.Addr) string {
		n := len(b) - hmacTrailerLen
		r, err := v.verify(now, 3, 51, src, b[:n], b[n:])
		if (r == "") != (err == nil) {
			t.Fatalf("reason %q with error %v", r, err)
		}
		return r
	}
	good := sign(hmacTestKey, 1, seqAt(0), nil)
	otherKey := append([]byte(nil), hmacTestKey...)
	otherKey[0] ^= 1
	tampered := append([]byte(nil), good...)
	tampered[2] = 255 // priority 255, trailer of priority 100
	for _, c := range []struct {
		name string
		b    []byte
		src  netip.Addr
		want string
	}{
		{"valid", good, hmacSrc, ""},
		{"replayed", good, hmacSrc, "auth_replay"},
		{"next one", sign(hmacTestKey, 1, seqAt(0)+1, nil), hmacSrc, ""},
		{"older than the last", sign(hmacTestKey, 1, seqAt(-time.Second), nil), hmacSrc, "auth_replay"},
		{"priority changed", tampered, hmacSrc, "auth_bad_hmac"},
		{"other key", sign(otherKey, 1, seqAt(time.Second), nil), hmacSrc, "auth_bad_hmac"},
		{"other source (pseudo header)", sign(hmacTestKey, 1, seqAt(time.Second), nil), netip.MustParseAddr("10.0.0.66"), "auth_bad_hmac"},
		{"other key id", sign(hmacTestKey, 2, seqAt(time.Second), nil), hmacSrc, "auth_unknown_key"},
		{"stale", sign(hmacTestKey, 1, seqAt(-10*time.Second), nil), hmacSrc, "auth_stale"},
		{"from the future", sign(hmacTestKey, 1, seqAt(10*time.Second), nil), hmacSrc, "auth_stale"},
		{"within the window", sign(hmacTestKey, 1, seqAt(4*time.Second), nil), hmacSrc, ""},
	} {
		if got := check(c.b, c.src); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	malformed := sign(hmacTestKey, 1, seqAt(5*time.Second), nil)
	malformed[len(malformed)-hmacTrailerLen] = 2
	if got := check(malformed, hmacSrc); got != "auth_malformed" {
		t.Errorf("trailer type 2: %q", got)
	}
	if r, _ := v.verify(now, 3, 51, hmacSrc, good[:12], nil); r != "auth_missing" {
		t.Errorf("no trailer: %q", r)
	}
	// A forged trailer does not move the replay mark: the genuine next one passes.
	forged := sign(otherKey, 1, seqAt(4*time.Second)+100, nil)
	if got := check(forged, hmacSrc); got != "auth_bad_hmac" {
		t.Fatalf("forged: %q", got)
	}
	if got := check(sign(hmacTestKey, 1, seqAt(4*time.Second)+1, nil), hmacSrc); got != "" {
		t.Errorf("genuine advert after a forged one with a higher sequence: %q", got)
	}
	// The valid path does not allocate.
	ok := sign(hmacTestKey, 1, seqAt(4*time.Second)+2, nil)
	n := len(ok) - hmacTrailerLen
	marks := v.marks
	if a := testing.AllocsPerRun(10, func() {
		v.marks = marks // (else the second run is a replay)
		if r, _ := v.verify(now, 3, 51, hmacSrc, ok[:n], ok[n:]); r != "" {
			t.Fatal(r)
		}
	}); a != 0 {
		t.Errorf("verify allocates %v times", a)
	}
}

func TestHMACSignerSequenceGrows(t *testing.T) {
	s := newHMACSigner(hmacTestKey, 1)
	now := time.Unix(0x69000000, 0)
	a := s.next(now)
	b := s.next(now) // same clock reading
	c := s.next(now.Add(-time.Second))
	if !(b > a && c > b) || a != clockSeq(now) {
		t.Fatalf("sequence %x %x %x", a, b, c)
	}
}

func TestParseHMACKey(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		err  string
	}{
		{"hex:" + strings.Repeat("ab", 32) + "\n", 32, ""},
		{strings.Repeat("k", 40), 40, ""},
		{"hex:" + strings.Repeat("ab", 16), 0, "16 bytes"},
		{"hex:zz" + strings.Repeat("ab", 31), 0, "not hex"},
		{strings.Repeat("k", 65), 0, "65 bytes"},
	} {
		k, err := ParseHMACKey(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %v, want error with %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || len(k) != c.want {
			t.Errorf("%q: %d bytes, %v", c.in, len(k), err)
		}
	}
}

// TestRxFilterHMAC: with a key, unsigned adverts are dropped (auth_missing)
// and signed ones pass the whole receive check.
func TestRxFilterHMAC(t *testing.T) {
	own := netip.MustParseAddr("10.0.0.2")
	cfg := Config{Version: 3, VRID: 51, AdvertInterval: time.Second, VIPs: []netip.Prefix{netip.PrefixFrom(hmacVIP, 24)},
		AuthHMACKey: hmacTestKey, AuthHMACKeyID: 1}
	f := newRxFilter(cfg, own)
	p := Packet{Version: 3, VRID: 51, Priority: 200, AdvertInterval: time.Second, Addrs: []netip.Addr{hmacVIP}}
	msg, _ := p.Marshal(hmacSrc, MulticastGroup)
	var q Packet
	if _, r, _ := f.check(ipPacket(255, hmacSrc, MulticastGroup, msg), &q); r != "auth_missing" {
		t.Errorf("unsigned advert: %q, want auth_missing", r)
	}
	signed := newHMACSigner(hmacTestKey, 1).appendTrailer(append([]byte(nil), msg...), 0, 3, 51, hmacSrc, clockSeq(time.Now()))
	if _, r, err := f.check(ipPacket(255, hmacSrc, MulticastGroup, signed), &q); r != "" || q.Priority != 200 {
		t.Errorf("signed advert: %q %v", r, err)
	}
	if _, r, _ := f.check(ipPacket(255, hmacSrc, MulticastGroup, append(signed, 0)), &q); r != "auth_malformed" {
		t.Errorf("one byte more: %q", r)
	}
	// Without a key, a Keepalived auth_hmac advert is read as the advert it carries.
	if _, r, _ := newRxFilter(Config{Version: 3, VRID: 51, AdvertInterval: time.Second, VIPs: cfg.VIPs}, own).check(ipPacket(255, hmacSrc, MulticastGroup, signed), &q); r != "" {
		t.Errorf("signed advert, no key configured: %q", r)
	}
}

// A reload (new rxFilter) keeps the replay marks: a captured advert is not
// accepted again after it.
func TestRxFilterHMACReplayAcrossReload(t *testing.T) {
	own := netip.MustParseAddr("10.0.0.2")
	cfg := Config{Version: 3, VRID: 51, AdvertInterval: time.Second, VIPs: []netip.Prefix{netip.PrefixFrom(hmacVIP, 24)},
		AuthHMACKey: hmacTestKey, AuthHMACKeyID: 1}
	p := Packet{Version: 3, VRID: 51, Priority: 200, AdvertInterval: time.Second, Addrs: []netip.Addr{hmacVIP}}
	msg, _ := p.Marshal(hmacSrc, MulticastGroup)
	pkt := ipPacket(255, hmacSrc, MulticastGroup, newHMACSigner(hmacTestKey, 1).appendTrailer(msg, 0, 3, 51, hmacSrc, clockSeq(time.Now())))
	var q Packet
	f := newRxFilter(cfg, own)
	if _, r, err := f.check(pkt, &q); r != "" {
		t.Fatal(r, err)
	}
	cfg.Priority = 50
	g := newRxFilter(cfg, own)
	g.inherit(f)
	if _, r, _ := g.check(pkt, &q); r != "auth_replay" {
		t.Fatalf("captured advert after a reload: %q, want auth_replay", r)
	}
}
