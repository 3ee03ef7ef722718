package phases

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vipd-project/vipd/pkg/topology"
)

// Options configure a Runner.
type Options struct {
	Topology *topology.Topology
	// Connect returns the connection to a host; called once per host, lazily.
	Connect func(ctx context.Context, h topology.Host) (Host, error)
	// VipdPackage returns the vipd Debian package for an architecture ("amd64", "arm64"),
	// which the lb phase installs on the lb hosts.
	VipdPackage func(arch string) (*VipdPackage, error)
	// CNIManifest reads a local CNI manifest (cluster.cni.manifest not a URL).
	// Default: os.ReadFile.
	CNIManifest func(path string) ([]byte, error)
	// Getenv reads the environment (loadBalancer.authPassEnv). Default: os.Getenv.
	Getenv func(string) string
	Out    io.Writer
	// Format of Out: FormatText (default) or FormatJSON (one Event per line). TTY: Out is a
	// terminal (text only): a status line shows the running steps and their elapsed time.
	Format string
	TTY    bool
	Log    *slog.Logger
	DryRun bool
	// RerunHint is the command line suggested after a failure, without --only
	// (default "bootstrap up -f <topology file>").
	RerunHint string
	// Timeouts (defaults: VIP 60s, nodes Ready 5m, CNI ready 5m) and the poll interval (1s).
	VIPTimeout   time.Duration
	ReadyTimeout time.Duration
	CNITimeout   time.Duration
	Poll         time.Duration
}

// Runner runs phases against the hosts of a topology. Secrets it learns (join token,
// certificate key, the lb hosts' gossip key) stay in its memory.
type Runner struct {
	o     Options
	t     *topology.Topology
	log   *slog.Logger
	out   *printer
	outMu sync.Mutex
	// buf holds a dry run's events per host while its hosts are probed in parallel; they
	// are printed in host order once every host answered (outMu held).
	buf map[string][]Event

	mu    sync.Mutex
	conns map[string]*lazyConn
	facts map[string]*Facts

	joinMu sync.Mutex
	join   *joinSecrets

	keyMu sync.Mutex
	gkey  *gossipKey
	// lbRestartMu lets one lb restart vipd at a time.
	lbRestartMu sync.Mutex

	img imagesState // packages.imageBundle (images.go)
}

type lazyConn struct {
	once sync.Once
	h    Host
	err  error
}

