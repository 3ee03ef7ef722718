// Command bootstrap measures bootstrap's orchestration overhead on simulated hosts
// (`make bench-bootstrap`, as root): `bootstrap up` wall time on clusters of 2, 5 and 20
// hosts and bootstrap's peak memory.
//
// The hosts are test/nspawn's: Debian 12 under systemd-nspawn (systemd as PID 1, real
// OpenSSH and sudo), the stand-in kubeadm/kubelet/kubectl/kube-apiserver of test/standin
// served with the real Debian containerd from the lab's apt repository, and the real vipd
// under its real systemd unit on the lb hosts. One lab of 20 hosts (n01..n20) serves every
// measurement, so the machine carries the same idle hosts throughout:
//
//  1. full first up on fresh hosts (2 and 5 hosts, disjoint): everything, including
//     apt-get/dpkg of containerd and the Kubernetes packages on every node at once. On a
//     2-core machine this measures dpkg, not orchestration; shown for completeness.
//     Each cluster is reset afterwards (`bootstrap reset`: packages stay).
//  2. preparation (not in the table's ratios): `bootstrap up --only facts,common` on the
//     20-host topology, so every node of every size below has its packages.
//  3. for 2, 5, 20 hosts, each a subset of the 20-host topology with the same roles:
//     `up` with packages present (lb install and VIP election, common probes finding
//     everything done, kubeadm init, Calico, master joins one at a time, worker joins in
//     parallel, verify): the orchestration of a whole build with the stand-ins answering
//     at once; then `up` again (every phase probes, nothing changes: pure orchestration
//     over real SSH); then `bootstrap reset`. -runs times per size (default 5); the table
//     compares medians. A failed up or rerun is reported (host, phase, error) and counted,
//     the bench goes on and exits 1 at the end.
//
// Besides wall time, each run records bootstrap's own CPU time (GNU time), the CPU time the
// simulated hosts used meanwhile (their cgroup v2 cpu.stat: sshd, sudo, probe shells, the
// stand-ins) and the machine's busy time (/proc/stat). The hosts share this machine's cores,
// which real hosts would not: wall time cannot drop below hosts' CPU / cores.
//
// Topologies: 2 hosts = 1 lb + 1 master (bootstrap refuses a topology without an lb, so
// this is the smallest cluster); 5 = 2 lb + 3 masters; 20 = 2 lb + 3 masters + 15 workers.
// Masters log in as a non-root user with a password and sudo with a password (as the
// reference inventory), lb hosts and workers as root with a key.
//
// Peak memory is ru_maxrss of the bootstrap process as GNU time (/usr/bin/time, Debian
// package "time") reports it: time forks bootstrap from its own small address space. (The
// bench's own wait4 would report the bench's peak instead: Go starts children with vfork
// and the kernel counts the parent's peak at exec as the child's.)
//
// The kernel limit fs.inotify.max_user_instances (128 here) is too low for 20 systemd
// guests: the bench raises it and max_user_watches for its duration and restores them.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vipd-project/vipd/test/nspawn"
	"github.com/vipd-project/vipd/test/standin"
)

type config struct {
	bootstrap string
	vipd      string
	sizes     []int
	full      []int
	advert    string
	timeout   time.Duration
	runs      int
	verbose   bool
	target    float64
}

