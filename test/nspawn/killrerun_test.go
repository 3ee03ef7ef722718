package nspawn

import "testing"

// PhaseAt names the phase an interrupted up was in: the first phase of a complete run
// whose hosts have not all printed their line.
func TestPhaseAt(t *testing.T) {
	full := ParsePhases(`[lb1] facts: debian 12 (0.1s)
[master1] facts: debian 12 (0.1s)
[lb1] lb: vipd running (3s)
[master1] common: prepared (1m)
[master1] init: cluster initialised (14s)
[master1] join-masters: joined (12s)
[master2] join-masters: joined (11s)
    error: not a phase line
Cluster ready in 2m. API: https://10.0.0.1:6443
`)
	if got := full.Order; len(got) != 5 || got[4] != "join-masters" {
		t.Fatalf("order %v", got)
	}
	for _, c := range []struct{ out, want string }{
		{"", "facts"},
		{"[master1] facts: x\n[lb1] facts: x\n", "lb"},
		{"[master1] facts: x\n[lb1] facts: x\n[lb1] lb: x\n[master1] common: x\n[master1] init: x\n[master1] join-masters: x\n", "join-masters"},
		{"[master1] facts: x\n[lb1] facts: x\n[lb1] lb: x\n[master1] common: x\n[master1] init: x\n[master2] join-masters: FAILED (1s)\n[master1] join-masters: x\n", "join-masters"},
		{"[master1] facts: x\n[lb1] facts: x\n[lb1] lb: x\n[master1] common: x\n[master1] init: x\n[master2] join-masters: x\n[master1] join-masters: x\n", "done"},
	} {
		if got := full.PhaseAt(c.out); got != c.want {
			t.Errorf("PhaseAt(%q) = %s, want %s", c.out, got, c.want)
		}
	}
}
