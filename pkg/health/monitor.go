package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// State of a backend.
type State int

// States. StateUnknown: not checked yet (IsUp is false).
const (
	StateUnknown State = iota
	StateUp
	StateDown
)

func (s State) String() string {
	switch s {
	case StateUp:
		return "UP"
	case StateDown:
		return "DOWN"
	default:
		return "UNKNOWN"
	}
}

// MarshalText makes State appear as "UP"/"DOWN"/"UNKNOWN" in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Event is a state change of one backend.
type Event struct {
	Backend string
	From    State
	To      State
	At      time.Time
	// Reason is the result that caused it: "ok" or the check's error text,
	// prefixed "passive: " when a failed proxy dial caused it.
	Reason string
}

// BackendStatus is a snapshot of one backend's health.
type BackendStatus struct {
	Addr  string
	State State
	Up    bool // State == StateUp
	// Since is when the backend entered State (when it was added, while
	// StateUnknown).
	Since time.Time
	// LastCheck is when the last active or passive result was recorded.
	LastCheck time.Time
	// LastResult is "ok" or the error text of the last result.
	LastResult string
	// LastLatency is the duration of the last active check.
	LastLatency time.Duration
	// Checks counts active checks; Failures counts failed results
	// (active and passive); PassiveFailures only the passive ones.
	Checks          uint64
	Failures        uint64
	PassiveFailures uint64
	// Transitions counts UP<->DOWN changes (not the first verdict).
	Transitions     uint64
	ConsecutiveOK   int
	ConsecutiveFail int
}

// Options of a Monitor. All fields are optional.
type Options struct {
	Logger *slog.Logger
	Clock  Clock // default SystemClock
	// Checker replaces the checker built from Config (tests, stand-ins).
	Checker Checker
	// Rand returns a float in [0,1) for the jitter; default math/rand/v2.
	Rand func() float64
}

// Monitor checks a set of backends. Create with New, start with Run. All
// methods are safe for concurrent use.
type Monitor struct {
	log      *slog.Logger
	clock    Clock
	rnd      func() float64
	override Checker

	mu       sync.Mutex
	cfg      Config
	checker  Checker
	order    []string
	backends map[string]*backend
	runCtx   context.Context // non-nil while Run is active
	wg       sync.WaitGroup

	subMu   sync.Mutex
	subs    map[int]func(Event)
	nextSub int

	qmu    sync.Mutex
	queue  []Event
	qready chan struct{} // cap 1: events queued
}

type backend struct {
	addr   string
	st     BackendStatus
	gen    uint64
	cancel context.CancelFunc
	kick   chan struct{} // cap 1
}

// New validates cfg and the backend list and returns a Monitor that starts
// checking when Run is called.
func New(backends []string, cfg Config, opts Options) (*Monitor, error) {
	m := &Monitor{
		log:      opts.Logger,
		clock:    opts.Clock,
		rnd:      opts.Rand,
		override: opts.Checker,
		backends: map[string]*backend{},
		subs:     map[int]func(Event){},
		qready:   make(chan struct{}, 1),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.clock == nil {
		m.clock = SystemClock{}
	}
	if m.rnd == nil {
		m.rnd = rand.Float64
	}
	if err := m.Update(backends, cfg); err != nil {
		return nil, err
	}
	return m, nil
}

// Update replaces the backend list and the check configuration (SIGHUP
// reload). Backends that stay keep their state and counters; added ones
// start in StateUnknown and are checked at once; removed ones stop being
// checked and disappear from Status. When cfg changed, kept backends are
// re-checked at once with the new checker. On error nothing changes.
func (m *Monitor) Update(backends []string, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := ValidateBackends("proxy.backends", backends); err != nil {
		return err
	}
	checker := m.override
	if checker == nil {
		var err error
		if checker, err = NewChecker(cfg); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cfgChanged := cfg != m.cfg
	m.cfg = cfg
	m.checker = checker
	keep := map[string]bool{}
	for _, a := range backends {
		keep[a] = true
	}
	for a, b := range m.backends {
		if !keep[a] {
			if b.cancel != nil {
				b.cancel()
			}
			b.gen++ // late results are dropped
			delete(m.backends, a)
			m.log.Info("health: backend removed", "backend", a)
		}
	}
	now := m.clock.Now()
	for _, a := range backends {
		b, ok := m.backends[a]
		if !ok {
			b = &backend{addr: a, kick: make(chan struct{}, 1)}
			b.st.Addr = a
			b.st.Since = now
			m.backends[a] = b
			m.startLocked(b)
			continue
		}
		if cfgChanged {
			m.startLocked(b)
		}
	}
	m.order = slices.Clone(backends)
	return nil
}

// startLocked (re)starts b's checker loop if the monitor runs.
func (m *Monitor) startLocked(b *backend) {
	if b.cancel != nil {
		b.cancel()
		b.cancel = nil
	}
	b.gen++
	if m.runCtx == nil {
		return
	}
	ctx, cancel := context.WithCancel(m.runCtx)
	b.cancel = cancel
	m.wg.Add(1)
	go m.loop(ctx, b, b.gen, m.checker, m.cfg)
}

// Run checks the backends until ctx is cancelled. It returns an error only
// if the Monitor is already running.
func (m *Monitor) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.runCtx != nil {
		m.mu.Unlock()
		return errors.New("health: monitor already running")
	}
	m.runCtx = ctx
	for _, a := range m.order {
		m.startLocked(m.backends[a])
	}
	m.mu.Unlock()

	dispDone := make(chan struct{})
	go func() { defer close(dispDone); m.dispatch(ctx) }()

	<-ctx.Done()
	m.mu.Lock()
	m.runCtx = nil
	for _, b := range m.backends {
		if b.cancel != nil {
			b.cancel()
			b.cancel = nil
		}
	}
	m.mu.Unlock()
	m.wg.Wait()
	<-dispDone
	return nil
}

func (m *Monitor) loop(ctx context.Context, b *backend, gen uint64, checker Checker, cfg Config) {
	defer m.wg.Done()
	for {
		cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		start := m.clock.Now()
		err := checker.Check(cctx, b.addr)
		if err != nil && cctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			err = fmt.Errorf("timeout after %s: %w", cfg.Timeout, err)
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		d := m.record(b, gen, err, m.clock.Now().Sub(start), false)
		if d < 0 {
			return
		}
		t := m.clock.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-b.kick:
			t.Stop()
		}
	}
}