func main() {
	var c config
	var sizes, full string
	flag.StringVar(&c.bootstrap, "bootstrap", "bin/bootstrap", "bootstrap binary")
	flag.StringVar(&c.vipd, "vipd", "bin/vipd", "vipd binary installed on the lb hosts")
	flag.StringVar(&sizes, "hosts", "2,5,20", "cluster sizes (hosts) for `up` with packages present and the idempotent rerun; the first is the baseline")
	flag.StringVar(&full, "full", "2,5", "sizes also measured as a full first up on fresh hosts (apt/dpkg included; \"\" skips)")
	flag.StringVar(&c.advert, "advert", "1s", "loadBalancer.advertInterval of the topologies (vipd's VRRP timers: the VIP election waits ~3 adverts)")
	flag.IntVar(&c.runs, "runs", 5, "runs per size of up (packages present) and rerun; medians are compared")
	flag.DurationVar(&c.timeout, "timeout", 15*time.Minute, "give up after this long")
	flag.Float64Var(&c.target, "target", 1.5, "target: largest size <= this x the baseline")
	flag.BoolVar(&c.verbose, "v", false, "print bootstrap's output of every run")
	flag.Parse()
	var err error
	if c.sizes, err = parseSizes(sizes); err != nil || len(c.sizes) == 0 {
		fmt.Fprintf(os.Stderr, "bench-bootstrap: -hosts %q: want sizes >= 2, comma-separated\n", sizes)
		os.Exit(2)
	}
	if c.full, err = parseSizes(full); err != nil {
		fmt.Fprintf(os.Stderr, "bench-bootstrap: -full %q: want sizes >= 2, comma-separated\n", full)
		os.Exit(2)
	}
	if c.runs < 1 {
		fmt.Fprintf(os.Stderr, "bench-bootstrap: -runs %d: want at least 1\n", c.runs)
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintf(os.Stderr, "bench-bootstrap: %v\n", err)
		os.Exit(1)
	}
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 2 || n > 60 {
			return nil, fmt.Errorf("bad size %q", f)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// member is a lab host with its role in one topology.
type member struct {
	h    *nspawn.Host
	role string
}

// roleCounts: the smallest cluster is 1 lb + 1 master; from 5 hosts on, 2 lb + 3 masters
// and the rest workers.
func roleCounts(n int) (lbs, masters, workers int) {
	if n < 5 {
		return 1, n - 1, 0
	}
	return 2, 3, n - 5
}

// assign gives roles to hosts in order: lbs first, then masters, then workers.
func assign(hosts []*nspawn.Host) []member {
	lbs, masters, _ := roleCounts(len(hosts))
	var out []member
	for i, h := range hosts {
		role := "worker"
		switch {
		case i < lbs:
			role = "lb"
		case i < lbs+masters:
			role = "master"
		}
		out = append(out, member{h, role})
	}
	return out
}

// subset takes the first lbs, masters and workers of a size-n cluster from a larger
// topology, so each host keeps its role (and the packages the preparation gave it).
func subset(big []member, n int) []member {
	want := map[string]int{}
	want["lb"], want["master"], want["worker"] = roleCounts(n)
	var out []member
	for _, m := range big {
		if want[m.role] > 0 {
			want[m.role]--
			out = append(out, m)
		}
	}
	return out
}

func describe(ms []member) string {
	by := map[string][]string{}
	for _, m := range ms {
		by[m.role] = append(by[m.role], m.h.Name)
	}
	var parts []string
	for _, r := range []string{"lb", "master", "worker"} {
		if hs := by[r]; len(hs) > 0 {
			s := hs[0]
			if len(hs) > 1 {
				s += ".." + hs[len(hs)-1]
			}
			parts = append(parts, fmt.Sprintf("%d %s (%s)", len(hs), r, s))
		}
	}
	return strings.Join(parts, " + ")
}

func run(c config) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, systemd-nspawn)")
	}
	if _, err := os.Stat(timeBin); err != nil {
		return fmt.Errorf("%s (GNU time measures bootstrap's peak RSS): %w; install it with apt-get install time", timeBin, err)
	}
	for _, p := range []*string{&c.bootstrap, &c.vipd} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("%w (run `make build` first)", err)
		}
		*p = abs
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	benchStart := time.Now()

	labSize := c.sizes[len(c.sizes)-1]
	fresh := 0
	for _, n := range c.full {
		fresh += n
	}
	labSize = max(labSize, fresh)

	restore, err := raiseInotify(labSize)
	if err != nil {
		return err
	}
	defer restore()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fmt.Printf("bench-bootstrap: %s on %d simulated hosts (test/nspawn: Debian 12, systemd-nspawn, real sshd/sudo/systemd/containerd/vipd; stand-in kubeadm/kubelet/kubectl/apiserver)\n", c.bootstrap, labSize)
	t0 := time.Now()
	work, err := os.MkdirTemp("", "bench-bootstrap-debs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	debs, err := standin.BuildDebs(ctx, work)
	if err != nil {
		return fmt.Errorf("build stand-in packages: %w", err)
	}
	ctr, err := nspawn.DebianDebs(ctx, "", "containerd", "runc")
	if err != nil {
		return fmt.Errorf("fetch containerd and runc: %w", err)
	}
	var specs []nspawn.HostSpec
	for i := 1; i <= labSize; i++ {
		specs = append(specs, nspawn.HostSpec{Name: fmt.Sprintf("n%02d", i)})
	}
	l, err := nspawn.Start(ctx, nspawn.Options{Hosts: specs, Log: log,
		Repos: []nspawn.Repo{{Name: "k8s", Debs: debs}, {Name: "debian", Debs: ctr}},
		Files: map[string][]byte{"calico.yaml": []byte(standin.CalicoManifest)}})
	if err != nil {
		return fmt.Errorf("start the lab: %w", err)
	}
	defer func() {
		tc := time.Now()
		if err := l.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "bench-bootstrap: lab cleanup: %v\n", err)
		} else {
			fmt.Printf("lab %s removed in %s\n", l.Prefix, time.Since(tc).Round(100*time.Millisecond))
		}
	}()
	fmt.Printf("load average before: %s\n", loadavg())
	fmt.Printf("lab %s: %d hosts booted in %s (stand-in packages built, repository signed); VIP %s\n\n",
		l.Prefix, len(l.Hosts), time.Since(t0).Round(100*time.Millisecond), l.VIP)

	b := &bench{c: c, l: l, dir: l.Dir}
	res := map[int]*sizeResult{}
	get := func(n int) *sizeResult {
		if res[n] == nil {
			res[n] = &sizeResult{}
		}
		return res[n]
	}

	// 1. Full first up on fresh hosts (disjoint sets), each reset afterwards.
	next := 0
	for _, n := range c.full {
		ms := assign(l.Hosts[next : next+n])
		next += n
		topo, err := b.topology(fmt.Sprintf("full-%d", n), ms)
		if err != nil {
			return err
		}
		fmt.Printf("full first up, %d hosts on fresh hosts: %s\n", n, describe(ms))
		r, err := b.bootstrap(ctx, fmt.Sprintf("full up (%d hosts)", n), "up", "-f", topo)
		if err != nil {
			return err
		}
		get(n).full, get(n).rss = r, max(get(n).rss, r.maxRSS)
		fmt.Printf("  up %s (peak RSS %s)   %s\n", fmtDur(r.wall), fmtKB(r.maxRSS), r.phaseSummary())
		rr, err := b.bootstrap(ctx, fmt.Sprintf("reset (%d hosts)", n), "reset", "-y", "-f", topo)
		if err != nil {
			return err
		}
		fmt.Printf("  reset %s\n", fmtDur(rr.wall))
	}

	// 2. Packages on every node of the largest topology (apt/dpkg: the machine, not bootstrap).
	big := assign(l.Hosts[:c.sizes[len(c.sizes)-1]])
	topoBig, err := b.topology("prepare", big)
	if err != nil {
		return err
	}
	nodes := 0
	for _, m := range big {
		if m.role != "lb" {
			nodes++
		}
	}
	fmt.Printf("\npreparation: bootstrap up --only facts,common on %d hosts (%d nodes install containerd and kubelet/kubeadm/kubectl with apt at once)\n", len(big), nodes)
	prep, err := b.bootstrap(ctx, "preparation", "up", "--only", "facts,common", "-f", topoBig)
	if err != nil {
		return err
	}
	fmt.Printf("  %s (peak RSS %s); nodes that ran apt: %d\n\n", fmtDur(prep.wall), fmtKB(prep.maxRSS), prep.count(`\] common: prepared:`))

	// 3. Per size, -runs times: up with packages present, idempotent rerun, reset. A failed
	// up or rerun is recorded and the bench goes on; a failed reset ends it.
	failed := false
	for i, n := range c.sizes {
		ms := subset(big, n)
		topo, err := b.topology(fmt.Sprintf("size-%d", n), ms)
		if err != nil {
			return err
		}
		s := get(n)
		s.topology = describe(ms)
		fmt.Printf("%d hosts: %s\n", n, s.topology)
		nn := len(ms) - count(ms, "lb")
		for rep := 1; rep <= c.runs; rep++ {
			up, err := b.bootstrap(ctx, fmt.Sprintf("up (%d hosts)", n), "up", "-f", topo)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.rss = max(s.rss, up.maxRSS)
			if err != nil {
				s.failures = append(s.failures, "up: "+firstFailure(up, err))
				fmt.Printf("  up     FAILED after %s:\n%s\n", fmtDur(up.wall), up.tail(12))
			} else {
				if got := up.count(`\] common: already prepared`); got != nn {
					fmt.Printf("  WARNING: the common phase found %d of %d nodes prepared: this up ran apt\n", got, nn)
				}
				s.ups = append(s.ups, up.wall)
				s.upCPU = append(s.upCPU, up.cpu)
				s.upHosts = append(s.upHosts, up.hostsCPU)
				fmt.Printf("  up     %s (%s)   %s\n", fmtDur(up.wall), up.usage(), up.phaseSummary())
				again, err := b.bootstrap(ctx, fmt.Sprintf("rerun (%d hosts)", n), "up", "-f", topo)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				s.rss = max(s.rss, again.maxRSS)
				if err != nil {
					s.failures = append(s.failures, "rerun: "+firstFailure(again, err))
					fmt.Printf("  rerun  FAILED after %s:\n%s\n", fmtDur(again.wall), again.tail(12))
				} else {
					s.reruns = append(s.reruns, again.wall)
					s.rrCPU = append(s.rrCPU, again.cpu)
					s.rrHosts = append(s.rrHosts, again.hostsCPU)
					fmt.Printf("  rerun  %s (%s)   %s\n", fmtDur(again.wall), again.usage(), again.phaseSummary())
				}
			}
			if i < len(c.sizes)-1 || rep < c.runs {
				rr, err := b.bootstrap(ctx, fmt.Sprintf("reset (%d hosts)", n), "reset", "-y", "-f", topo)
				if err != nil {
					return err
				}
				fmt.Printf("  reset  %s\n", fmtDur(rr.wall))
			}
		}
		if len(s.failures) > 0 {
			failed = true
		}
	}

	// The table.
	base := res[c.sizes[0]]
	fmt.Printf("\nbootstrap up on simulated hosts (%d-core machine, lab of %d hosts, advertInterval %s; median of %d runs, min-max):\n\n", runtime.NumCPU(), labSize, c.advert, c.runs)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "hosts\tfull first up (apt incl.)\tup, packages present\tratio\tidempotent rerun\tratio\tCPU bootstrap up/rerun\tCPU hosts up/rerun\tpeak RSS\tfailed runs\t")
	for _, n := range c.sizes {
		s := res[n]
		full := "-"
		if s.full != nil {
			full = fmtDur(s.full.wall)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", n, full, spread(s.ups), ratioOf(s.ups, base.ups),
			spread(s.reruns), ratioOf(s.reruns, base.reruns), cpuOf(s.upCPU)+" / "+cpuOf(s.rrCPU), cpuOf(s.upHosts)+" / "+cpuOf(s.rrHosts), fmtKB(s.rss), len(s.failures))
	}
	_ = tw.Flush()
	fmt.Println()
	for _, n := range c.sizes {
		fmt.Printf("  %2d hosts = %s\n", n, res[n].topology)
	}
	for _, n := range c.sizes {
		for _, f := range res[n].failures {
			fmt.Printf("  %2d hosts: FAILED %s\n", n, f)
		}
	}
	largest := res[c.sizes[len(c.sizes)-1]]
	if len(c.sizes) > 1 {
		ln := c.sizes[len(c.sizes)-1]
		fmt.Printf("\ntarget: %d hosts <= %.1f x %d hosts (medians)\n", ln, c.target, c.sizes[0])
		for _, t := range []struct {
			name      string
			big, base []time.Duration
		}{{"up, packages present", largest.ups, base.ups}, {"idempotent rerun", largest.reruns, base.reruns}} {
			v := "no successful run to compare"
			if len(t.big) > 0 && len(t.base) > 0 {
				v = verdict(ratio(median(t.big), median(t.base)) <= c.target)
			}
			fmt.Printf("  %-21s %s  %s\n", t.name+":", ratioOf(t.big, t.base), v)
		}
	}
	fmt.Printf(`
what each column measures:
  full first up        fresh hosts, every phase including apt-get install of containerd and the
                       Kubernetes packages on all nodes at once (dpkg on %[1]d cores: the machine); one run
  up, packages present a whole build (vipd installed and started, VIP elected, kubeadm init,
                       Calico, masters joined one at a time, workers in parallel, verify) with the
                       packages already installed and the stand-ins answering at once; fixed waits
                       inside: VRRP election (~3 adverts) and the stand-in Calico rollout (2 s)
  idempotent rerun     every phase probes every host over SSH and finds nothing to do
  CPU bootstrap        user+system CPU time of the bootstrap process itself (GNU time), median: the
                       orchestrator's own cost
  CPU hosts            CPU time the simulated hosts used during the run (their cgroups' cpu.stat),
                       median: sshd, sudo, the probe shells, dpkg-query, systemctl, the stand-ins;
                       here they share the same %[1]d cores (real hosts would each bring their own),
                       so wall time >= CPU hosts / %[1]d however bootstrap orchestrates
  peak RSS             ru_maxrss of the bootstrap process (GNU time), largest of its runs for that size
load average after: %[3]s
the inotify limits were raised for the lab's systemd guests (a kernel setting, not networking) and restored
total bench time %[2]s
`, runtime.NumCPU(), time.Since(benchStart).Round(time.Second), loadavg())
	if failed {
		return errors.New("some bootstrap runs failed (see above)")
	}
	return nil
}

