// Command failover measures VIP failover of vipd and of Keepalived side by side in one run, on
// a netns lab (test/lab) on this machine (`make bench-failover`, as root):
//
//   - crash of the master (its port unplugged, then the daemon SIGKILLed): time until the
//     backup holds the VIP, and the client's outage (pinging the VIP every 10 ms: the longest
//     time without a reply until the new holder answers); for vipd with its defaults (1 s adverts), vipd with 50 ms adverts and Keepalived
//     configured like the reference (VRRPv2, auth PASS, advert_int 1);
//   - graceful handover (SIGTERM to the master) for the same three;
//   - idle CPU (over -idle, from /proc/PID/stat) and RSS (VmRSS) of each daemon.
//
// It prints median/min/max per scenario and the ratios vipd/Keepalived.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/vipd-project/vipd/bench/internal/measure"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vipd-project/vipd/test/lab"
)

type config struct {
	bin        string
	runs       int
	idle       time.Duration
	keepalived bool
	verbose    bool
	only       string
}

func main() {
	var c config
	flag.StringVar(&c.bin, "vipd", "bin/vipd", "vipd binary")
	flag.IntVar(&c.runs, "runs", 5, "runs per scenario")
	flag.DurationVar(&c.idle, "idle", 10*time.Second, "window for idle CPU (0 skips)")
	flag.BoolVar(&c.keepalived, "keepalived", true, "also measure Keepalived (the baseline)")
	flag.BoolVar(&c.verbose, "v", false, "print every run")
	flag.StringVar(&c.only, "only", "", "run only the scenarios whose name contains this")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintf(os.Stderr, "bench-failover: %v\n", err)
		os.Exit(1)
	}
}

// daemon is vipd or Keepalived on one lab host.
type daemon interface {
	Crash()
	Term() error
	Wait(time.Duration) error
	Restart() error
	PIDs() []int
	Tail(n int) string
}

type vipdDaemon struct{ *lab.Vipd }

func (v vipdDaemon) Crash()      { v.Kill(); _ = v.Vipd.Wait(5 * time.Second) }
func (v vipdDaemon) PIDs() []int { return []int{v.PID} }

type kaDaemon struct{ *lab.Keepalived }

func (k kaDaemon) Restart() error {
	if err := k.Keepalived.Restart(); err != nil {
		return err
	}
	return k.WaitStarted(5 * time.Second)
}

func (k kaDaemon) PIDs() []int {
	if c := k.VRRPPID(); c > 0 {
		return []int{k.PID, c}
	}
	return []int{k.PID}
}

// kind is a daemon configuration under test.
type kind struct {
	name   string
	advert time.Duration
	start  func(h *lab.Host, vip netip.Addr, prio int) (daemon, error)
}

type scenario struct {
	kind     kind
	graceful bool
}

func (s scenario) String() string {
	how := "crash"
	if s.graceful {
		how = "SIGTERM"
	}
	return s.kind.name + ", " + how
}

// kaName is the baseline: Keepalived configured like the reference (VRRPv2, auth PASS 123456,
// VRID 51, advert_int 1), without its haproxy check script.
const kaName = "keepalived, advert_int 1 (ref.)"

// vipdDefaults is vipd with its default config (advert interval and all).
const vipdDefaults = "vipd, defaults"

type sample struct{ vip, ping time.Duration }

type result struct {
	sc      scenario
	samples []sample
	// flaps counts the times the backup took the VIP while the master was alive and idle.
	flaps int
	err   error
}

type idleResult struct {
	name   string
	cpu    float64 // percent of one core
	rssKiB int
	pids   []int
}