// record applies one result to b and returns the delay until its next
// check (-1 if b's loop is stale).
func (m *Monitor) record(b *backend, gen uint64, err error, latency time.Duration, passive bool) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b.gen != gen || m.backends[b.addr] != b {
		return -1
	}
	now := m.clock.Now()
	st := &b.st
	st.LastCheck = now
	if !passive {
		st.Checks++
		st.LastLatency = latency
	}
	if err == nil {
		st.LastResult = "ok"
		st.ConsecutiveOK++
		st.ConsecutiveFail = 0
	} else {
		st.LastResult = err.Error()
		if passive {
			st.LastResult = "passive: " + st.LastResult
			st.PassiveFailures++
		}
		st.Failures++
		st.ConsecutiveFail++
		st.ConsecutiveOK = 0
	}
	from, to := st.State, st.State
	switch from {
	case StateUnknown:
		to = StateDown
		if err == nil {
			to = StateUp
		}
	case StateUp:
		if st.ConsecutiveFail >= m.cfg.Fall {
			to = StateDown
		}
	case StateDown:
		if st.ConsecutiveOK >= m.cfg.Rise {
			to = StateUp
		}
	}
	if to != from {
		st.State = to
		st.Up = to == StateUp
		st.Since = now
		if from != StateUnknown {
			st.Transitions++
		}
		ev := Event{Backend: b.addr, From: from, To: to, At: now, Reason: st.LastResult}
		lvl := slog.LevelInfo
		if to == StateDown {
			lvl = slog.LevelWarn
		}
		m.log.Log(context.Background(), lvl, "health: backend "+to.String(), "backend", b.addr, "from", from.String(), "reason", ev.Reason)
		m.enqueue(ev)
	}
	return m.delayLocked(st)
}

func (m *Monitor) delayLocked(st *BackendStatus) time.Duration {
	d := m.cfg.FastInterval
	if st.State == StateUp && st.ConsecutiveFail == 0 {
		d = m.cfg.Interval
	}
	if j := m.cfg.Jitter; j > 0 {
		d = time.Duration(float64(d) * (1 + j*(2*m.rnd()-1)))
	}
	if d <= 0 {
		d = time.Millisecond
	}
	return d
}

// ReportFailure records a failed dial to addr by the proxy: it counts as one
// failed check at once and triggers an immediate active check. Unknown
// addresses are ignored.
func (m *Monitor) ReportFailure(addr string, err error) {
	if err == nil {
		err = errors.New("connection failed")
	}
	m.mu.Lock()
	b := m.backends[addr]
	var gen uint64
	if b != nil {
		gen = b.gen
	}
	m.mu.Unlock()
	if b == nil {
		return
	}
	if m.record(b, gen, err, 0, true) < 0 {
		return
	}
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// IsUp reports whether addr is a known backend in StateUp.
func (m *Monitor) IsUp(addr string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.backends[addr]
	return b != nil && b.st.State == StateUp
}

// UpCount returns the number of backends in StateUp.
func (m *Monitor) UpCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, b := range m.backends {
		if b.st.State == StateUp {
			n++
		}
	}
	return n
}

// Status returns a snapshot of every backend, in configuration order.
func (m *Monitor) Status() []BackendStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]BackendStatus, 0, len(m.order))
	for _, a := range m.order {
		out = append(out, m.backends[a].st)
	}
	return out
}

// Backends returns the configured backend list.
func (m *Monitor) Backends() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.order)
}

// Config returns the current check configuration.
func (m *Monitor) Config() Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg
}

// Subscribe registers fn to receive every transition, in order, from a
// single goroutine while Run is active. fn must not block for long. The
// returned function unsubscribes.
func (m *Monitor) Subscribe(fn func(Event)) (unsubscribe func()) {
	m.subMu.Lock()
	id := m.nextSub
	m.nextSub++
	m.subs[id] = fn
	m.subMu.Unlock()
	return func() {
		m.subMu.Lock()
		delete(m.subs, id)
		m.subMu.Unlock()
	}
}

func (m *Monitor) enqueue(ev Event) {
	m.qmu.Lock()
	m.queue = append(m.queue, ev)
	m.qmu.Unlock()
	select {
	case m.qready <- struct{}{}:
	default:
	}
}

func (m *Monitor) dispatch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			m.flush()
			return
		case <-m.qready:
			m.flush()
		}
	}
}

func (m *Monitor) flush() {
	m.qmu.Lock()
	q := m.queue
	m.queue = nil
	m.qmu.Unlock()
	if len(q) == 0 {
		return
	}
	m.subMu.Lock()
	ids := make([]int, 0, len(m.subs))
	for id := range m.subs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	fns := make([]func(Event), 0, len(ids))
	for _, id := range ids {
		fns = append(fns, m.subs[id])
	}
	m.subMu.Unlock()
	for _, ev := range q {
		for _, fn := range fns {
			fn(ev)
		}
	}
}