// firstFailure is the first "error:" line of bootstrap's report, or err.
func firstFailure(r *result, err error) string {
	for i, l := range r.lines {
		if strings.HasSuffix(l.text, "FAILED") || strings.Contains(l.text, ": FAILED (") {
			if i+1 < len(r.lines) {
				return strings.TrimSpace(l.text) + " " + strings.TrimSpace(r.lines[i+1].text)
			}
		}
	}
	return strings.SplitN(err.Error(), "\n", 2)[0]
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func cpuOf(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	return fmtDur(median(ds))
}

func spread(ds []time.Duration) string {
	switch len(ds) {
	case 0:
		return "-"
	case 1:
		return fmtDur(ds[0])
	}
	return fmt.Sprintf("%s (%.2f-%.2f)", fmtDur(median(ds)), slices.Min(ds).Seconds(), slices.Max(ds).Seconds())
}

func ratioOf(a, b []time.Duration) string {
	if len(a) == 0 || len(b) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", ratio(median(a), median(b)))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func count(ms []member, role string) int {
	n := 0
	for _, m := range ms {
		if m.role == role {
			n++
		}
	}
	return n
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

type sizeResult struct {
	topology         string
	full             *result
	ups, reruns      []time.Duration
	upCPU, rrCPU     []time.Duration
	upHosts, rrHosts []time.Duration
	failures         []string
	rss              int64
}

// timeBin is GNU time (Debian package "time").
const timeBin = "/usr/bin/time"

type bench struct {
	c    config
	runs int
	l    *nspawn.Lab
	dir  string
}

// topology writes a topology file for these members into the lab directory.
func (b *bench) topology(name string, ms []member) (string, error) {
	o := nspawn.TopologyOptions{
		AdvertInterval: b.c.advert,
		Comment:        fmt.Sprintf("bench-bootstrap topology %s (lab %s)", name, b.l.Prefix),
	}
	for _, m := range ms {
		o.Members = append(o.Members, nspawn.Member{Host: m.h, Role: m.role})
	}
	p := filepath.Join(b.dir, "bench-"+name+".yaml")
	if err := os.WriteFile(p, b.l.TopologyYAML(o), 0o600); err != nil {
		return "", fmt.Errorf("write topology %s: %w", p, err)
	}
	return p, nil
}

// result is one bootstrap run.
type result struct {
	wall time.Duration
	cpu  time.Duration // bootstrap's user + system CPU time
	// hostsCPU is the CPU time the lab's hosts used during the run (their cgroups'
	// cpu.stat); machineCPU the whole machine's busy time (/proc/stat), other work included.
	hostsCPU, machineCPU time.Duration
	maxRSS               int64 // KiB
	lines                []line
}

type line struct {
	at    time.Duration // since the start
	text  string
	phase string
}

var reLine = regexp.MustCompile(`^\[[^\]]+\] ([a-z-]+): `)

// bootstrap runs bootstrap in the lab's operator namespace, timing it and reading its
// resource usage. A non-zero exit is an error carrying the output's tail.
func (b *bench) bootstrap(ctx context.Context, what string, args ...string) (*result, error) {
	args = append(args, "--vipd-binary", b.c.vipd)
	b.runs++
	rssFile := filepath.Join(b.dir, fmt.Sprintf("bench-rss-%d", b.runs))
	// GNU time forks (a fresh, small address space) and reports its child's ru_maxrss: the
	// bootstrap process's own peak. Our own wait4 would not do: Go starts children with
	// vfork, and the kernel counts the parent's peak at exec as the child's.
	argv := append([]string{"netns", "exec", b.l.OperatorNS, timeBin, "-f", "%M %U %S", "-o", rssFile, b.c.bootstrap}, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	cmd.Env = append(os.Environ(), "BOOTSTRAP_SSH_PASSWORD="+b.l.OpsPassword, "BOOTSTRAP_SUDO_PASSWORD="+b.l.OpsPassword)
	// time forks bootstrap: on cancel, end the whole process group we started (by its id),
	// not only time.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	hosts0, mach0 := b.hostsCPU(), machineBusy()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return &result{}, fmt.Errorf("%s: start bootstrap: %w", what, err)
	}
	pw.Close()
	r := &result{}
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		ln := line{at: time.Since(start), text: sc.Text()}
		if m := reLine.FindStringSubmatch(ln.text); m != nil {
			ln.phase = m[1]
		}
		r.lines = append(r.lines, ln)
		if b.c.verbose {
			fmt.Printf("    | %s\n", ln.text)
		}
	}
	_, _ = io.Copy(io.Discard, pr)
	pr.Close()
	err = cmd.Wait()
	r.wall = time.Since(start)
	r.hostsCPU, r.machineCPU = b.hostsCPU()-hosts0, machineBusy()-mach0
	// time writes "Command exited with non-zero status N" before the number on failure.
	rb, rerr := os.ReadFile(rssFile)
	if f := strings.Fields(string(rb)); rerr == nil && len(f) >= 3 {
		f = f[len(f)-3:]
		r.maxRSS, rerr = strconv.ParseInt(f[0], 10, 64)
		u, uerr := strconv.ParseFloat(f[1], 64)
		sy, serr := strconv.ParseFloat(f[2], 64)
		if rerr == nil {
			rerr = errors.Join(uerr, serr)
		}
		r.cpu = time.Duration((u + sy) * float64(time.Second))
	}
	if err == nil && (rerr != nil || r.maxRSS == 0) {
		return r, fmt.Errorf("%s: read bootstrap's peak RSS from %s: %q %v", what, timeBin, rb, rerr)
	}
	os.Remove(rssFile)
	if err != nil {
		if ctx.Err() != nil {
			return r, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		return r, fmt.Errorf("%s: bootstrap %s: %v after %s; its output ends:\n%s", what, strings.Join(args, " "), err, fmtDur(r.wall), r.tail(30))
	}
	return r, nil
}

// hostsCPU sums the CPU time used so far by the lab's hosts: each host's cgroup v2
// directory (test/nspawn makes /sys/fs/cgroup/unified/vipd-lab/<prefix>-<host>) has a
// cpu.stat with usage_usec, descendants included. 0 when there is no such hierarchy.
func (b *bench) hostsCPU() time.Duration {
	files, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/unified/vipd-lab", b.l.Prefix+"-*", "cpu.stat"))
	var sum time.Duration
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, ln := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(ln, "usage_usec "); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				sum += time.Duration(n) * time.Microsecond
			}
		}
	}
	return sum
}

