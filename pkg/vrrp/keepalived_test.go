package vrrp

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startKeepalived runs keepalived (VRRP only, foreground) in host h with the
// given instance body and ends it BY PID in t.Cleanup (SIGTERM, then
// SIGKILL of the parent and of its VRRP child from the pid files).
func startKeepalived(t *testing.T, h *thost, version int, body string) (stop func()) {
	t.Helper()
	return startKeepalivedBin(t, "keepalived", []string{"-P"}, h, version, body)
}

// startKeepalivedBin is startKeepalived with another keepalived binary and
// its own extra flags (-P, VRRP only, exists only in builds with LVS).
func startKeepalivedBin(t *testing.T, bin string, flags []string, h *thost, version int, body string) (stop func()) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "keepalived.conf")
	cfg := fmt.Sprintf("global_defs {\n  vrrp_version %d\n  script_user root\n}\nvrrp_instance VI_1 {\n  interface %s\n%s\n}\n", version, h.Iface, body)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	pid, vpid := filepath.Join(dir, "k.pid"), filepath.Join(dir, "v.pid")
	var out bytes.Buffer
	args := append([]string{"netns", "exec", h.NS, bin, "-n", "-l", "-D"}, flags...)
	cmd := exec.Command("ip", append(args, "-f", conf, "-p", pid, "-r", vpid)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start keepalived: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		// The VRRP child normally exits with its parent; make sure.
		if b, err := os.ReadFile(vpid); err == nil {
			if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p > 1 {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			t.Logf("keepalived output:\n%s", out.String())
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestKeepalivedInterop pairs a Router with the real Keepalived 2.2.7 in a
// netns lab (root only, skipped without keepalived), in VRRPv3 and in VRRPv2
// with auth PASS: the higher priority wins whichever daemon it is, and
// failover works both ways.
func TestKeepalivedInterop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Skip("keepalived not installed (apt-get install keepalived)")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	t.Run("v3", func(t *testing.T) { testKeepalivedInterop(t, 3, false) })
	t.Run("v3-unicast", func(t *testing.T) { testKeepalivedInterop(t, 3, true) })
	t.Run("v2-pass", func(t *testing.T) { testKeepalivedInterop(t, 2, false) })
}

func testKeepalivedInterop(t *testing.T, version int, unicast bool) {
	net3 := 60 + version
	if unicast {
		net3 = 70
	}
	l := newTLab(t, fmt.Sprintf("10.77.%d.0/24", net3), "vipd", "ka")
	me, ka := l.Host("vipd"), l.Host("ka")
	vip := l.Addr(100)
	ival, kaIval, auth := 100*time.Millisecond, "0.1", ""
	if version == 2 {
		ival, kaIval = time.Second, "1"
		auth = "  authentication {\n    auth_type PASS\n    auth_pass 123456\n  }\n"
	}
	if unicast {
		auth += fmt.Sprintf("  unicast_src_ip %s\n  unicast_peer {\n    %s\n  }\n", ka.Addr, me.Addr)
	}
	startKeepalived(t, ka, version, fmt.Sprintf(
		"  state BACKUP\n  virtual_router_id 51\n  priority 90\n  advert_int %s\n%s  virtual_ipaddress {\n    %s\n  }",
		kaIval, auth, netip.PrefixFrom(vip, 24)))
	cfg := Config{Interface: "eth0", VRID: 51, Priority: 100, Version: version, AdvertInterval: ival,
		Preempt: true, VIPs: []netip.Prefix{netip.PrefixFrom(vip, 24)}}.WithDefaults()
	if version == 2 {
		cfg.AuthPass = "123456"
	}
	if unicast {
		cfg.UnicastPeers = []netip.Addr{ka.Addr}
	}
	kaHas := func() bool { ok, _ := ka.HasAddr(vip.String()); return ok }
	meHas := func() bool { ok, _ := me.HasAddr(vip.String()); return ok }

	n := startNode(t, me, cfg)
	// vipd (100) wins over keepalived (90).
	waitFor(t, "vipd MASTER, keepalived without the VIP", 10*time.Second, func() bool {
		return n.is(StateMaster) && meHas() && !kaHas()
	})
	// Keepalived must accept our adverts: it stays backup (no VIP) for a
	// while, and we count its adverts only if it ever sends (it should not).
	time.Sleep(min(4*ival, 1500*time.Millisecond))
	if kaHas() {
		t.Fatal("keepalived took the VIP while vipd (higher priority) is master: it does not accept our adverts")
	}
	for k, v := range n.r.Status().Drops {
		// (source_unresolved: an advert keepalived sent before it heard us, under load,
		// while vipd ARP-resolved it: not a refusal of keepalived's format)
		if k != "source_unresolved" && v > 0 {
			t.Fatalf("drops while paired with keepalived: %v", n.r.Status().Drops)
		}
	}

	low := cfg
	low.Priority = 80
	if version == 2 {
		// v2 runs on whole seconds and every Keepalived step waits its
		// Master_Down_Interval (3.6 s): keep it to the graceful handover.
		start := time.Now()
		n.stop()
		waitFor(t, "keepalived MASTER after vipd stopped", 10*time.Second, kaHas)
		t.Logf("keepalived took over %v after vipd's graceful stop", time.Since(start))
		return
	}
	// Keepalived becomes higher: lower ours to 80 live; keepalived (90,
	// preempting by default) takes over.
	if err := n.r.Reconfigure(low); err != nil {
		t.Fatal(err)
	}
	d := waitFor(t, "keepalived MASTER after vipd dropped to 80", 10*time.Second, func() bool {
		return n.is(StateBackup) && kaHas() && !meHas()
	})
	t.Logf("keepalived preempted %v after our priority dropped", d)
	if st := n.r.Status(); st.MasterAddr != ka.Addr || st.Drops["auth"] > 0 || st.Drops["checksum"] > 0 {
		t.Fatalf("vipd status with keepalived master: master %v drops %v", st.MasterAddr, st.Drops)
	}
	// Back to 100: we preempt keepalived on its next advert.
	if err := n.r.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	d = waitFor(t, "vipd preempting keepalived", 10*time.Second, func() bool { return n.is(StateMaster) && meHas() && !kaHas() })
	t.Logf("vipd preempted keepalived in %v", d)

	// Graceful stop of vipd: keepalived takes over after its skew time.
	start := time.Now()
	n.stop()
	waitFor(t, "keepalived MASTER after vipd stopped", 10*time.Second, kaHas)
	t.Logf("keepalived took over %v after vipd's graceful stop", time.Since(start))
	if meHas() {
		t.Fatal("vipd kept the VIP after stopping")
	}

	// vipd as backup (priority 80) behind keepalived; keepalived stops
	// (priority 0): vipd takes over.
	n2 := startNode(t, me, low)
	waitFor(t, "vipd BACKUP behind keepalived", 10*time.Second, func() bool { return n2.is(StateBackup) && n2.r.Status().MasterAddr == ka.Addr })
	// Keepalived's host loses its link: vipd takes over after
	// Master_Down_Interval of keepalived's (adopted) interval.
	start = time.Now()
	if err := ka.LinkDown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "vipd MASTER after keepalived vanished", 10*time.Second, func() bool { return n2.is(StateMaster) && meHas() })
	t.Logf("vipd took over %v after keepalived's link was cut", time.Since(start))
}
