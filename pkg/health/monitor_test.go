package health

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// switchChecker fails the backends listed in down.
type switchChecker struct {
	mu    sync.Mutex
	down  map[string]bool
	calls atomic.Int64
}

func (s *switchChecker) set(addr string, up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down[addr] = !up
}

func (s *switchChecker) Check(_ context.Context, addr string) error {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down[addr] {
		return errors.New("connection refused")
	}
	return nil
}

type eventLog struct {
	ch chan Event
}

func (e *eventLog) next(t *testing.T) Event {
	t.Helper()
	select {
	case ev := <-e.ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		return Event{}
	}
}

func (e *eventLog) none(t *testing.T) {
	t.Helper()
	select {
	case ev := <-e.ch:
		t.Fatalf("unexpected event %+v", ev)
	default:
	}
}

func testCfg() Config {
	c := DefaultConfig()
	c.Jitter = 0
	return c
}

func startMonitor(t *testing.T, backends []string, cfg Config, chk Checker, fc *fakeClock) (*Monitor, *eventLog) {
	t.Helper()
	m, err := New(backends, cfg, Options{Clock: fc, Checker: chk})
	if err != nil {
		t.Fatal(err)
	}
	el := &eventLog{ch: make(chan Event, 100)}
	m.Subscribe(func(ev Event) { el.ch <- ev })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return m, el
}

func status(t *testing.T, m *Monitor, addr string) BackendStatus {
	t.Helper()
	for _, s := range m.Status() {
		if s.Addr == addr {
			return s
		}
	}
	t.Fatalf("backend %s not in Status", addr)
	return BackendStatus{}
}

func TestRiseFallFakeClock(t *testing.T) {
	const a = "10.0.0.1:6443"
	fc := newFakeClock()
	chk := &switchChecker{down: map[string]bool{}}
	m, el := startMonitor(t, []string{a}, testCfg(), chk, fc)

	// First check runs at once; one success marks it UP.
	fc.waitTimers(t, 1)
	ev := el.next(t)
	if ev.From != StateUnknown || ev.To != StateUp || ev.Backend != a || ev.Reason != "ok" {
		t.Fatalf("first event %+v, want UNKNOWN->UP ok", ev)
	}
	if !m.IsUp(a) || m.UpCount() != 1 {
		t.Fatal("not UP after the first successful check")
	}
	if d := fc.lastDuration(); d != 2*time.Second {
		t.Fatalf("interval while UP = %s, want 2s", d)
	}
	start := fc.Now()

	// Less than the interval: no check.
	fc.Advance(1999 * time.Millisecond)
	if s := status(t, m, a); s.Checks != 1 {
		t.Fatalf("checked before the interval: %d checks", s.Checks)
	}
	chk.set(a, false)
	fc.Advance(time.Millisecond) // check 2: fail 1
	fc.waitTimers(t, 1)
	s := status(t, m, a)
	if !s.Up || s.ConsecutiveFail != 1 || s.Checks != 2 {
		t.Fatalf("after 1 failure: %+v", s)
	}
	if d := fc.lastDuration(); d != 500*time.Millisecond {
		t.Fatalf("interval in transition = %s, want fast 500ms", d)
	}
	fc.Advance(500 * time.Millisecond) // fail 2
	fc.waitTimers(t, 1)
	if !m.IsUp(a) {
		t.Fatal("DOWN after 2 failures with fall 3")
	}
	el.none(t)
	fc.Advance(500 * time.Millisecond) // fail 3 -> DOWN
	fc.waitTimers(t, 1)
	ev = el.next(t)
	if ev.From != StateUp || ev.To != StateDown || !strings.Contains(ev.Reason, "connection refused") {
		t.Fatalf("event %+v, want UP->DOWN connection refused", ev)
	}
	if m.IsUp(a) || m.UpCount() != 0 {
		t.Fatal("still UP after fall failures")
	}
	s = status(t, m, a)
	if s.Transitions != 1 || s.Failures != 3 || s.ConsecutiveFail != 3 || s.LastResult != "connection refused" {
		t.Fatalf("after DOWN: %+v", s)
	}
	if got := ev.At.Sub(start); got != 3*time.Second {
		t.Fatalf("DOWN %s after the last good check, want 3s (2s + 2 x 500ms)", got)
	}
	if !s.Since.Equal(ev.At) {
		t.Fatalf("Since %v != event time %v", s.Since, ev.At)
	}

	// Rise: 2 successes at the fast interval.
	chk.set(a, true)
	fc.Advance(500 * time.Millisecond)
	fc.waitTimers(t, 1)
	if m.IsUp(a) {
		t.Fatal("UP after 1 success with rise 2")
	}
	el.none(t)
	fc.Advance(500 * time.Millisecond)
	fc.waitTimers(t, 1)
	ev = el.next(t)
	if ev.From != StateDown || ev.To != StateUp {
		t.Fatalf("event %+v, want DOWN->UP", ev)
	}
	if s := status(t, m, a); s.Transitions != 2 || s.ConsecutiveOK != 2 {
		t.Fatalf("after rise: %+v", s)
	}
	if d := fc.lastDuration(); d != 2*time.Second {
		t.Fatalf("interval back UP = %s, want 2s", d)
	}

	// A single failure followed by a success does not flap.
	chk.set(a, false)
	fc.Advance(2 * time.Second)
	fc.waitTimers(t, 1)
	chk.set(a, true)
	fc.Advance(500 * time.Millisecond)
	fc.waitTimers(t, 1)
	el.none(t)
	if !m.IsUp(a) {
		t.Fatal("one failure took it DOWN")
	}
}

