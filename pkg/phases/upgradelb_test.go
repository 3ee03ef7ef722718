package phases

import (
	"context"
	"strings"
	"testing"
)

// upgrade-lb: the backup (lb2) first and only once it is BACKUP again, then the holder (lb1)
// through maintenance: on, restart, off. A second run with the new vipd changes nothing on
// the holder and only makes sure the other lb is out of maintenance.
func TestUpgradeLB(t *testing.T) {
	top := refTopology(t)
	w := doneWorld(t, top)
	for _, lb := range top.LBs() {
		w.set(lb.Name, "probe lb", answer{out: strings.Replace(lbProbeDone(t, top, lb), sha(fakeVipd), "0ld", 1)})
		w.set(lb.Name, "probe lb/config", answer{out: ""})
	}
	w.set("*", "change lb/systemctl", answer{})
	w.set("*", "change lb/package", answer{}) // the vipd package's postinst restarts vipd
	// The first ask is refused (vipd knows no peer yet: lb2 just restarted); the retry works.
	w.set("*", "change vipd maintenance on", answer{fn: func(w *world, _ string) answer {
		n := 0
		for _, c := range w.calls {
			if c == "lb1: change vipd maintenance on" {
				n++
			}
		}
		if n == 1 {
			return answer{code: 1, err: "maintenance refused: no peer took the VIP over within 12s; this host stays MASTER"}
		}
		return answer{}
	}})
	w.set("*", "change vipd maintenance off", answer{})
	// Just restarted, lb2 is BACKUP before its health checks pass: the holder waits for a
	// backend up there before handing it the VIP.
	w.set("lb2", "probe lb/vrrp-state", answer{fn: func(w *world, _ string) answer {
		n := 0
		for _, c := range w.calls {
			if c == "lb2: probe lb/vrrp-state" {
				n++
			}
		}
		if n < 3 {
			return answer{out: `{"vrrp":{"state":"BACKUP","master_addr":"192.168.10.141"},"backends":[{"up":false},{"up":false}]}`}
		}
		return answer{out: `{"vrrp":{"state":"BACKUP","master_addr":"192.168.10.141"},"backends":[{"up":true},{"up":false}]}`}
	}})
	r, out := newTestRunner(t, top, w, false)
	if err := r.UpgradeLB(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := []string{
		"lb2: change lb/package",
		"lb2: change vipd maintenance off",
		"lb2: probe lb/vrrp-state",
		"lb2: probe lb/vrrp-state",
		"lb2: probe lb/vrrp-state",
		"lb1: change vipd maintenance on",
		"lb1: change vipd maintenance on",
		"lb1: change lb/package",
		"lb1: change vipd maintenance off",
	}
	keep := map[string]bool{}
	for _, x := range want {
		keep[x] = true
	}
	var got []string
	for _, c := range w.calls {
		if keep[c] {
			got = append(got, c)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), out)
	}
	for _, c := range w.cmds {
		if strings.HasPrefix(c, "lb1: # change vipd maintenance on") && !strings.Contains(c, "vipd maintenance on --wait 30s") {
			t.Errorf("maintenance command: %s", c)
		}
		if strings.HasPrefix(c, "lb1: # change lb/package") && !strings.Contains(c, "apt-get install") {
			t.Errorf("the holder's vipd package was not installed (its postinst restarts vipd): %s", c)
		}
	}
	if !strings.Contains(out.String(), "[lb1] upgrade-lb: in maintenance: the VIP handed to a peer") {
		t.Errorf("no maintenance line:\n%s", out)
	}
}