func run(c config) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root (network namespaces)")
	}
	if _, err := os.Stat(c.bin); err != nil {
		return fmt.Errorf("vipd binary %s: %w (make build)", c.bin, err)
	}
	bin, err := filepath.Abs(c.bin)
	if err != nil {
		return err
	}
	if c.keepalived {
		if _, err := exec.LookPath("keepalived"); err != nil {
			return errors.New("keepalived not found (apt-get install keepalived), or pass -keepalived=false")
		}
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	var defaultAdvert time.Duration // learnt from the first vipd started with defaults
	vipdKind := func(name string, adv time.Duration) kind {
		return kind{name: name, advert: adv, start: func(h *lab.Host, vip netip.Addr, prio int) (daemon, error) {
			v, err := h.StartVipd(lab.VipdOptions{Bin: bin, VIP: vip, Priority: prio, Advert: adv, LogLevel: "info"})
			if err != nil {
				return nil, err
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := v.WaitReady(wctx); err != nil {
				return nil, err
			}
			if st, err := v.Stats(wctx); err == nil && adv == 0 && defaultAdvert == 0 {
				defaultAdvert = st.Advert()
				fmt.Printf("(vipd's default advert interval, from /stats.json: %v) ", defaultAdvert)
			}
			return vipdDaemon{v}, nil
		}}
	}
	kinds := []kind{vipdKind(vipdDefaults, 0), vipdKind("vipd, 50ms adverts", 50*time.Millisecond)}
	if c.keepalived {
		kinds = append(kinds, kind{name: kaName, advert: time.Second,
			start: func(h *lab.Host, vip netip.Addr, prio int) (daemon, error) {
				state := "BACKUP"
				if prio == 100 {
					state = "MASTER"
				}
				k, err := h.StartKeepalived(lab.KeepalivedOptions{VIP: vip, Priority: prio, Version: 2, State: state})
				if err != nil {
					return nil, err
				}
				return kaDaemon{k}, k.WaitStarted(5 * time.Second)
			}})
	}

	fmt.Printf("failover benchmark, %s, %d runs per scenario; the client pings the VIP every 10 ms\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), c.runs)
	fmt.Println("crash: the master's port is unplugged and its daemon SIGKILLed; SIGTERM: graceful stop of the master")
	fmt.Println("the client keeps Linux's default neighbour settings (locktime 1 s)")
	var results []result
	var idles []idleResult
	for _, k := range kinds {
		for _, graceful := range []bool{false, true} {
			sc := scenario{kind: k, graceful: graceful}
			if c.only != "" && !strings.Contains(sc.String(), c.only) {
				continue
			}
			fmt.Printf("  %-50s", sc.String()+" ...")
			r, idle := runScenario(ctx, sc, c, !graceful && c.idle > 0)
			results = append(results, r)
			idles = append(idles, idle...)
			if r.err != nil {
				fmt.Printf("error after %d runs: %v\n", len(r.samples), r.err)
			} else {
				fmt.Println(" done")
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	report(os.Stdout, results, idles)
	return nil
}

// runScenario runs one scenario c.runs times in a fresh lab, and measures idle CPU/RSS if asked.
func runScenario(ctx context.Context, sc scenario, c config, withIdle bool) (r result, idles []idleResult) {
	r.sc = sc
	l, err := lab.Start(ctx, lab.Options{Hosts: []string{"lb1", "lb2", "client"}, Prefix: lab.RandomPrefix("vb")})
	if err != nil {
		r.err = err
		return r, nil
	}
	defer l.Close()
	lb1, lb2, client := l.Host("lb1"), l.Host("lb2"), l.Host("client")
	vip := l.Addr(100)
	var hi, lo daemon
	defer func() {
		if r.err != nil && c.verbose {
			for _, d := range []daemon{hi, lo} {
				if d != nil {
					fmt.Fprintf(os.Stderr, "\n---- log ----\n%s\n", d.Tail(30))
				}
			}
		}
	}()
	if hi, err = sc.kind.start(lb1, vip, 100); err != nil {
		r.err = err
		return r, nil
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := lb1.WaitAddr(wctx, vip, true); err != nil {
		r.err = fmt.Errorf("lb1 never took the VIP: %w", err)
		return r, nil
	}
	if lo, err = sc.kind.start(lb2, vip, 90); err != nil {
		r.err = err
		return r, nil
	}
	p, err := client.StartPinger(vip, 10*time.Millisecond)
	if err != nil {
		r.err = err
		return r, nil
	}
	defer p.Stop()

	if withIdle {
		time.Sleep(time.Second)
		cpu, rss, err := idleUsage(ctx, [][]int{hi.PIDs(), lo.PIDs()}, c.idle)
		if err != nil {
			r.err = err
			return r, nil
		}
		for i, role := range []string{"master", "backup"} {
			pids := hi.PIDs()
			if i == 1 {
				pids = lo.PIDs()
			}
			idles = append(idles, idleResult{name: sc.kind.name + ", " + role, cpu: cpu[i], rssKiB: rss[i], pids: pids})
		}
	}

	for i := 0; i < c.runs; i++ {
		if err := steady(ctx, lb1, lb2, p, vip); err != nil {
			r.err = fmt.Errorf("run %d: before: %w", i+1, err)
			return r, idles
		}
		// Random phase against the advert timers, and time for the client's ARP entry to age
		// past Linux's 1 s locktime.
		adv := sc.kind.advert
		if adv == 0 {
			adv = time.Second // vipd's default, whatever it is, is at most this
		}
		// The backup must not take the VIP meanwhile (a flap: missed adverts under load).
		sctx, scancel := context.WithTimeout(ctx, 1200*time.Millisecond+time.Duration(rand.Int64N(int64(adv))))
		_, flapErr := lb2.WaitAddr(sctx, vip, true)
		scancel()
		if ctx.Err() != nil {
			r.err = ctx.Err()
			return r, idles
		}
		if flapErr == nil {
			r.flaps++
			if r.flaps > 3*c.runs {
				r.err = fmt.Errorf("the backup keeps taking the VIP from a live master (%d flaps)", r.flaps)
				return r, idles
			}
			i--
			continue
		}
		var t0 time.Time
		if sc.graceful {
			t0 = time.Now()
			if err := hi.Term(); err != nil {
				r.err = err
				return r, idles
			}
		} else {
			if err := lb1.LinkDown(); err != nil {
				r.err = err
				return r, idles
			}
			t0 = time.Now()
			hi.Crash()
		}
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		at, err := lb2.WaitAddr(rctx, vip, true)
		if err == nil {
			// The outage ends with the first reply to a ping sent once the backup held the VIP.
			var took time.Duration
			took, err = p.WaitReplyAfter(rctx, at)
			if err == nil {
				took = p.Outage(t0, at.Add(took))
				r.samples = append(r.samples, sample{vip: at.Sub(t0), ping: took})
				if c.verbose {
					sent, recv := p.Counts()
					gap, _ := p.LongestGap(t0.Add(-time.Second))
					fmt.Printf("\n    run %d: VIP on backup %v, ping outage %v (pings %d/%d, longest gap %v)", i+1, at.Sub(t0).Round(time.Millisecond), took.Round(time.Millisecond), recv, sent, gap.Round(time.Millisecond))
				}
			}
		}
		cancel()
		if err != nil {
			r.err = fmt.Errorf("run %d: %w", i+1, err)
			return r, idles
		}
		// Restore: lb1 "reboots" (no VIP left over), comes back and preempts.
		if err := hi.Wait(10 * time.Second); err != nil && !strings.Contains(err.Error(), "signal") && !strings.Contains(err.Error(), "exit status") {
			r.err = fmt.Errorf("run %d: old master did not stop: %w", i+1, err)
			return r, idles
		}
		_, _ = lb1.Exec(ctx, "ip", "addr", "del", lab.Prefix24(vip), "dev", "eth0")
		if !sc.graceful {
			if err := lb1.LinkUp(); err != nil {
				r.err = err
				return r, idles
			}
		}
		if err := hi.Restart(); err != nil {
			r.err = fmt.Errorf("run %d: restart: %w", i+1, err)
			return r, idles
		}
	}
	return r, idles
}

// steady waits until lb1 alone holds the VIP and the client's pings are answered.
func steady(ctx context.Context, lb1, lb2 *lab.Host, p *lab.Pinger, vip netip.Addr) error {
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := lb1.WaitAddr(wctx, vip, true); err != nil {
		return err
	}
	if _, err := lb2.WaitAddr(wctx, vip, false); err != nil {
		return err
	}
	_, err := p.WaitReplyAfter(wctx, time.Now())
	return err
}

// idleUsage measures CPU (percent of one core) and RSS (KiB, summed over each group's PIDs)
// over window.
func idleUsage(ctx context.Context, groups [][]int, window time.Duration) ([]float64, []int, error) {
	ticks := func() ([]uint64, error) {
		out := make([]uint64, len(groups))
		for i, g := range groups {
			for _, pid := range g {
				t, err := measure.CPUTicks(pid)
				if err != nil {
					return nil, err
				}
				out[i] += t
			}
		}
		return out, nil
	}
	before, err := ticks()
	if err != nil {
		return nil, nil, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-time.After(window):
	}
	after, err := ticks()
	if err != nil {
		return nil, nil, err
	}
	el := time.Since(t0).Seconds()
	cpu := make([]float64, len(groups))
	rss := make([]int, len(groups))
	for i, g := range groups {
		cpu[i] = float64(after[i]-before[i]) / 100 / el * 100 // USER_HZ is 100 on Linux
		for _, pid := range g {
			kb, err := measure.StatusKiB(pid, "VmRSS")
			if err != nil {
				return nil, nil, err
			}
			rss[i] += kb
		}
	}
	return cpu, rss, nil
}

func report(w io.Writer, results []result, idles []idleResult) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\truns\tVIP on backup, s (median / min / max)\tclient ping outage, s (median / min / max)\tflaps\t")
	medPing := map[string]time.Duration{}
	for _, r := range results {
		var vs, ps []time.Duration
		for _, s := range r.samples {
			vs = append(vs, s.vip)
			ps = append(ps, s.ping)
		}
		v, p := measure.Summarize(vs), measure.Summarize(ps)
		note := ""
		if r.err != nil {
			note = "  ERROR: " + r.err.Error()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s / %s / %s\t%s / %s / %s\t%d\t%s\n", r.sc, len(r.samples),
			measure.Secs(v.Med), measure.Secs(v.Min), measure.Secs(v.Max), measure.Secs(p.Med), measure.Secs(p.Min), measure.Secs(p.Max), r.flaps, note)
		if len(r.samples) > 0 {
			medPing[r.sc.String()] = p.Med
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "(flaps: times the backup took the VIP from a live, idle master between runs; such runs are redone)")

	fmt.Fprintln(w, "\nratios of median client outage, vipd / keepalived (lower is better):")
	ratio := func(label, a, b string, target string) {
		x, ok1 := medPing[a]
		y, ok2 := medPing[b]
		if !ok1 || !ok2 || y == 0 {
			return
		}
		fmt.Fprintf(w, "  %-44s %.2f  (%s vs %s s; target %s)\n", label, float64(x)/float64(y), measure.Secs(x), measure.Secs(y), target)
	}
	ka := kaName
	for _, g := range []struct {
		graceful bool
		suffix   string
	}{{false, "crash"}, {true, "graceful"}} {
		mk := func(k string) string { return scenario{kind: kind{name: k}, graceful: g.graceful}.String() }
		tDef, t50 := "<= 1.0 s", "<= 0.3 s"
		if g.graceful {
			tDef, t50 = "<= 0.1 s", "<= 0.1 s"
		}
		ratio("vipd default / keepalived, "+g.suffix, mk(vipdDefaults), mk(ka), tDef)
		ratio("vipd 50ms adverts / keepalived, "+g.suffix, mk("vipd, 50ms adverts"), mk(ka), t50)
	}

	if len(idles) > 0 {
		fmt.Fprintln(w, "\nidle resources (both peers running, no failover; CPU over the window, % of one core):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "daemon\tCPU %\tRSS MiB\tPIDs\t")
		for _, x := range idles {
			fmt.Fprintf(tw, "%s\t%.2f\t%.1f\t%v\t\n", x.name, x.cpu, float64(x.rssKiB)/1024, x.pids)
		}
		tw.Flush()
		fmt.Fprintln(w, "(keepalived: parent + VRRP child; vipd RSS target < 30 MiB)")
	}
}