func TestFirstFailureMarksDown(t *testing.T) {
	const a = "10.0.0.2:6443"
	fc := newFakeClock()
	chk := &switchChecker{down: map[string]bool{a: true}}
	m, el := startMonitor(t, []string{a}, testCfg(), chk, fc)
	if m.IsUp(a) {
		t.Fatal("UP before any check")
	}
	fc.waitTimers(t, 1)
	ev := el.next(t)
	if ev.From != StateUnknown || ev.To != StateDown {
		t.Fatalf("event %+v, want UNKNOWN->DOWN", ev)
	}
	if s := status(t, m, a); s.Transitions != 0 {
		t.Fatalf("first verdict counted as a transition: %+v", s)
	}
}

func TestJitterSpreadsChecks(t *testing.T) {
	const a = "10.0.0.3:6443"
	fc := newFakeClock()
	chk := &switchChecker{down: map[string]bool{}}
	cfg := testCfg()
	cfg.Jitter = 0.2
	m, err := New([]string{a}, cfg, Options{Clock: fc, Checker: chk, Rand: func() float64 { return 0.999 }})
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	d := m.delayLocked(&BackendStatus{State: StateUp})
	m.mu.Unlock()
	if d < 2390*time.Millisecond || d > 2400*time.Millisecond {
		t.Fatalf("jittered interval %s, want ~2.4s", d)
	}
	m.rnd = func() float64 { return 0 }
	m.mu.Lock()
	d = m.delayLocked(&BackendStatus{State: StateUp})
	m.mu.Unlock()
	if d != 1600*time.Millisecond {
		t.Fatalf("jittered interval %s, want 1.6s", d)
	}
}

func TestPassiveFailure(t *testing.T) {
	const a = "10.0.0.4:6443"
	fc := newFakeClock()
	chk := &switchChecker{down: map[string]bool{}}
	m, el := startMonitor(t, []string{a}, testCfg(), chk, fc)
	fc.waitTimers(t, 1)
	el.next(t) // UNKNOWN->UP

	chk.set(a, false) // the backend died
	m.ReportFailure(a, errors.New("dial tcp 10.0.0.4:6443: connection refused"))
	// The passive failure counts at once, and an active check runs at once
	// without the clock moving.
	s := status(t, m, a)
	if s.PassiveFailures != 1 || s.Failures < 1 || s.ConsecutiveFail < 1 {
		t.Fatalf("after ReportFailure: %+v", s)
	}
	deadline := time.Now().Add(5 * time.Second)
	for status(t, m, a).Checks < 2 {
		if time.Now().After(deadline) {
			t.Fatal("ReportFailure did not trigger an immediate active check")
		}
		time.Sleep(time.Millisecond)
	}
	fc.waitTimers(t, 1)
	if s := status(t, m, a); s.ConsecutiveFail != 2 || !s.Up {
		t.Fatalf("after passive + active failure: %+v", s)
	}
	m.ReportFailure(a, errors.New("dial: refused")) // third failure
	ev := el.next(t)
	if ev.To != StateDown || !strings.HasPrefix(ev.Reason, "passive: ") {
		t.Fatalf("event %+v, want DOWN with passive reason", ev)
	}
	m.ReportFailure("not-a-backend:1", errors.New("x")) // ignored, no panic
}

