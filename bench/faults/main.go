// Command faults runs the LB fault matrix (test/faults) as a benchmark (`make bench-faults`, as
// root): every fault on a vipd pair with gossip off and with gossip on (resign-lower), and on
// the reference pair (Keepalived + HAProxy from Debian, configured like shared/seed) where the
// fault applies, -runs times each, the modes taking turns so they share the machine's load. It
// prints, per fault and mode, the median (min-max) of: time until exactly one host holds the
// VIP for good, time on no host and on two hosts, VRRP transitions on each host, and failed
// requests of a client sending a new TLS request through the VIP every 20 ms.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vipd-project/vipd/bench/internal/measure"
	"github.com/vipd-project/vipd/test/faults"
	"github.com/vipd-project/vipd/test/lab"
)

func main() {
	bin := flag.String("vipd", "bin/vipd", "vipd binary")
	runs := flag.Int("runs", 3, "runs per fault and mode")
	only := flag.String("only", "", "run only the faults whose name contains this")
	keepalived := flag.Bool("keepalived", true, "also run the reference pair (Keepalived + HAProxy)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *runs, *only, *keepalived); err != nil {
		fmt.Fprintf(os.Stderr, "bench-faults: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin string, runs int, only string, keepalived bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces)")
	}
	l, err := lab.Start(ctx, faults.LabOptions())
	if err != nil {
		return err
	}
	defer l.Close()
	e, err := faults.NewEnv(ctx, l, bin)
	if err != nil {
		return err
	}
	defer e.Stop()
	modes := []faults.Mode{faults.GossipOff, faults.GossipOn}
	if keepalived {
		modes = append(modes, faults.Keepalived)
	}
	var matrix []faults.Fault
	for _, f := range faults.Matrix() {
		if only == "" || strings.Contains(f.Name, only) {
			matrix = append(matrix, f)
		}
	}
	load0 := loadavg()
	start := time.Now()
	results := map[string]map[string][]faults.Result{} // fault -> mode -> runs
	for i := 0; i < runs; i++ {
		for _, m := range modes {
			for _, f := range matrix {
				if m.Keepalived && f.GossipOnly {
					continue
				}
				r, err := e.Run(ctx, f, m)
				if err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "run %d: %s\n", i+1, r)
				if p := faults.Healed(f, r); len(p) > 0 {
					fmt.Fprintf(os.Stderr, "  %v\n  lb1:\n    %s\n  lb2:\n    %s\n", p,
						strings.Join(r.Log["lb1"], "\n    "), strings.Join(r.Log["lb2"], "\n    "))
				}
				if results[f.Name] == nil {
					results[f.Name] = map[string][]faults.Result{}
				}
				results[f.Name][m.Name] = append(results[f.Name][m.Name], r)
			}
		}
	}
	fmt.Printf("fault matrix, %d runs per fault and mode, %s, load average %s -> %s\n",
		runs, time.Since(start).Round(time.Second), load0, loadavg())
	fmt.Printf("median (min-max); times from the injection; healed: runs that ended with one MASTER holding the VIP\n" +
		"(and, where the master is gone until the heal, the backup took over with one transition)\n\n")
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "fault\tmode\tsettle s\tno holder s\ttwo holders s\ttransitions lb1\ttransitions lb2\tfailed requests\tlast failure s\thealed")
	for _, f := range matrix {
		for _, m := range modes {
			rs := results[f.Name][m.Name]
			if len(rs) == 0 {
				continue
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Name, m.Name,
				dur(rs, func(r faults.Result) time.Duration { return r.Settle }),
				dur(rs, func(r faults.Result) time.Duration { return r.NoHolder }),
				dur(rs, func(r faults.Result) time.Duration { return r.TwoHolders }),
				count(rs, func(r faults.Result) int { return r.Transitions["lb1"] }),
				count(rs, func(r faults.Result) int { return r.Transitions["lb2"] }),
				count(rs, func(r faults.Result) int { return r.Failed }),
				dur(rs, func(r faults.Result) time.Duration { return r.FailTo }),
				ends(f, rs))
		}
	}
	return w.Flush()
}

func dur(rs []faults.Result, f func(faults.Result) time.Duration) string {
	var ds []time.Duration
	for _, r := range rs {
		ds = append(ds, f(r))
	}
	s := measure.Summarize(ds)
	return fmt.Sprintf("%.2f (%.2f-%.2f)", s.Med.Seconds(), s.Min.Seconds(), s.Max.Seconds())
}

func count(rs []faults.Result, f func(faults.Result) int) string {
	var ns []int
	for _, r := range rs {
		ns = append(ns, f(r))
	}
	slices.Sort(ns)
	return fmt.Sprintf("%d (%d-%d)", ns[len(ns)/2], ns[0], ns[len(ns)-1])
}

func ends(f faults.Fault, rs []faults.Result) string {
	ok := 0
	for _, r := range rs {
		if len(faults.Healed(f, r)) == 0 {
			ok++
		}
	}
	return fmt.Sprintf("%d of %d", ok, len(rs))
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}
