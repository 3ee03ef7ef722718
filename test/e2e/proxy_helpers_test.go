package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vipd-project/vipd/pkg/stats"
	"github.com/vipd-project/vipd/test/apiserverstub"
	"github.com/vipd-project/vipd/test/lab"
)

// proxyLBConfig is what differs between the two LB hosts' vipd configs.
type proxyLBConfig struct {
	Name     string
	Priority int
	VIP      netip.Addr
	Backends []string
	Socket   string
	// ProxyExtra is appended to the proxy: section (lines indented by two spaces).
	ProxyExtra string
}

// yaml renders a vipd config: VRRP with 200 ms adverts, the proxy on :6443 with HTTPS checks of
// /readyz every 500 ms (fall 2, rise 2), tracking with min_healthy_backends 1, stats on :8404.
func (c proxyLBConfig) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, `node_name: %s
log_level: info
vrrp:
  interface: eth0
  vrid: 51
  priority: %d
  version: 3
  advert_interval: 200ms
  preempt: true
  vips:
    - %s
proxy:
  listen: ":6443"
  backends:
`, c.Name, c.Priority, lab.Prefix24(c.VIP))
	for _, be := range c.Backends {
		fmt.Fprintf(&b, "    - %s\n", be)
	}
	fmt.Fprintf(&b, `  balance: roundrobin
  connect_timeout: 1s
  retries: 2
  max_conns: 20000
  drain_grace: 60s
  min_healthy_backends: 1
  track_weight: 50
%shealth:
  type: https
  path: /readyz
  interval: 500ms
  fast_interval: 500ms
  timeout: 400ms
  rise: 2
  fall: 2
  tls:
    insecure_skip_verify: true
stats:
  listen: ":8404"
  refresh: 2s
control_socket: %s
state_file: %s
`, c.ProxyExtra, c.Socket, filepath.Join(filepath.Dir(c.Socket), "state.json"))
	return b.String()
}

