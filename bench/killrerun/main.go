// Command killrerun interrupts `bootstrap up` on a REAL Kubernetes cluster at random points
// and reruns it once (`make bench-k8s-kill`, as root, with the real build cached by
// `make k8s-lab`): how often does one rerun converge, how long does it take, and what fails.
//
// The lab is test/nspawn's real-Kubernetes mode: 2 lb hosts (vipd), 3 masters and 1 worker,
// Debian 12 under systemd-nspawn, real kubeadm/kubelet/etcd/apiservers v1.33.6 from the
// lab's apt repository and image archives, the bridge CNI. One complete `up` first measures
// the whole run (and which hosts print a line in which phase); then -kills rounds, each:
//
//  1. `bootstrap reset` (except the first round, which starts from the reference's reset);
//  2. `bootstrap up`, interrupted at a point spread over the whole run: round i of n at a
//     random time inside the i-th n-th of the reference up (so the kills cover every phase),
//     SIGKILL and SIGINT alternating; every third round instead kills 0-8 s into master2's
//     control-plane `kubeadm join` (after bootstrap wrote its join configuration), the
//     half-joined case of kubernetes/kubeadm#2095;
//  3. `bootstrap status` (its exit code and the hosts it calls half-done);
//  4. ONE rerun of `bootstrap up`; converged = exit 0 and the cluster complete (every node
//     Ready, one started etcd member per master, no learner). When it did not converge, the
//     failure is printed and a second rerun is tried (so the next round starts clean).
//
// The random choices come from -seed (printed; pass it again to replay). Output: one line per
// round and a summary: converged on the first rerun, rerun times, the phase each kill hit.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vipd-project/vipd/test/nspawn"
)

func main() {
	bootstrap := flag.String("bootstrap", "bin/bootstrap", "bootstrap binary (the vipd it installs is the one next to it, as make build leaves them)")
	kills := flag.Int("kills", 20, "rounds (kill, status, rerun)")
	seed := flag.Uint64("seed", 0, "random seed (0: from the clock; printed)")
	budget := flag.Duration("budget", 90*time.Minute, "stop starting rounds after this long (the summary says how many ran)")
	verbose := flag.Bool("v", false, "print bootstrap's output of every run")
	flag.Parse()
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench-k8s-kill: needs root (network namespaces, systemd-nspawn)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bootstrap, *kills, *seed, *budget, *verbose); err != nil {
		fmt.Fprintf(os.Stderr, "bench-k8s-kill: %v\n", err)
		os.Exit(1)
	}
}

type round struct {
	plan       nspawn.KillPlan
	killed     bool
	at         time.Duration
	phase      string
	upExit     int
	statusExit int
	halfDone   []string
	rerunExit  int
	rerun      time.Duration
	converged  bool
	failure    string
	second     string // outcome of the second rerun when the first did not converge
}