func TestUpdateKeepsState(t *testing.T) {
	a, b, c := "10.0.0.5:6443", "10.0.0.6:6443", "10.0.0.7:6443"
	fc := newFakeClock()
	chk := &switchChecker{down: map[string]bool{}}
	m, el := startMonitor(t, []string{a, b}, testCfg(), chk, fc)
	fc.waitTimers(t, 2)
	el.next(t)
	el.next(t)
	fc.Advance(2 * time.Second)
	fc.waitTimers(t, 2)
	before := status(t, m, b)
	if before.Checks != 2 || !before.Up {
		t.Fatalf("b before update: %+v", before)
	}
	chk.set(c, true)
	if err := m.Update([]string{b, c}, testCfg()); err != nil {
		t.Fatal(err)
	}
	fc.waitTimers(t, 2) // b's timer kept, c checked at once
	ev := el.next(t)
	if ev.Backend != c || ev.To != StateUp {
		t.Fatalf("event %+v, want %s UP", ev, c)
	}
	st := m.Status()
	if len(st) != 2 || st[0].Addr != b || st[1].Addr != c {
		t.Fatalf("Status after update: %+v", st)
	}
	after := status(t, m, b)
	if after.Checks != before.Checks || !after.Since.Equal(before.Since) || !after.Up {
		t.Fatalf("b's state not kept: before %+v after %+v", before, after)
	}
	if m.IsUp(a) {
		t.Fatal("removed backend still UP")
	}
	// A bad update changes nothing.
	bad := testCfg()
	bad.Rise = 0
	if err := m.Update([]string{a}, bad); err == nil || !strings.Contains(err.Error(), "health.rise") {
		t.Fatalf("bad update error %v, want health.rise", err)
	}
	if len(m.Status()) != 2 {
		t.Fatal("failed update changed the backend set")
	}
	// Changing the check config re-checks kept backends at once, keeping
	// their state.
	cfg2 := testCfg()
	cfg2.Rise = 3
	n := chk.calls.Load()
	if err := m.Update([]string{b, c}, cfg2); err != nil {
		t.Fatal(err)
	}
	fc.waitTimers(t, 2)
	deadline := time.Now().Add(5 * time.Second)
	for chk.calls.Load() < n+2 {
		if time.Now().After(deadline) {
			t.Fatal("config change did not re-check")
		}
		time.Sleep(time.Millisecond)
	}
	if s := status(t, m, b); !s.Up || !s.Since.Equal(before.Since) {
		t.Fatalf("b after config change: %+v", s)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	if err := (Config{}).WithDefaults().Validate(); err != nil {
		t.Fatalf("zero config with defaults invalid: %v", err)
	}
	c := DefaultConfig()
	c.Type = TypeHTTPS
	c.Path = "readyz"
	c.Interval = 0
	c.Fall = -1
	c.Jitter = 0.9
	c.CertFile = "/x.crt"
	c.Port = 70000
	err := c.Validate()
	for _, want := range []string{"health.path", `must start with "/"`, "health.interval", "health.fall", "health.jitter", "health.tls.cert_file", "health.port"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %v does not mention %q", err, want)
		}
	}
	c = DefaultConfig()
	c.Type = "icmp"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "health.type") {
		t.Errorf("bad type: %v", err)
	}
}

func TestValidateBackends(t *testing.T) {
	cases := []struct {
		in   []string
		want string
	}{
		{[]string{"10.0.0.1:6443", "x"}, `proxy.backends[1]: "x" is not host:port`},
		{[]string{"10.0.0.1:6443", "10.0.0.1:6443"}, "proxy.backends[1]: duplicate backend"},
		{[]string{"10.0.0.1:70000"}, "proxy.backends[0]: \"10.0.0.1:70000\": port 70000 out of range"},
		{[]string{"10.0.0.1:0"}, "out of range"},
		{[]string{":6443"}, "has no host"},
		{[]string{"h:https"}, "is not a number"},
	}
	for _, tc := range cases {
		err := ValidateBackends("proxy.backends", tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.want)
		}
	}
	if err := ValidateBackends("proxy.backends", []string{"m1:6443", "[::1]:6443", "10.0.0.3:6443"}); err != nil {
		t.Errorf("valid list rejected: %v", err)
	}
}
