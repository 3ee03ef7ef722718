package e2e

// SIGHUP reload of the VRRP side: what can change live changes (a priority lowered below the
// peer's hands the VIP over), what cannot is refused with a log line naming the field, and the
// daemon keeps running its old configuration. The proxy side of reload is in proxy_test.go.

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipd-project/vipd/test/lab"
)

func TestReloadVRRP(t *testing.T) {
	vrrpNeedRoot(t)
	bin := vipdBin(t)
	l := lab.New(t, lab.Options{Hosts: []string{"lb1", "lb2"}})
	lb1, lb2 := l.Host("lb1"), l.Host("lb2")
	vip := l.Addr(100)
	d1, err := lb1.StartVipd(lab.VipdOptions{Bin: bin, VIP: vip, Priority: 100, Advert: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d2, err := lb2.StartVipd(lab.VipdOptions{Bin: bin, VIP: vip, Priority: 90, Advert: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d1.WaitState(vrrpCtx(t, 10*time.Second), "MASTER"); err != nil {
		t.Fatalf("lb1 never became MASTER: %v\n%s", err, d1.Tail(20))
	}
	if _, err := d2.WaitState(vrrpCtx(t, 10*time.Second), "BACKUP"); err != nil {
		t.Fatalf("lb2 not BACKUP: %v", err)
	}
	orig, err := os.ReadFile(d1.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	reload := func(cfg string) {
		t.Helper()
		if err := os.WriteFile(d1.ConfigPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := d1.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	// A change that needs a restart: refused, the daemon keeps its VRID and stays MASTER.
	reload(strings.Replace(string(orig), "vrid: 51", "vrid: 52", 1))
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(d1.Log(), "reload refused") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if log := d1.Log(); !strings.Contains(log, "reload refused") || !strings.Contains(log, "vrrp.vrid") {
		t.Fatalf("a VRID change was not refused with a line naming vrrp.vrid:\n%s", d1.Tail(20))
	}
	time.Sleep(600 * time.Millisecond) // three adverts: a silent VRID change would have lost the VIP
	if st, err := d1.Stats(vrrpCtx(t, 5*time.Second)); err != nil || st.VRRP.State != "MASTER" || !st.VRRP.HoldsVIP {
		t.Fatalf("after the refused reload lb1 is not the MASTER holding the VIP: %+v %v", st, err)
	}
	if !d1.Running() {
		t.Fatal("vipd exited after a refused reload")
	}

	// An invalid file: refused, nothing changes.
	reload("vrrp: [\n")
	time.Sleep(300 * time.Millisecond)
	if strings.Count(d1.Log(), "reload refused") < 2 || !d1.Running() {
		t.Fatalf("an invalid file was not refused:\n%s", d1.Tail(20))
	}

	// A live change: priority 100 -> 50, below lb2's 90: lb2 preempts and takes the VIP.
	start := time.Now()
	reload(strings.Replace(string(orig), "priority: 100", "priority: 50", 1))
	if _, err := d2.WaitState(vrrpCtx(t, 5*time.Second), "MASTER"); err != nil {
		t.Fatalf("lb2 did not take over after lb1's priority was lowered by reload: %v\n%s", err, d1.Tail(20))
	}
	t.Logf("priority lowered by SIGHUP: lb2 MASTER after %s", time.Since(start).Round(time.Millisecond))
	st, err := d1.Stats(vrrpCtx(t, 5*time.Second))
	if err != nil || st.VRRP.Priority != 50 || st.VRRP.State != "BACKUP" {
		t.Fatalf("lb1 after reload: %+v %v", st, err)
	}
	if _, err := lb2.WaitAddr(vrrpCtx(t, 5*time.Second), vip, true); err != nil {
		t.Fatalf("VIP not on lb2: %v", err)
	}
}