func run(ctx context.Context, bootstrap string, kills int, seed uint64, budget time.Duration, verbose bool) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, cached := nspawn.CachedK8s(nspawn.K8sBuildOptions{})
	if !cached {
		return fmt.Errorf("no cached real Kubernetes build: run `make k8s-lab` first (~30 min)")
	}
	var err error
	if bootstrap, err = filepath.Abs(bootstrap); err != nil {
		return err
	}
	if _, err := os.Stat(bootstrap); err != nil {
		return fmt.Errorf("bootstrap binary: %w (make build)", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(bootstrap), "vipd")); err != nil {
		return fmt.Errorf("vipd must be next to bootstrap: %w (make build)", err)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	fmt.Printf("bench-k8s-kill: seed %d, %d rounds, budget %v, real Kubernetes %s\n", seed, kills, budget, b.Version)
	start := time.Now()
	c, err := nspawn.StartCluster(ctx, nspawn.ClusterOptions{LBs: 2, Masters: 3, Workers: 1, K8s: b, Log: log})
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Printf("lab of 6 hosts up in %v\n", time.Since(start).Round(time.Second))
	say := func(what, out string) {
		if verbose {
			fmt.Printf("---- %s:\n%s", what, out)
		}
	}

	// Reference: one complete up (packages installed here; later rounds start from a reset,
	// packages present, as the reference's second up would).
	ts := time.Now()
	out, code, err := c.RunBootstrap(ctx, bootstrap, "up", "-f", c.Topology, "--accept-new-host-keys")
	if err != nil {
		return err
	}
	say("reference up", out)
	if code != 0 {
		return fmt.Errorf("reference up: exit %d:\n%s", code, out)
	}
	fmt.Printf("reference up (fresh hosts, packages installed): %v\n", time.Since(ts).Round(100*time.Millisecond))
	if out, code, err = c.RunBootstrap(ctx, bootstrap, "reset", "-f", c.Topology, "--yes"); err != nil || code != 0 {
		return fmt.Errorf("reset: exit %d %v:\n%s", code, err, out)
	}
	ts = time.Now()
	if out, code, err = c.RunBootstrap(ctx, bootstrap, "up", "-f", c.Topology); err != nil || code != 0 {
		return fmt.Errorf("reference up after reset: exit %d %v:\n%s", code, err, out)
	}
	full := time.Since(ts)
	phases := nspawn.ParsePhases(out)
	fmt.Printf("reference up after a reset (packages present): %v; phases %s\n", full.Round(100*time.Millisecond), strings.Join(phases.Order, ", "))

	var rounds []round
	for i := 0; i < kills; i++ {
		if time.Since(start) > budget {
			fmt.Printf("budget of %v used: %d of %d rounds ran\n", budget, i, kills)
			break
		}
		if ctx.Err() != nil {
			break
		}
		if out, code, err = c.RunBootstrap(ctx, bootstrap, "reset", "-f", c.Topology, "--yes"); err != nil || code != 0 {
			return fmt.Errorf("round %d: reset: exit %d %v:\n%s", i+1, code, err, out)
		}
		sig := syscall.SIGKILL
		if i%2 == 1 {
			sig = syscall.SIGINT
		}
		plan := nspawn.KillPlan{Signal: sig}
		if i%3 == 2 {
			plan.InJoinOf, plan.Delay = "master2", time.Duration(rng.Int64N(int64(8*time.Second)))
		} else {
			slot := full / time.Duration(kills)
			plan.After = time.Duration(i)*slot + time.Duration(rng.Int64N(int64(slot)))
		}
		r := round{plan: plan}
		res, err := c.UpAndKill(ctx, bootstrap, plan)
		if err != nil {
			return fmt.Errorf("round %d: %w", i+1, err)
		}
		say(fmt.Sprintf("round %d up", i+1), res.Output)
		r.killed, r.at, r.upExit, r.phase = res.Killed, res.At, res.Exit, phases.PhaseAt(res.Output)
		out, r.statusExit, err = c.RunBootstrap(ctx, bootstrap, "status", "-f", c.Topology)
		if err != nil {
			return err
		}
		say(fmt.Sprintf("round %d status", i+1), out)
		for _, m := range regexp.MustCompile(`(?m)^\s*(\S+): HALF-DONE`).FindAllStringSubmatch(out, -1) {
			r.halfDone = append(r.halfDone, m[1])
		}
		ts = time.Now()
		out, r.rerunExit, err = c.RunBootstrap(ctx, bootstrap, "up", "-f", c.Topology)
		if err != nil {
			return err
		}
		r.rerun = time.Since(ts)
		say(fmt.Sprintf("round %d rerun", i+1), out)
		cerr := error(nil)
		if r.rerunExit == 0 {
			cerr = c.K8sConverged(ctx)
		}
		r.converged = r.rerunExit == 0 && cerr == nil
		if !r.converged {
			r.failure = failureOf(out, cerr)
			fmt.Printf("round %d: the rerun did not converge (exit %d):\n%s\n", i+1, r.rerunExit, out)
			out2, code2, err := c.RunBootstrap(ctx, bootstrap, "up", "-f", c.Topology)
			if err != nil {
				return err
			}
			r.second = fmt.Sprintf("second rerun exit %d", code2)
			if code2 != 0 {
				r.second += ": " + failureOf(out2, nil)
			}
		}
		rounds = append(rounds, r)
		fmt.Println(r.line(i + 1))
	}
	report(rounds, full)
	return nil
}

// failureOf is the first FAILED report of an up's output (host, phase, error), or cerr.
func failureOf(out string, cerr error) string {
	if cerr != nil {
		return "converged check: " + cerr.Error()
	}
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.Contains(l, ": FAILED") {
			s := strings.TrimSpace(l)
			// kubeadm's own error line says most; else the report's first line.
			for _, e := range lines[i+1:] {
				if strings.Contains(e, "error execution phase") {
					return s + " " + strings.TrimSpace(e)
				}
			}
			if i+1 < len(lines) {
				s += " " + strings.TrimSpace(lines[i+1])
			}
			return s
		}
	}
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, " | ")
}

func (r round) line(n int) string {
	hit := r.phase
	if !r.killed {
		hit = "(up ended first)"
	}
	half := "-"
	if len(r.halfDone) > 0 {
		half = strings.Join(r.halfDone, ",")
	}
	conv := "converged"
	if !r.converged {
		conv = "NOT converged: " + r.failure + "; " + r.second
	}
	return fmt.Sprintf("round %2d: %-38s hit %-13s up exit %3d  status exit %d half-done %-8s  rerun exit %d in %6.1fs  %s",
		n, r.plan.String(), hit, r.upExit, r.statusExit, half, r.rerunExit, r.rerun.Seconds(), conv)
}

func report(rounds []round, full time.Duration) {
	if len(rounds) == 0 {
		fmt.Println("no rounds ran")
		return
	}
	var ok int
	var times []float64
	byPhase := map[string][2]int{}
	for _, r := range rounds {
		p := r.phase
		if !r.killed {
			p = "(up ended first)"
		}
		v := byPhase[p]
		v[1]++
		if r.converged {
			ok++
			v[0]++
			times = append(times, r.rerun.Seconds())
		}
		byPhase[p] = v
	}
	slices.Sort(times)
	fmt.Printf("\nconverged on the first rerun: %d of %d (reference up after reset %.1fs)\n", ok, len(rounds), full.Seconds())
	if len(times) > 0 {
		fmt.Printf("rerun time when converged: median %.1fs, min %.1fs, max %.1fs\n", times[len(times)/2], times[0], times[len(times)-1])
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "phase hit\tkills\tconverged on first rerun")
	var names []string
	for p := range byPhase {
		names = append(names, p)
	}
	slices.Sort(names)
	for _, p := range names {
		fmt.Fprintf(w, "%s\t%d\t%d\n", p, byPhase[p][1], byPhase[p][0])
	}
	w.Flush()
	for i, r := range rounds {
		if !r.converged {
			fmt.Printf("round %d (%v, hit %s) failed: %s; %s\n", i+1, r.plan, r.phase, r.failure, r.second)
		}
	}
}
