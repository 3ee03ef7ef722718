package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipd-project/vipd/test/lab"
)

func vrrpNeedRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces")
	}
}

// vipdBin returns the vipd binary under test: $VIPD_BIN (make e2e sets it to bin/vipd), or
// cmd/vipd built into the test's temp dir.
func vipdBin(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("VIPD_BIN"); b != "" {
		return b
	}
	out := filepath.Join(t.TempDir(), "vipd")
	cmd := exec.Command("go", "build", "-o", out, "github.com/vipd-project/vipd/cmd/vipd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build vipd: %v\n%s", err, b)
	}
	return out
}

func vrrpCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// vrrpPair is lb1 + lb2 running vipd (restartable) and a client, in one lab.
type vrrpPair struct {
	t      *testing.T
	lab    *lab.Lab
	lb1    *lab.Host
	lb2    *lab.Host
	client *lab.Host
	vip    netip.Addr
	bin    string
	d1, d2 *lab.Vipd
	mac1   string
	mac2   string
}

func vrrpNewLab(t *testing.T, bin string) *vrrpPair {
	t.Helper()
	l := lab.New(t, lab.Options{Hosts: []string{"lb1", "lb2", "client"}})
	p := &vrrpPair{t: t, lab: l, lb1: l.Host("lb1"), lb2: l.Host("lb2"), client: l.Host("client"),
		vip: l.Addr(100), bin: bin}
	// The client's neighbour table must take a gratuitous ARP at once, not only 1 s (Linux's
	// default locktime) after its last change, or the MAC-flip checks would race the kernel.
	if err := p.client.NoNeighLocktime(); err != nil {
		t.Fatal(err)
	}
	var err error
	if p.mac1, err = p.lb1.MAC(); err != nil {
		t.Fatal(err)
	}
	if p.mac2, err = p.lb2.MAC(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			p.dumpLogs()
		}
	})
	return p
}

func (p *vrrpPair) dumpLogs() {
	for _, d := range []*lab.Vipd{p.d1, p.d2} {
		if d != nil {
			p.t.Logf("---- %s vipd log (last 40 lines) ----\n%s", d.Host.Name, d.Tail(40))
		}
	}
}

// opts returns vipd options for host h with priority prio; unicast sets the other LB as peer.
func (p *vrrpPair) opts(h *lab.Host, prio int, unicast bool, mod func(*lab.VipdOptions)) lab.VipdOptions {
	o := lab.VipdOptions{Bin: p.bin, VIP: p.vip, Priority: prio, Advert: 200 * time.Millisecond}
	if unicast {
		if h == p.lb1 {
			o.UnicastPeers = []netip.Addr{p.lb2.Addr}
		} else {
			o.UnicastPeers = []netip.Addr{p.lb1.Addr}
		}
	}
	if mod != nil {
		mod(&o)
	}
	return o
}

// stopAll kills both daemons (SIGKILL) and removes any VIP they left, for a fresh start.
func (p *vrrpPair) stopAll() {
	for _, d := range []*lab.Vipd{p.d1, p.d2} {
		if d != nil && d.Running() {
			d.Kill()
			_ = d.Wait(5 * time.Second)
		}
	}
	for _, h := range []*lab.Host{p.lb1, p.lb2} {
		_, _ = h.Exec(context.Background(), "ip", "addr", "del", lab.Prefix24(p.vip), "dev", "eth0")
	}
}

// start starts lb1 (prio 100), waits until it is MASTER, then lb2 (prio 90) and waits until it
// is BACKUP. Starting one after the other keeps the first election deterministic even with
// preemption off.
func (p *vrrpPair) start(unicast bool, mod func(*lab.VipdOptions)) {
	t := p.t
	t.Helper()
	p.stopAll()
	var err error
	if p.d1, err = p.lb1.StartVipd(p.opts(p.lb1, 100, unicast, mod)); err != nil {
		t.Fatal(err)
	}
	ctx := vrrpCtx(t, 15*time.Second)
	if _, err := p.d1.WaitState(ctx, "MASTER"); err != nil {
		t.Fatalf("lb1 never became MASTER: %v", err)
	}
	if p.d2, err = p.lb2.StartVipd(p.opts(p.lb2, 90, unicast, mod)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.d2.WaitState(ctx, "BACKUP"); err != nil {
		t.Fatalf("lb2 never became BACKUP: %v", err)
	}
}

// states returns both daemons' VRRP states ("DOWN" for one not running or not answering).
func (p *vrrpPair) states(ctx context.Context) (string, string) {
	get := func(d *lab.Vipd) string {
		if d == nil || !d.Running() {
			return "DOWN"
		}
		s, err := d.State(ctx)
		if err != nil {
			return "DOWN"
		}
		return s
	}
	return get(p.d1), get(p.d2)
}

// waitStates polls until lb1 and lb2 are in the wanted states (hold for one check).
func (p *vrrpPair) waitStates(ctx context.Context, want1, want2 string) error {
	var s1, s2 string
	for {
		s1, s2 = p.states(ctx)
		if s1 == want1 && s2 == want2 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("states lb1=%s lb2=%s, want %s/%s", s1, s2, want1, want2)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// holder returns which LB hosts hold the VIP on eth0.
func (p *vrrpPair) holders() []string {
	var hs []string
	for _, h := range []*lab.Host{p.lb1, p.lb2} {
		if ok, err := h.HasAddr(p.vip.String()); err == nil && ok {
			hs = append(hs, h.Name)
		}
	}
	return hs
}

// expectHolder asserts that exactly host `want` holds the VIP (waits up to 3 s for the other
// to let go), that the client can ping it and that the client's neighbour entry points at it.
func (p *vrrpPair) expectHolder(want *lab.Host) {
	t := p.t
	t.Helper()
	wantMAC := p.mac1
	if want == p.lb2 {
		wantMAC = p.mac2
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		hs := p.holders()
		if len(hs) == 1 && hs[0] == want.Name {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("VIP held by %v, want only %s", hs, want.Name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.client.Ping(p.vip, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.client.WaitNeighbour(vrrpCtx(t, 3*time.Second), p.vip, wantMAC); err != nil {
		t.Fatalf("client's ARP entry for the VIP does not point at %s: %v", want.Name, err)
	}
}

func vrrpCountMasters(a, b string) int {
	n := 0
	for _, s := range []string{a, b} {
		if s == "MASTER" {
			n++
		}
	}
	return n
}

func vrrpReasonsWith(drops map[string]uint64, subs ...string) bool {
	for k, v := range drops {
		if v == 0 {
			continue
		}
		for _, s := range subs {
			if strings.Contains(strings.ToLower(k), s) {
				return true
			}
		}
	}
	return false
}

// vrrpKeepalivedNeeded skips when keepalived is not installed.
func vrrpKeepalivedNeeded(t *testing.T) {
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Skip("keepalived not installed (apt-get install keepalived)")
	}
}
