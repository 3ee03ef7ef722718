// Command day2 measures planned day-2 operations on an LB pair (`make bench-day2`, as root):
// draining one of two masters on the VIP holder, a maintenance handover (and back), and a
// SIGTERM handover (and the master's preempting return), on a vipd pair and on the reference
// pair (Keepalived + HAProxy from Debian) driven the way its README does it (haproxy.cfg edited
// and HAProxy reloaded to drain; keepalived stopped to move the VIP), in the same lab and the
// same run, the pairs taking turns. A client makes a new TLS request through the VIP every
// 10 ms (100 new connections a second); for each operation it prints the failed requests and
// the longest time between two answers, median (min-max) over -runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vipd-project/vipd/test/apiserverstub"
	"github.com/vipd-project/vipd/test/faults"
	"github.com/vipd-project/vipd/test/lab"
)

func main() {
	bin := flag.String("vipd", "bin/vipd", "vipd binary")
	runs := flag.Int("runs", 3, "runs per operation and pair")
	keepalived := flag.Bool("keepalived", true, "also run the reference pair (Keepalived + HAProxy)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *runs, *keepalived); err != nil {
		fmt.Fprintf(os.Stderr, "bench-day2: %v\n", err)
		os.Exit(1)
	}
}

// outcome is one operation's effect on the client.
type outcome struct {
	requests, failed int
	gap              time.Duration
}

// op is one planned operation and how it is undone before the next.
type op struct {
	name string
	do   func(ctx context.Context, e *faults.Env) error
	// keepalived: how the reference pair does it (nil: it cannot).
	keepalived func(ctx context.Context, e *faults.Env) error
	// holder is the host that holds the VIP when the operation is done.
	holder string
}

const drainGrace = 5 * time.Second

func ops() []op {
	drain := func(on bool) func(ctx context.Context, e *faults.Env) error {
		return func(ctx context.Context, e *faults.Env) error {
			return e.Drain(ctx, e.D1, e.Backends()[0], on, drainGrace)
		}
	}
	maint := func(on bool) func(ctx context.Context, e *faults.Env) error {
		return func(ctx context.Context, e *faults.Env) error { return e.Maintenance(ctx, e.D1, on) }
	}
	term := func(_ context.Context, e *faults.Env) error { return e.D1.Term() }
	restart := func(_ context.Context, e *faults.Env) error { return e.D1.Restart() }
	return []op{
		{"drain m1 on the VIP holder", drain(true), drain(true), "lb1"},
		{"m1 back (enable / cfg + reload)", drain(false), drain(false), "lb1"},
		{"maintenance on (VIP to lb2)", maint(true), nil, "lb2"},
		{"maintenance off (VIP back)", maint(false), nil, "lb1"},
		{"SIGTERM handover (systemctl stop)", term, term, "lb2"},
		{"preempting return (start again)", restart, restart, "lb1"},
	}
}

