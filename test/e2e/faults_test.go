package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vipd-project/vipd/test/faults"
	"github.com/vipd-project/vipd/test/lab"
)

// TestFaultMatrix (issue 8): every fault of the matrix (power loss, crash, SIGKILL, SIGTERM,
// link flaps, VRRP and gossip blocked one way and both, both blocked then healed, a frozen
// process) on a vipd pair with gossip off and with gossip on (resign-lower, what bootstrap
// configures), a client's new-TLS-connection requests through the VIP every 20 ms. Asserted
// for every fault: after the heal exactly one host is MASTER and holds the VIP; gossip on is
// never worse than gossip off (no extra VRRP transitions on either host, no longer without a
// holder or on two hosts, no later settle, no more failed requests, within small
// tolerances), and where gossip is there to help (blocked VRRP) the VIP is on two hosts for
// less time. A difference is confirmed by running the fault again in both modes before it
// fails the test. VIPD_FAULTS=substring runs only the matching faults.
func TestFaultMatrix(t *testing.T) {
	vrrpNeedRoot(t)
	bin := vipdBin(t)
	ctx := vrrpCtx(t, 20*time.Minute)
	e, err := faults.NewEnv(ctx, lab.New(t, faults.LabOptions()), bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, d := range []faults.Daemon{e.D1, e.D2} {
				if d != nil {
					t.Logf("vipd log (tail):\n%s", d.Tail(40))
				}
			}
		}
		e.Stop()
	})
	var matrix []faults.Fault
	for _, f := range faults.Matrix() {
		if only := os.Getenv("VIPD_FAULTS"); only == "" || strings.Contains(f.Name, only) {
			matrix = append(matrix, f)
		}
	}
	run := func(f faults.Fault, m faults.Mode) faults.Result {
		t.Helper()
		r, err := e.Run(ctx, f, m)
		if err != nil {
			t.Fatal(err)
		}
		t.Log(r)
		if p := faults.Healed(f, r); len(p) > 0 {
			t.Logf("%s, %s: %v; logs:\nlb1:\n  %s\nlb2:\n  %s", f.Name, m.Name, p,
				strings.Join(r.Log["lb1"], "\n  "), strings.Join(r.Log["lb2"], "\n  "))
		}
		return r
	}
	off := map[string]faults.Result{}
	for _, f := range matrix {
		off[f.Name] = run(f, faults.GossipOff)
	}
	var again []faults.Fault
	for _, f := range matrix {
		if p := faults.Compare(f, off[f.Name], run(f, faults.GossipOn)); len(p) > 0 {
			t.Logf("%s: gossip on worse than off, running it again in both modes: %v", f.Name, p)
			again = append(again, f)
		}
	}
	for _, f := range again {
		off, on := run(f, faults.GossipOff), run(f, faults.GossipOn)
		if p := faults.Compare(f, off, on); len(p) > 0 {
			t.Errorf("%s: gossip makes the fault worse, twice in a row:\n  %s\ngossip off, lb2:\n  %s\ngossip on, lb2:\n  %s",
				f.Name, strings.Join(p, "\n  "), strings.Join(off.Log["lb2"], "\n  "), strings.Join(on.Log["lb2"], "\n  "))
		}
	}
}
