package vrrp

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// TestKeepalivedHMACInterop pairs a Router with Keepalived's development
// branch (the first with auth_hmac; no released package has it), both with
// the same auth_hmac key, in a netns lab: Keepalived must accept vipd's
// signed adverts (it stays BACKUP under vipd), and vipd, which drops every
// advert without a valid trailer, must accept Keepalived's (it stays BACKUP
// under Keepalived once its priority is lower), in multicast and unicast.
// A control with different keys: each refuses the other's adverts. Set
// VIPD_KEEPALIVED_HMAC to such a keepalived binary; skipped otherwise. Built
// here from github.com/acassen/keepalived at 9cbce3e with autoconf, automake
// and libssl-dev: ./autogen.sh && ./configure --disable-lvs --disable-snmp
// --disable-libiptc --disable-libipset --disable-nftables --disable-dbus
// --disable-bfd --disable-systemd && make (bin/keepalived). Root only.
func TestKeepalivedHMACInterop(t *testing.T) {
	bin := os.Getenv("VIPD_KEEPALIVED_HMAC")
	if bin == "" {
		t.Skip("VIPD_KEEPALIVED_HMAC not set (a keepalived built with auth_hmac)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	for _, unicast := range []bool{false, true} {
		t.Run(fmt.Sprintf("unicast=%v", unicast), func(t *testing.T) { testKeepalivedHMAC(t, bin, unicast, false) })
	}
	// The control: with another key each refuses the other's adverts, both become MASTER.
	t.Run("other_key", func(t *testing.T) { testKeepalivedHMAC(t, bin, false, true) })
}

func testKeepalivedHMAC(t *testing.T, bin string, unicast, otherKey bool) {
	l := newTLab(t, "10.77.59.0/24", "vipd", "ka")
	me, ka := l.Host("vipd"), l.Host("ka")
	vip := l.Addr(100)
	const keyText = "hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	key, err := ParseHMACKey(keyText)
	if err != nil {
		t.Fatal(err)
	}
	kaKey := keyText
	if otherKey {
		kaKey = strings.Replace(keyText, "1f", "ff", 1)
	}
	extra := "  auth_hmac {\n    key 1 " + kaKey + "\n    active_key 1\n  }\n"
	if unicast {
		extra += fmt.Sprintf("  unicast_src_ip %s\n  unicast_peer {\n    %s\n  }\n", ka.Addr, me.Addr)
	}
	stopKA := startKeepalivedBin(t, bin, nil, ka, 3, fmt.Sprintf(
		"  state BACKUP\n  virtual_router_id 51\n  priority 90\n  advert_int 0.1\n%s  virtual_ipaddress {\n    %s\n  }",
		extra, netip.PrefixFrom(vip, 24)))
	defer stopKA()
	cfg := Config{Interface: "eth0", VRID: 51, Priority: 100, Version: 3, AdvertInterval: 100 * time.Millisecond,
		Preempt: true, VIPs: []netip.Prefix{netip.PrefixFrom(vip, 24)}, AuthHMACKey: key, AuthHMACKeyID: 1}.WithDefaults()
	if unicast {
		cfg.UnicastPeers = []netip.Addr{ka.Addr}
	}
	kaHas := func() bool { ok, _ := ka.HasAddr(vip.String()); return ok }
	meHas := func() bool { ok, _ := me.HasAddr(vip.String()); return ok }
	n := startNode(t, me, cfg)
	if otherKey {
		waitFor(t, "both MASTER (each refuses the other's adverts)", 15*time.Second, func() bool { return n.is(StateMaster) && meHas() && kaHas() })
		waitFor(t, "vipd counting keepalived's adverts as auth_bad_hmac", 15*time.Second, func() bool { return n.r.Status().Drops["auth_bad_hmac"] > 5 })
		t.Logf("other key: both MASTER; vipd drops %v", n.r.Status().Drops)
		return
	}
	waitFor(t, "vipd MASTER, keepalived without the VIP", 15*time.Second, func() bool { return n.is(StateMaster) && meHas() && !kaHas() })
	time.Sleep(time.Second) // > 3 x 100 ms: keepalived would have taken over without accepting our adverts
	if kaHas() {
		t.Fatal("keepalived took the VIP: it does not accept vipd's signed adverts")
	}
	// vipd at 80: keepalived (90) preempts, and vipd follows it only if it verifies its trailers.
	low := cfg
	low.Priority = 80
	if err := n.r.Reconfigure(low); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "keepalived MASTER, vipd BACKUP under it", 15*time.Second, func() bool {
		st := n.r.Status()
		return st.State == StateBackup && st.MasterAddr == ka.Addr && kaHas() && !meHas()
	})
	before := n.r.Status()
	time.Sleep(time.Second)
	st := n.r.Status()
	if st.State != StateBackup || st.AdvertsReceived-before.AdvertsReceived < 5 {
		t.Fatalf("vipd under keepalived: %v, %d adverts accepted in 1 s", st.State, st.AdvertsReceived-before.AdvertsReceived)
	}
	for k, v := range st.Drops {
		if strings.HasPrefix(k, "auth_") && v > 0 {
			t.Errorf("vipd dropped keepalived's adverts: %s %d", k, v)
		}
	}
	t.Logf("vipd accepted %d signed adverts from keepalived in 1 s; drops %v", st.AdvertsReceived-before.AdvertsReceived, st.Drops)
}