// proxyStartVipd writes cfg for host h and starts `vipd run -c` there. Its stats server listens
// on the host's lab address, so the client (and Chromium in the client) can reach it.
func proxyStartVipd(t *testing.T, h *lab.Host, bin string, cfg proxyLBConfig) *lab.Vipd {
	t.Helper()
	dir := filepath.Join(h.Lab().Dir, h.Name+"-vipd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.Socket = filepath.Join(dir, "vipd.sock")
	path := filepath.Join(dir, "vipd.yaml")
	if err := os.WriteFile(path, []byte(cfg.yaml()), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := h.Start("vipd", []string{bin, "run", "-c", path}, "")
	if err != nil {
		t.Fatal(err)
	}
	return &lab.Vipd{Proc: p, Opts: lab.VipdOptions{Bin: bin, VIP: cfg.VIP, Priority: cfg.Priority},
		ConfigPath: path, Socket: cfg.Socket, StatsAddr: net.JoinHostPort(h.Addr.String(), "8404")}
}

// proxyRewrite replaces vipd's config file atomically (write, rename) with cfg.
func proxyRewrite(v *lab.Vipd, cfg proxyLBConfig) error {
	cfg.Socket = v.Socket
	tmp := v.ConfigPath + ".new"
	if err := os.WriteFile(tmp, []byte(cfg.yaml()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, v.ConfigPath)
}

// proxySnap fetches /stats.json and decodes it into pkg/stats's model (the stable interface).
func proxySnap(ctx context.Context, v *lab.Vipd) (*stats.Snapshot, error) {
	s, err := v.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return &s.Snapshot, nil
}

// proxyBackend returns the backend view of addr, or nil when the snapshot does not list it.
func proxyBackend(s *stats.Snapshot, addr string) *stats.BackendView {
	for i := range s.Backends {
		if s.Backends[i].Addr == addr {
			return &s.Backends[i]
		}
	}
	return nil
}

// proxyWaitSnap polls /stats.json every 50 ms until ok accepts it, and returns that snapshot and
// when it was seen.
func proxyWaitSnap(ctx context.Context, v *lab.Vipd, what string, ok func(*stats.Snapshot) bool) (*stats.Snapshot, time.Time, error) {
	var last *stats.Snapshot
	var lastErr error
	for {
		s, err := proxySnap(ctx, v)
		if err == nil && ok(s) {
			return s, time.Now(), nil
		}
		if err == nil {
			last = s
		}
		lastErr = err
		if !v.Running() {
			return last, time.Time{}, fmt.Errorf("%s: vipd exited while waiting for %s:\n%s", v.Host.Name, what, v.Tail(30))
		}
		select {
		case <-ctx.Done():
			return last, time.Time{}, fmt.Errorf("%s: waiting for %s (last error %v): %s\nlast /stats.json: %s",
				v.Host.Name, what, lastErr, ctx.Err(), proxyDescribe(last))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// proxyDescribe is a one-line summary of a snapshot for failure messages and logs.
func proxyDescribe(s *stats.Snapshot) string {
	if s == nil {
		return "(none)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s prio %d/%d holds_vip=%v faults=%q;", s.Node, s.VRRP.State, s.VRRP.EffectivePriority,
		s.VRRP.Priority, s.VRRP.HoldsVIP, s.VRRP.Faults)
	for _, be := range s.Backends {
		fmt.Fprintf(&b, " %s=%s(cur %d tot %d err %d retr %d, %s)", be.Addr, be.StatusText(), be.CurrentConns,
			be.TotalConns, be.ConnErrors, be.Retries, be.LastResult)
	}
	if s.Frontend != nil {
		fmt.Fprintf(&b, "; frontend listening=%v cur %d tot %d err %d", s.Frontend.Listening, s.Frontend.CurrentConns,
			s.Frontend.TotalConns, s.Frontend.Errors)
	}
	return b.String()
}

// proxyAllUp reports whether every backend in want is listed and UP, and no other is listed.
func proxyAllUp(want []string) func(*stats.Snapshot) bool {
	return func(s *stats.Snapshot) bool {
		if len(s.Backends) != len(want) {
			return false
		}
		for _, a := range want {
			be := proxyBackend(s, a)
			if be == nil || !be.Up || be.StatusText() != stats.BackendUp {
				return false
			}
		}
		return true
	}
}

// proxyMetrics fetches /metrics and returns the samples keyed by "name{labels}" as printed (or
// "name" without labels).
func proxyMetrics(ctx context.Context, v *lab.Vipd) (map[string]float64, error) {
	body, err := v.Get(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		f, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = f
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("%s: /metrics has no samples: %.300s", v.Host.Name, body)
	}
	return m, nil
}

// proxyCheckMetrics compares the samples in want with /metrics; a negative want means the
// sample must be absent; a key "name{*}" matches the metric with any labels.
func proxyCheckMetrics(t *testing.T, ctx context.Context, v *lab.Vipd, want map[string]float64) {
	t.Helper()
	m, err := proxyMetrics(ctx, v)
	if err != nil {
		t.Errorf("metrics: %v", err)
		return
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		got, ok := m[k]
		if name, any := strings.CutSuffix(k, "{*}"); any {
			// Any labels: every sample of the metric must have the value, and there must be one.
			ok = false
			for mk, v := range m {
				if strings.HasPrefix(mk, name+"{") {
					got, ok = v, true
					if v != want[k] {
						break
					}
				}
			}
		}
		switch w := want[k]; {
		case w < 0 && ok:
			t.Errorf("%s /metrics: %s = %v, want it absent", v.Host.Name, k, got)
		case w >= 0 && !ok:
			t.Errorf("%s /metrics: %s missing", v.Host.Name, k)
		case w >= 0 && got != w:
			t.Errorf("%s /metrics: %s = %v, want %v", v.Host.Name, k, got, w)
		}
	}
}

// proxyMetricsAtLeast checks that every sample in min is on /metrics with at least that value
// (counters that must have moved); "name{*}" sums the metric over its labels.
func proxyMetricsAtLeast(t *testing.T, ctx context.Context, v *lab.Vipd, min map[string]float64) {
	t.Helper()
	m, err := proxyMetrics(ctx, v)
	if err != nil {
		t.Errorf("metrics: %v", err)
		return
	}
	for k, w := range min {
		got, ok := m[k]
		if name, any := strings.CutSuffix(k, "{*}"); any {
			got, ok = 0, false
			for mk, x := range m {
				if strings.HasPrefix(mk, name+"{") {
					got, ok = got+x, true
				}
			}
		}
		if !ok || got < w {
			t.Errorf("%s /metrics: %s = %v (present %v), want >= %v", v.Host.Name, k, got, ok, w)
		}
	}
}

// proxyStream is one long-lived watch (GET ...?watch=1) read line by line.
type proxyStream struct {
	Name   string
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	host   string
	events []time.Time
	err    error
}

// proxyOpenStream opens a watch from host h to addr and waits for its first event.
func proxyOpenStream(t *testing.T, h *lab.Host, tlsConf *tls.Config, name, addr string) *proxyStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &proxyStream{Name: name, cancel: cancel, done: make(chan struct{})}
	t.Cleanup(s.Close)
	c := &http.Client{Transport: &http.Transport{DialContext: h.Dial, DisableKeepAlives: true,
		TLSClientConfig: tlsConf, ResponseHeaderTimeout: 3 * time.Second}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/api/v1/namespaces/default/pods?watch=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("open stream %s via %s: %v", name, addr, err)
	}
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev apiserverstub.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				s.mu.Lock()
				s.err = fmt.Errorf("bad event %q: %w", sc.Text(), err)
				s.mu.Unlock()
				return
			}
			s.mu.Lock()
			s.host = ev.Host
			s.events = append(s.events, time.Now())
			s.mu.Unlock()
		}
		s.mu.Lock()
		s.err = sc.Err()
		if s.err == nil {
			s.err = io.EOF
		}
		s.mu.Unlock()
	}()
	deadline := time.Now().Add(3 * time.Second)
	for s.Host() == "" {
		if time.Now().After(deadline) {
			t.Fatalf("stream %s via %s: no event in 3 s (%v)", name, addr, s.Err())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// Host is the master that sends the stream's events.
func (s *proxyStream) Host() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.host
}

// Err is why the stream ended (nil while it flows).
func (s *proxyStream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Count is how many events arrived.
func (s *proxyStream) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

// Flowing checks that the stream has not ended and that events kept coming from `from` until
// now with no gap longer than maxGap; it returns the longest gap and the events counted.
func (s *proxyStream) Flowing(from time.Time, maxGap time.Duration) (time.Duration, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, len(s.events), fmt.Errorf("stream %s (from %s) ended: %w", s.Name, s.host, s.err)
	}
	prev := from
	var gap time.Duration
	n := 0
	for _, e := range s.events {
		if e.Before(from) {
			continue
		}
		n++
		gap = max(gap, e.Sub(prev))
		prev = e
	}
	gap = max(gap, time.Since(prev))
	if gap > maxGap {
		return gap, n, fmt.Errorf("stream %s (from %s): a gap of %v without events (max %v)", s.Name, s.host, gap.Round(time.Millisecond), maxGap)
	}
	return gap, n, nil
}

// Close ends the stream from the client side.
func (s *proxyStream) Close() {
	s.cancel()
	<-s.done
}

// proxyChromium runs headless Chromium in host h with extra (e.g. --dump-dom URL) and returns
// its stdout. The browser's process group is killed if it runs longer than 60 s.
func proxyChromium(t *testing.T, h *lab.Host, extra ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := append([]string{"/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-breakpad", "--user-data-dir=" + t.TempDir()}, extra...)
	cmd := h.Command(ctx, argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// On timeout end the browser's whole process group (renderer, zygote), which this call made.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		tail := stderr.String()
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return stdout.String(), fmt.Errorf("chromium %s: %w\n%s", strings.Join(extra, " "), err, tail)
	}
	return stdout.String(), nil
}

// proxyArtifactDir is $VIPD_ARTIFACTS (created if needed) or a temp dir of the test.
func proxyArtifactDir(t *testing.T) string {
	if d := os.Getenv("VIPD_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err == nil {
			return d
		}
	}
	return t.TempDir()
}

// proxyGone reports whether no process has this PID any more.
func proxyGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
