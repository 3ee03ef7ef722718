package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestReleaseAfterKill: a SIGKILLed vipd leaves the VIP on its interface, where the kernel
// keeps answering ARP for it beside the peer that took over (the fault matrix measures ~2.4 s
// on two hosts until vipd restarts). `vipd release`, which the unit runs as ExecStopPost,
// removes it; while a vipd answers on the control socket it refuses and changes nothing.
func TestReleaseAfterKill(t *testing.T) {
	vrrpNeedRoot(t)
	p := vrrpNewLab(t, vipdBin(t))
	p.start(true, nil)
	ctx := vrrpCtx(t, time.Minute)
	release := func() (string, error) {
		return p.lb1.Exec(ctx, p.bin, "release", "-c", p.d1.ConfigPath)
	}

	out, err := release()
	if err == nil || !strings.Contains(out, "is running") {
		t.Fatalf("release while vipd runs as MASTER: err %v, output %q; want a refusal", err, out)
	}
	if has, _ := p.lb1.HasAddr(p.vip.String()); !has {
		t.Fatal("release while vipd runs removed the VIP")
	}

	p.d1.Kill()
	_ = p.d1.Wait(5 * time.Second)
	if _, err := p.d2.WaitState(ctx, "MASTER"); err != nil {
		t.Fatal(err)
	}
	if has, _ := p.lb1.HasAddr(p.vip.String()); !has {
		t.Fatal("the killed vipd's VIP is gone by itself: the case release exists for did not happen")
	}
	if got := p.holders(); len(got) != 2 {
		t.Fatalf("VIP holders after lb1's vipd was killed and lb2 took over: %v, want both", got)
	}
	if out, err = release(); err != nil || !strings.Contains(out, "removed "+p.vip.String()) {
		t.Fatalf("release after the kill: err %v, output %q", err, out)
	}
	if got := p.holders(); len(got) != 1 || got[0] != "lb2" {
		t.Fatalf("VIP holders after release: %v, want lb2 only", got)
	}
	// Idempotent: nothing left to remove, exit 0, nothing printed.
	if out, err = release(); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("second release: err %v, output %q", err, out)
	}

}