// NewRunner returns a runner; it does not connect yet.
func NewRunner(o Options) *Runner {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.CNIManifest == nil {
		o.CNIManifest = os.ReadFile
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.RerunHint == "" {
		f := o.Topology.File
		if f == "" {
			f = "topology.yaml"
		}
		o.RerunHint = "bootstrap up -f " + f
	}
	if o.VIPTimeout == 0 {
		o.VIPTimeout = 60 * time.Second
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 5 * time.Minute
	}
	if o.CNITimeout == 0 {
		o.CNITimeout = 5 * time.Minute
	}
	if o.Poll == 0 {
		o.Poll = time.Second
	}
	return &Runner{o: o, t: o.Topology, log: o.Log, out: newPrinter(o.Out, o.Format, o.TTY), conns: map[string]*lazyConn{}, facts: map[string]*Facts{}}
}

// Topology returns the runner's topology.
func (r *Runner) Topology() *topology.Topology { return r.t }

// Host returns the connection to h, connecting on first use.
func (r *Runner) Host(ctx context.Context, h topology.Host) (Host, error) {
	r.mu.Lock()
	lc := r.conns[h.Name]
	if lc == nil {
		lc = &lazyConn{}
		r.conns[h.Name] = lc
	}
	r.mu.Unlock()
	lc.once.Do(func() {
		lc.h, lc.err = r.o.Connect(ctx, h)
	})
	return lc.h, lc.err
}

func (r *Runner) run(ctx context.Context, h topology.Host, cmd string) (string, error) {
	c, err := r.Host(ctx, h)
	if err != nil {
		return "", err
	}
	res, err := c.Run(ctx, cmd)
	return res.Stdout, err
}

// probe runs a read-only command; a non-zero exit is an answer (false), not an error.
func (r *Runner) probe(ctx context.Context, h topology.Host, what, script string) (out string, ok bool, err error) {
	c, err := r.Host(ctx, h)
	if err != nil {
		return "", false, err
	}
	res, err := c.Run(ctx, probeCmd(what, script))
	code, err := exitCode(err)
	if err != nil {
		return "", false, fmt.Errorf("probe %s: %w", what, err)
	}
	return res.Stdout, code == 0, nil
}

func (r *Runner) change(ctx context.Context, h topology.Host, what, script string) (string, error) {
	out, err := r.run(ctx, h, changeCmd(what, script))
	if err != nil {
		return out, stepErr(what, err)
	}
	return out, nil
}

func (r *Runner) upload(ctx context.Context, h topology.Host, path string, data []byte, mode os.FileMode, owner string) error {
	c, err := r.Host(ctx, h)
	if err != nil {
		return err
	}
	return stepErr("upload "+path, c.Upload(ctx, path, data, mode, owner))
}

// Line reports one output line: "[host] step: msg (1.2s)" (a step done on the host), or
// without the time when elapsed < 0 or in a dry run.
func (r *Runner) Line(host, step, msg string, elapsed time.Duration) {
	e := Event{Type: "done", Host: host, Phase: step, Message: msg, Elapsed: elapsed.Seconds()}
	if elapsed < 0 || r.o.DryRun {
		e.Type, e.Elapsed = "detail", 0
	}
	r.Report(e)
}

func (r *Runner) warn(host, step, msg string) {
	r.Report(Event{Type: "warning", Host: host, Phase: step, Message: msg})
}

// Report prints an event in the runner's output format.
func (r *Runner) Report(e Event) {
	r.outMu.Lock()
	if r.buf != nil && e.Host != "" {
		e.Time = time.Now()
		r.buf[e.Host] = append(r.buf[e.Host], e)
		r.outMu.Unlock()
		return
	}
	r.outMu.Unlock()
	r.out.event(e)
}

func fmtDur(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%.0fs", d.Seconds())
	default:
		return d.Round(time.Second).String()
	}
}

// Status is a phase's answer for one host after probing it.
type Status struct {
	Done   bool
	Detail string   // shown to the user: what is done, or what was found
	Todo   []string // steps still to do (the plan)
	// HalfDone says what an interrupted run left half-done on the host (a rerun repairs
	// it); `bootstrap status` reports it and exits non-zero.
	HalfDone string
	data     any // phase-private probe results used by Run
}

// Phase is one step of building the cluster, k0sctl style.
type Phase interface {
	Name() string
	Title() string
	// Hosts returns the hosts the phase concerns, in order.
	Hosts(r *Runner) []topology.Host
	// Parallel: the hosts may be handled at the same time.
	Parallel() bool
	// Probe asks the host what is done; it changes nothing.
	Probe(ctx context.Context, r *Runner, h topology.Host) (Status, error)
	// Run does what Probe found missing and returns a one-line summary.
	Run(ctx context.Context, r *Runner, h topology.Host, st Status) (string, error)
}

// finisher is a phase with a cluster-wide check after its hosts are done (lb: the VIP).
type finisher interface {
	Finish(ctx context.Context, r *Runner) (host, msg string, err error)
}

// Phase names, in the order Up runs them.
const (
	PhaseFacts       = "facts"
	PhaseLB          = "lb"
	PhaseCommon      = "common"
	PhaseImages      = "images"
	PhaseInit        = "init"
	PhaseCNI         = "cni"
	PhaseJoinMasters = "join-masters"
	PhaseJoinWorkers = "join-workers"
	PhaseVerify      = "verify"
)