// loadavg is the first three fields of /proc/loadavg (other work on the machine shows there).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// machineBusy is the machine's non-idle CPU time since boot (/proc/stat, all CPUs).
func machineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(first)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 && i < 8 { // not idle, not iowait; user..steal
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ
}

func (r *result) tail(n int) string {
	var out []string
	for _, l := range r.lines[max(0, len(r.lines)-n):] {
		out = append(out, "    "+l.text)
	}
	return strings.Join(out, "\n")
}

// usage: bootstrap's peak RSS and CPU, the hosts' CPU and the machine's busy time.
func (r *result) usage() string {
	return fmt.Sprintf("RSS %s; CPU: bootstrap %.2fs, hosts %.2fs, machine %.2fs of %.2fs", fmtKB(r.maxRSS), r.cpu.Seconds(), r.hostsCPU.Seconds(), r.machineCPU.Seconds(), float64(runtime.NumCPU())*r.wall.Seconds())
}

func (r *result) count(pattern string) int {
	re := regexp.MustCompile(pattern)
	n := 0
	for _, l := range r.lines {
		if re.MatchString(l.text) {
			n++
		}
	}
	return n
}

// phaseSummary gives each phase's share of the wall time: from the previous phase's last
// output line to its own last line (bootstrap runs phases in order and prints one line per
// host when a host is done).
func (r *result) phaseSummary() string {
	var order []string
	end := map[string]time.Duration{}
	for _, l := range r.lines {
		if l.phase == "" {
			continue
		}
		if _, ok := end[l.phase]; !ok {
			order = append(order, l.phase)
		}
		end[l.phase] = l.at
	}
	var parts []string
	var prev time.Duration
	for _, p := range order {
		parts = append(parts, fmt.Sprintf("%s %s", p, fmtDur(end[p]-prev)))
		prev = end[p]
	}
	return strings.Join(parts, ", ")
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func fmtKB(kb int64) string {
	return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
}

// raiseInotify raises fs.inotify.max_user_instances and max_user_watches (each systemd
// guest holds several inotify instances; 128 for the whole machine is too few for 20
// hosts) and returns a function restoring the old values if nobody changed them since.
func raiseInotify(hosts int) (func(), error) {
	type knob struct {
		path     string
		want     int
		old, set int
	}
	knobs := []*knob{
		{path: "/proc/sys/fs/inotify/max_user_instances", want: 128 + 40*hosts},
		{path: "/proc/sys/fs/inotify/max_user_watches", want: 524288},
	}
	var changed []*knob
	restore := func() {
		for _, k := range changed {
			cur, err := readInt(k.path)
			if err != nil || cur != k.set {
				fmt.Fprintf(os.Stderr, "bench-bootstrap: %s is %d now (not the %d we set): left as is\n", k.path, cur, k.set)
				continue
			}
			if err := os.WriteFile(k.path, []byte(strconv.Itoa(k.old)), 0o644); err != nil {
				fmt.Fprintf(os.Stderr, "bench-bootstrap: restore %s to %d: %v\n", k.path, k.old, err)
				continue
			}
			fmt.Printf("restored %s = %d\n", strings.TrimPrefix(strings.ReplaceAll(k.path, "/", "."), ".proc.sys."), k.old)
		}
	}
	for _, k := range knobs {
		old, err := readInt(k.path)
		if err != nil {
			restore()
			return nil, err
		}
		if old >= k.want {
			continue
		}
		if err := os.WriteFile(k.path, []byte(strconv.Itoa(k.want)), 0o644); err != nil {
			restore()
			return nil, fmt.Errorf("raise %s to %d: %w", k.path, k.want, err)
		}
		k.old, k.set = old, k.want
		changed = append(changed, k)
		fmt.Printf("raised %s %d -> %d for the bench (a kernel limit for the guests' systemd, not networking; restored at exit)\n",
			strings.TrimPrefix(strings.ReplaceAll(k.path, "/", "."), ".proc.sys."), old, k.want)
	}
	return restore, nil
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return n, nil
}
