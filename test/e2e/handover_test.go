package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vipd-project/vipd/test/apiserverstub"
	"github.com/vipd-project/vipd/test/faults"
	"github.com/vipd-project/vipd/test/lab"
)

// TestHitlessHandover (issue 12): the planned handovers of a vipd pair fail no request of a
// client making 100 new TLS connections a second through the VIP: SIGTERM of the master, its
// preempting return, `vipd maintenance on` (the VIP moves to the peer and the host stays
// BACKUP, even though it has the higher priority) and `maintenance off` (it takes the VIP back).
func TestHitlessHandover(t *testing.T) {
	vrrpNeedRoot(t)
	bin := vipdBin(t)
	ctx := vrrpCtx(t, 5*time.Minute)
	e, err := faults.NewEnv(ctx, lab.New(t, faults.LabOptions()), bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, d := range []faults.Daemon{e.D1, e.D2} {
				if d != nil {
					t.Logf("vipd log (tail):\n%s", d.Tail(30))
				}
			}
		}
		e.Stop()
	})
	if err := e.Start(ctx, faults.GossipOff); err != nil {
		t.Fatal(err)
	}
	prober := apiserverstub.StartProber(e.Client.Dial, e.Masters.ClientTLS(), net.JoinHostPort(e.VIP.String(), "6443"),
		10*time.Millisecond, time.Second)
	defer prober.Stop()
	time.Sleep(time.Second)

	state := func(d faults.Daemon) string {
		s, _ := d.State(ctx)
		return s
	}
	// step runs do, waits until want() holds (and the VIP is on exactly that one host), lets
	// the client go on for 1.5 s, and reports the requests started meanwhile that failed.
	step := func(name string, do func() error, want func() bool) {
		t.Helper()
		t0 := time.Now()
		if err := do(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for !want() || len(e.Holders()) != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not done after 20 s: lb1 %s, lb2 %s, VIP on %v", name, state(e.D1), state(e.D2), e.Holders())
			}
			time.Sleep(20 * time.Millisecond)
		}
		took := time.Since(t0)
		time.Sleep(1500 * time.Millisecond)
		rs := prober.Between(t0, time.Now())
		total, failed, _, errs := apiserverstub.Summary(rs)
		t.Logf("%s: %d requests, %d failed, longest gap %v, done after %v", name, total, failed, longestGap(rs, t0), took.Round(time.Millisecond))
		if failed > 0 {
			t.Errorf("%s: %d of %d requests through the VIP failed: %v", name, failed, total, errs)
		}
	}
	ctl := func(args ...string) func() error {
		return func() error {
			v := faults.VipdOf(e.D1)
			out, err := e.LB1.Exec(ctx, append([]string{bin}, append(args, "--socket", v.Socket)...)...)
			if err != nil {
				return fmt.Errorf("%w: %s", err, out)
			}
			return nil
		}
	}
	is := func(d faults.Daemon, s string, holder *lab.Host) func() bool {
		return func() bool {
			h := e.Holders()
			return state(d) == s && len(h) == 1 && h[0] == holder.Name
		}
	}
	step("SIGTERM of the master", e.D1.Term, is(e.D2, "MASTER", e.LB2))
	step("preempting return of the master", e.D1.Restart, is(e.D1, "MASTER", e.LB1))
	time.Sleep(time.Second)
	step("maintenance on", ctl("maintenance", "on"), is(e.D2, "MASTER", e.LB2))
	time.Sleep(2 * time.Second)
	if s := state(e.D1); s != "BACKUP" || !strings.Contains(strings.Join(e.Holders(), ","), "lb2") {
		t.Errorf("in maintenance lb1 (priority 100) is %s, VIP on %v; want BACKUP, VIP on lb2", s, e.Holders())
	}
	step("maintenance off", ctl("maintenance", "off"), is(e.D1, "MASTER", e.LB1))
}

// longestGap is the longest time between two successful answers from t0 on.
func longestGap(rs []apiserverstub.Result, t0 time.Time) time.Duration {
	prev, gap := t0, time.Duration(0)
	for _, r := range rs {
		if r.Err == nil {
			gap = max(gap, r.End.Sub(prev))
			prev = r.End
		}
	}
	return gap
}

var _ = context.Background
