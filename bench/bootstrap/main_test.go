package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vipd-project/vipd/test/nspawn"
)

func labHosts(n int) []*nspawn.Host {
	var hs []*nspawn.Host
	for i := 1; i <= n; i++ {
		hs = append(hs, &nspawn.Host{Name: fmt.Sprintf("n%02d", i)})
	}
	return hs
}

// Each size's topology is a subset of the largest with the same roles, so the nodes the
// preparation gave packages to are nodes again (else `up` would run apt and measure dpkg).
func TestSubsetKeepsRoles(t *testing.T) {
	big := assign(labHosts(20))
	if got := describe(big); got != "2 lb (n01..n02) + 3 master (n03..n05) + 15 worker (n06..n20)" {
		t.Errorf("20 hosts: %s", got)
	}
	role := map[string]string{}
	for _, m := range big {
		role[m.h.Name] = m.role
	}
	for n, want := range map[int]string{
		2: "1 lb (n01) + 1 master (n03)",
		5: "2 lb (n01..n02) + 3 master (n03..n05)",
		8: "2 lb (n01..n02) + 3 master (n03..n05) + 3 worker (n06..n08)",
	} {
		ms := subset(big, n)
		if len(ms) != n || describe(ms) != want {
			t.Errorf("size %d: %d hosts, %s; want %s", n, len(ms), describe(ms), want)
		}
		for _, m := range ms {
			if role[m.h.Name] != m.role {
				t.Errorf("size %d: %s is %s, %s in the 20-host topology", n, m.h.Name, m.role, role[m.h.Name])
			}
		}
	}
}

func TestPhaseSummary(t *testing.T) {
	r := &result{}
	for _, l := range []struct {
		at   time.Duration
		text string
	}{
		{100 * time.Millisecond, "[n01] facts: Debian (0.1s)"},
		{200 * time.Millisecond, "[n02] facts: Debian (0.2s)"},
		{4 * time.Second, "[n01] lb: vipd started (3.8s)"},
		{4500 * time.Millisecond, "[n01] lb: holds the VIP 10.77.0.100/24 (0.5s)"},
		{4600 * time.Millisecond, "    error: not a phase line"},
		{5 * time.Second, "[n02] common: already prepared (0.5s)"},
	} {
		ln := line{at: l.at, text: l.text}
		if m := reLine.FindStringSubmatch(l.text); m != nil {
			ln.phase = m[1]
		}
		r.lines = append(r.lines, ln)
	}
	if got, want := r.phaseSummary(), "facts 0.20s, lb 4.30s, common 0.50s"; got != want {
		t.Errorf("phaseSummary = %q, want %q", got, want)
	}
	if n := r.count(`\] common: already prepared`); n != 1 {
		t.Errorf("count = %d", n)
	}
}

func TestParseSizesAndMedian(t *testing.T) {
	got, err := parseSizes("20, 2,5,5")
	if err != nil || fmt.Sprint(got) != "[2 5 20]" {
		t.Errorf("parseSizes: %v %v", got, err)
	}
	for _, bad := range []string{"1", "x", "2,61"} {
		if _, err := parseSizes(bad); err == nil {
			t.Errorf("parseSizes(%q) accepted", bad)
		}
	}
	ds := []time.Duration{3 * time.Second, time.Second, 10 * time.Second}
	if m := median(ds); m != 3*time.Second {
		t.Errorf("median = %v", m)
	}
	if s := spread(ds); !strings.HasPrefix(s, "3.00s (1.00-10.00)") {
		t.Errorf("spread = %q", s)
	}
}