func run(ctx context.Context, bin string, runs int, keepalived bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces)")
	}
	opts := faults.LabOptions()
	opts.Hosts = append(opts.Hosts, "m2")
	l, err := lab.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer l.Close()
	e, err := faults.NewEnv(ctx, l, bin)
	if err != nil {
		return err
	}
	defer e.Stop()
	modes := []faults.Mode{faults.GossipOff}
	if keepalived {
		modes = append(modes, faults.Keepalived)
	}
	load0, start := loadavg(), time.Now()
	res := map[string]map[string][]outcome{}
	for i := 0; i < runs; i++ {
		for _, m := range modes {
			if err := e.Start(ctx, m); err != nil {
				return fmt.Errorf("%s: start: %w", m.Name, err)
			}
			prober := apiserverstub.StartProber(e.Client.Dial, e.Masters.ClientTLS(), net.JoinHostPort(e.VIP.String(), "6443"),
				10*time.Millisecond, time.Second)
			time.Sleep(time.Second)
			for _, o := range ops() {
				do := o.do
				if m.Keepalived {
					do = o.keepalived
				}
				if do == nil {
					continue
				}
				t0 := time.Now()
				if err := do(ctx, e); err != nil {
					prober.Stop()
					return fmt.Errorf("%s, %s: %w", m.Name, o.name, err)
				}
				// Until the VIP is on the expected host alone for good, then 1 s more.
				if err := settle(ctx, e, o.holder); err != nil {
					prober.Stop()
					return fmt.Errorf("%s, %s: %w", m.Name, o.name, err)
				}
				time.Sleep(time.Second)
				rs := prober.Between(t0, time.Now())
				total, failed, _, errs := apiserverstub.Summary(rs)
				out := outcome{requests: total, failed: failed, gap: longestGap(rs, t0)}
				fmt.Fprintf(os.Stderr, "run %d, %s, %s: %d requests, %d failed, longest gap %v %v\n",
					i+1, m.Name, o.name, total, failed, out.gap.Round(time.Millisecond), errs)
				if res[o.name] == nil {
					res[o.name] = map[string][]outcome{}
				}
				res[o.name][m.Name] = append(res[o.name][m.Name], out)
			}
			prober.Stop()
		}
	}
	fmt.Printf("day-2 operations, %d runs per operation and pair, %s, load average %s -> %s\n",
		runs, time.Since(start).Round(time.Second), load0, loadavg())
	fmt.Printf("client: a new TLS request through the VIP every 10 ms (1 s timeout); median (min-max)\n\n")
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprint(w, "operation")
	for _, m := range modes {
		fmt.Fprintf(w, "\t%s: failed\tlongest gap s", m.Name)
	}
	fmt.Fprintln(w)
	for _, o := range ops() {
		fmt.Fprint(w, o.name)
		for _, m := range modes {
			outs := res[o.name][m.Name]
			if len(outs) == 0 {
				fmt.Fprint(w, "\tn/a\t")
				continue
			}
			fmt.Fprintf(w, "\t%s\t%s", counts(outs), gaps(outs))
		}
		fmt.Fprintln(w)
	}
	return w.Flush()
}

// settle waits (at most 20 s) until holder alone holds the VIP, unchanged for 500 ms.
func settle(ctx context.Context, e *faults.Env, holder string) error {
	deadline := time.Now().Add(20 * time.Second)
	var since time.Time
	for ctx.Err() == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("the VIP is on %v after 20 s, want %s", e.Holders(), holder)
		}
		if h := e.Holders(); len(h) == 1 && h[0] == holder {
			if since.IsZero() {
				since = time.Now()
			} else if time.Since(since) > 500*time.Millisecond {
				return nil
			}
		} else {
			since = time.Time{}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ctx.Err()
}

func longestGap(rs []apiserverstub.Result, t0 time.Time) time.Duration {
	var ends []time.Time
	for _, r := range rs {
		if r.Err == nil {
			ends = append(ends, r.End)
		}
	}
	slices.SortFunc(ends, func(a, b time.Time) int { return a.Compare(b) })
	prev, gap := t0, time.Duration(0)
	for _, t := range ends {
		gap = max(gap, t.Sub(prev))
		prev = t
	}
	return gap
}

func counts(outs []outcome) string {
	var ns []int
	for _, o := range outs {
		ns = append(ns, o.failed)
	}
	slices.Sort(ns)
	return fmt.Sprintf("%d (%d-%d)", ns[len(ns)/2], ns[0], ns[len(ns)-1])
}

func gaps(outs []outcome) string {
	var ds []time.Duration
	for _, o := range outs {
		ds = append(ds, o.gap)
	}
	slices.Sort(ds)
	return fmt.Sprintf("%.2f (%.2f-%.2f)", ds[len(ds)/2].Seconds(), ds[0].Seconds(), ds[len(ds)-1].Seconds())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