// All returns the phases in order.
func All() []Phase {
	return []Phase{factsPhase{}, lbPhase{}, commonPhase{}, imagesPhase{}, initPhase{}, cniPhase{}, joinMastersPhase{}, joinWorkersPhase{}, verifyPhase{}}
}

// Names returns the phase names in order.
func Names() []string {
	var n []string
	for _, p := range All() {
		n = append(n, p.Name())
	}
	return n
}

// ParseOnly checks a --only list ("lb,common") against the phase names.
func ParseOnly(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	known := map[string]bool{}
	for _, n := range Names() {
		known[n] = true
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if !known[p] {
			return nil, fmt.Errorf("--only: unknown phase %q (phases: %s)", p, strings.Join(Names(), ", "))
		}
		out = append(out, p)
	}
	return out, nil
}

// Up runs the phases in order (only those named, if any). With DryRun it probes and prints
// the plan, changing nothing. It stops at the first phase that failed on a host and returns
// a *PhaseError (the first failure in host order).
func (r *Runner) Up(ctx context.Context, only []string) error {
	sel := map[string]bool{}
	for _, o := range only {
		sel[o] = true
	}
	// The image bundle is checked before any host is touched.
	if _, err := r.imageBundle(); err != nil {
		return err
	}
	if r.o.DryRun {
		r.Report(Event{Type: "plan", Message: fmt.Sprintf("Plan for cluster %q (%d hosts); nothing is changed (--dry-run).", r.t.Cluster.Name, len(r.t.Hosts))})
	}
	defer r.out.tick()()
	if r.o.DryRun {
		return r.plan(ctx, sel)
	}
	for _, p := range All() {
		if len(sel) > 0 && !sel[p.Name()] {
			continue
		}
		if err := r.runPhase(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

func (r *Runner) runPhase(ctx context.Context, p Phase) error {
	hosts := p.Hosts(r)
	errs := make([]error, len(hosts))
	one := func(i int) {
		h := hosts[i]
		start := time.Now()
		err := r.runHost(ctx, p, h, start)
		if err != nil {
			errs[i] = &PhaseError{Host: h.Name, Phase: p.Name(), Err: err}
			r.reportFailure(h.Name, p.Name(), err, time.Since(start))
		}
	}
	if p.Parallel() {
		var wg sync.WaitGroup
		for i := range hosts {
			wg.Add(1)
			go func() { defer wg.Done(); one(i) }()
		}
		wg.Wait()
	} else {
		for i := range hosts {
			one(i)
			if errs[i] != nil {
				break
			}
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	if f, ok := p.(finisher); ok && len(hosts) > 0 {
		start := time.Now()
		host, msg, err := f.Finish(ctx, r)
		if err != nil {
			if host == "" {
				host = p.Name()
			}
			r.reportFailure(host, p.Name(), err, time.Since(start))
			return &PhaseError{Host: host, Phase: p.Name(), Err: err}
		}
		r.Line(host, p.Name(), msg, time.Since(start))
	}
	return nil
}

// PlanError is what a dry run returns when hosts could not be probed: every failure, in
// phase and host order (a dry run goes on past them; a host that failed is not asked again).
type PlanError struct {
	Failures []*PhaseError
}

func (e *PlanError) Error() string {
	var parts []string
	for _, f := range e.Failures {
		parts = append(parts, f.Phase+" failed on "+f.Host)
	}
	return "dry run: " + strings.Join(parts, ", ")
}

// Unwrap lets errors.As find the failures' causes (SSH refusals: exit code 3).
func (e *PlanError) Unwrap() []error {
	errs := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		errs[i] = f
	}
	return errs
}

// needsFirstMaster: the phases whose probes ask the cluster through the first master.
var needsFirstMaster = map[string]bool{PhaseInit: true, PhaseCNI: true, PhaseJoinMasters: true, PhaseJoinWorkers: true, PhaseVerify: true}

// plan is a dry run: every phase probes all its hosts at once (probes change nothing), their
// findings printed in host order; a host that fails is reported and left out of the later
// phases, and the others are still planned.
func (r *Runner) plan(ctx context.Context, sel map[string]bool) error {
	failed := map[string]bool{}
	var fails []*PhaseError
	for _, p := range All() {
		if len(sel) > 0 && !sel[p.Name()] {
			continue
		}
		var hosts []topology.Host
		for _, h := range p.Hosts(r) {
			if failed[h.Name] {
				continue
			}
			if first := r.firstMaster().Name; first != "" && failed[first] && needsFirstMaster[p.Name()] {
				r.Report(Event{Type: "detail", Host: h.Name, Phase: p.Name(), Message: "not planned: it needs the first master " + first + ", which failed above"})
				continue
			}
			hosts = append(hosts, h)
		}
		r.outMu.Lock()
		r.buf = map[string][]Event{}
		r.outMu.Unlock()
		errs := make([]error, len(hosts))
		var wg sync.WaitGroup
		for i, h := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				if err := r.runHost(ctx, p, h, start); err != nil {
					errs[i] = err
					r.reportFailure(h.Name, p.Name(), err, time.Since(start))
				}
			}()
		}
		wg.Wait()
		r.outMu.Lock()
		buf := r.buf
		r.buf = nil
		r.outMu.Unlock()
		for i, h := range hosts {
			for _, e := range buf[h.Name] {
				r.out.event(e)
			}
			delete(buf, h.Name)
			if errs[i] != nil {
				failed[h.Name] = true
				fails = append(fails, &PhaseError{Host: h.Name, Phase: p.Name(), Err: errs[i]})
			}
		}
		for _, h := range r.t.Hosts { // events about hosts the phase does not run on
			for _, e := range buf[h.Name] {
				r.out.event(e)
			}
		}
	}
	if len(fails) > 0 {
		return &PlanError{Failures: fails}
	}
	return nil
}

func (r *Runner) runHost(ctx context.Context, p Phase, h topology.Host, start time.Time) error {
	st, err := p.Probe(ctx, r, h)
	if err != nil {
		return err
	}
	switch {
	case st.Done:
		r.Line(h.Name, p.Name(), st.Detail, time.Since(start))
	case r.o.DryRun:
		if st.Detail != "" {
			r.Line(h.Name, p.Name(), st.Detail, -1)
		}
		for _, t := range st.Todo {
			r.Report(Event{Type: "todo", Host: h.Name, Phase: p.Name(), Message: t})
		}
	default:
		r.Report(Event{Type: "start", Host: h.Name, Phase: p.Name(), Message: startMessage(st.Todo)})
		msg, err := p.Run(ctx, r, h, st)
		if err != nil {
			return err
		}
		r.Line(h.Name, p.Name(), msg, time.Since(start))
	}
	return nil
}

func (r *Runner) reportFailure(host, phase string, err error, elapsed time.Duration) {
	r.Report(failedEvent(host, phase, err, elapsed, r.o.RerunHint+" --only "+phase))
}

func failedEvent(host, phase string, err error, elapsed time.Duration, rerun string) Event {
	e := Event{Type: "failed", Host: host, Phase: phase, Error: err.Error(), Elapsed: elapsed.Seconds(), Fix: FixOf(err), Rerun: rerun}
	if code := ExitCodeOf(err); code >= 0 {
		e.ExitCode = &code
	}
	return e
}

// startMessage says what a step is about to do: its first change and how many follow.
func startMessage(todo []string) string {
	if len(todo) == 0 {
		return "working"
	}
	m := todo[0]
	if len(m) > 100 {
		m = m[:97] + "..."
	}
	if len(todo) > 1 {
		m += fmt.Sprintf(" (+%d more)", len(todo)-1)
	}
	return m
}

// forEach runs fn for the hosts in parallel and returns the first error in host order.
func forEach(hosts []topology.Host, fn func(h topology.Host) error) error {
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = fn(h) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
