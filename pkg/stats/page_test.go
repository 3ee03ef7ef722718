package stats

import (
	"testing"
	"time"
)

func TestHumanFormats(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                   "0ms",
		850 * time.Millisecond:         "850ms",
		12 * time.Second:               "12s",
		3*time.Minute + 12*time.Second: "3m12s",
		2*time.Hour + 3*time.Minute:    "2h03m",
		76 * time.Hour:                 "3d04h",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1536: "1.50 KiB", 5 << 20: "5.00 MiB",
		123 << 30: "123 GiB", 1<<64 - 1: "16.0 EiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for n, want := range map[uint64]string{7200: "7200", 123456: "123\u202f456", 1234567: "1\u202f234\u202f567"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{0: "—", 800 * time.Microsecond: "0.8 ms", 31 * time.Millisecond: "31 ms", 1200 * time.Millisecond: "1.20 s"} {
		if got := humanLatency(d); got != want {
			t.Errorf("humanLatency(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestClusterDriftMarking(t *testing.T) {
	mk := func(fps ...string) *ClusterView {
		c := &ClusterView{Enabled: true}
		for i, fp := range fps {
			c.Members = append(c.Members, MemberView{Name: string(rune('a' + i)), Alive: true, ConfigFingerprint: fp})
		}
		return c
	}
	marks := func(c *ClusterView) []bool {
		var out []bool
		for _, m := range buildCluster(c, testNow).Members {
			out = append(out, m.FingerprintDiffers)
		}
		return out
	}
	eq := func(a, b []bool) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}
	for _, c := range []struct {
		fps  []string
		want []bool
	}{
		{[]string{"x", "x"}, []bool{false, false}},
		{[]string{"x", "y"}, []bool{true, true}}, // no majority: both marked
		{[]string{"x", "y", "x"}, []bool{false, true, false}},
	} {
		if got := marks(mk(c.fps...)); !eq(got, c.want) {
			t.Errorf("fingerprints %v: marked %v, want %v", c.fps, got, c.want)
		}
	}
	// Two alive members holding the VIP is a conflict.
	c := mk("x", "x")
	c.Members[0].HoldsVIP, c.Members[1].HoldsVIP = true, true
	if !buildCluster(c, testNow).VIPConflict {
		t.Errorf("two VIP holders not marked as a conflict")
	}
	c.Members[1].Alive = false
	if buildCluster(c, testNow).VIPConflict {
		t.Errorf("a dead member's stale HoldsVIP marked as a conflict")
	}
}
