package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vipd-project/vipd/test/apiserverstub"
	"github.com/vipd-project/vipd/test/faults"
	"github.com/vipd-project/vipd/test/lab"
)

// TestHitlessHandover (issue 12): the planned handovers of a vipd pair, with a client making
// 100 new TLS connections a second through the VIP: SIGTERM of the master, its preempting
// return, `vipd maintenance on` (the VIP moves to the peer and the host stays BACKUP, even
// though it has the higher priority) and `maintenance off` (it takes the VIP back). The VIP is
// never on no host, a stop no longer waits drain_grace for connections whose clients moved
// to the peer, no request started after a handover fails; in maintenance the host stays
// BACKUP when the peer stops, and vipd status then exits 5 (VIP on no host).
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
	// step runs do while a sampler watches who holds the VIP (every 10 ms) and when want()
	// first holds (the handover is done), lets the client go on for 1.5 s, then asserts what
	// vipd can promise: the VIP was never on no host, do (a stop included) took less than
	// maxDo, and no request started after the handover failed. Requests in flight at the ARP
	// flip fail whatever the LB does (the client's next packets reach the new holder, which
	// knows nothing of the connection and resets it): they are counted and logged.
	step := func(name string, do func() error, want func() bool, maxDo time.Duration) {
		t.Helper()
		t0 := time.Now()
		var (
			mu       sync.Mutex
			doneAt   time.Time
			noHolder int
		)
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				h := e.Holders()
				ok := want()
				mu.Lock()
				if len(h) == 0 && doneAt.IsZero() {
					noHolder++
				}
				if ok && len(h) == 1 && doneAt.IsZero() {
					doneAt = time.Now()
				}
				mu.Unlock()
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
		err := do()
		took := time.Since(t0)
		if err != nil {
			close(stop)
			t.Fatalf("%s: %v", name, err)
		}
		for deadline := time.Now().Add(20 * time.Second); ; {
			mu.Lock()
			d := doneAt
			mu.Unlock()
			if !d.IsZero() {
				break
			}
			if time.Now().After(deadline) {
				close(stop)
				t.Fatalf("%s: not done after 20 s: lb1 %s, lb2 %s, VIP on %v", name, state(e.D1), state(e.D2), e.Holders())
			}
			time.Sleep(20 * time.Millisecond)
		}
		close(stop)
		<-sampled
		time.Sleep(1500 * time.Millisecond)
		rs := prober.Between(t0, time.Now())
		total, failed, _, errs := apiserverstub.Summary(rs)
		var after []string
		for _, r := range rs {
			if r.Err != nil && r.Start.After(doneAt.Add(50*time.Millisecond)) {
				after = append(after, r.Start.Format("15:04:05.000")+" "+r.Err.Error())
			}
		}
		t.Logf("%s: %d requests, %d failed (in flight at the flip), longest gap %v, VIP moved after %v, command took %v",
			name, total, failed, longestGap(rs, t0), doneAt.Sub(t0).Round(time.Millisecond), took.Round(time.Millisecond))
		if failed > 0 {
			t.Logf("%s: failed: %v", name, errs)
		}
		if noHolder > 0 {
			t.Errorf("%s: the VIP was on no host (%d samples of 10 ms)", name, noHolder)
		}
		if took > maxDo {
			t.Errorf("%s: took %v, want less than %v", name, took.Round(time.Millisecond), maxDo)
		}
		if len(after) > 0 {
			t.Errorf("%s: %d requests started after the handover failed: %v", name, len(after), after)
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
	// A stop ends after the handover and the drain of what is left, well before drain_grace (30 s).
	step("SIGTERM of the master", e.D1.Term, is(e.D2, "MASTER", e.LB2), 10*time.Second)
	step("preempting return of the master", e.D1.Restart, is(e.D1, "MASTER", e.LB1), 10*time.Second)
	time.Sleep(time.Second)
	step("maintenance on", ctl("maintenance", "on"), is(e.D2, "MASTER", e.LB2), 5*time.Second)
	time.Sleep(2 * time.Second) // more than the master-down interval: lb1 stays BACKUP
	if s := state(e.D1); s != "BACKUP" || !strings.Contains(strings.Join(e.Holders(), ","), "lb2") {
		t.Errorf("in maintenance lb1 (priority 100) is %s, VIP on %v; want BACKUP, VIP on lb2", s, e.Holders())
	}
	if out, code := status(ctx, e.LB1, bin); code != 0 || !strings.Contains(out, "maintenance: on") {
		t.Errorf("vipd status on lb1 in maintenance, lb2 holding the VIP: exit %d, want 0 and maintenance shown:\n%s", code, out)
	}
	step("maintenance off", ctl("maintenance", "off"), is(e.D1, "MASTER", e.LB1), 5*time.Second)

	// In maintenance lb1 stays BACKUP even when lb2 stops: the VIP is then on no host, and
	// vipd status says so with exit 5.
	if err := ctl("maintenance", "on")(); err != nil {
		t.Fatal(err)
	}
	if err := e.D2.Term(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // more than lb1's master-down interval
	if h := e.Holders(); len(h) != 0 || state(e.D1) != "BACKUP" {
		t.Fatalf("lb2 stopped, lb1 in maintenance: VIP on %v, lb1 %s; want no holder, BACKUP", h, state(e.D1))
	}
	if out, code := status(ctx, e.LB1, bin); code != 5 || !strings.Contains(out, "held by no host") {
		t.Errorf("vipd status with the VIP on no host: exit %d, want 5 naming it:\n%s", code, out)
	}

	// Maintenance survives a restart (state_file): lb1 comes back BACKUP, alone, without the VIP.
	if err := e.D1.Term(); err != nil {
		t.Fatal(err)
	}
	if err := e.D1.Restart(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // several master-down intervals
	if h := e.Holders(); len(h) != 0 || state(e.D1) != "BACKUP" {
		t.Fatalf("lb1 restarted in maintenance: VIP on %v, lb1 %s; want no holder, BACKUP", h, state(e.D1))
	}
	if err := ctl("maintenance", "off")(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for state(e.D1) != "MASTER" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if s := state(e.D1); s != "MASTER" {
		t.Fatalf("maintenance off with no peer: lb1 %s, want MASTER", s)
	}
}

// status runs `vipd status` in h against its vipd's socket and returns the output and exit code.
func status(ctx context.Context, h *lab.Host, bin string) (string, int) {
	sock := filepath.Join(h.Lab().Dir, h.Name+"-vipd", "vipd.sock")
	out, err := h.Command(ctx, bin, "status", "--socket", sock).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		return err.Error(), -1
	}
	return string(out), 0
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
