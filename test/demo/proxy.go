package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vipd-project/vipd/pkg/stats"
	"github.com/vipd-project/vipd/test/apiserverstub"
	"github.com/vipd-project/vipd/test/lab"
)

// result is one row of the summary table.
type result struct {
	step, measured, failed, gap string
}

// note adds a row to the summary table.
func (d *demo) note(step, measured, failed, gap string) {
	d.results = append(d.results, result{step, measured, failed, gap})
}

// mname names the master behind a backend address ("10.77.0.13:6443" -> "m1").
func (d *demo) mname(addr string) string {
	for _, m := range d.masters {
		if net.JoinHostPort(m.Addr.String(), "6443") == addr {
			return m.Name
		}
	}
	return addr
}

func (d *demo) startMasters(ctx context.Context) error {
	t0 := time.Now()
	ms, err := apiserverstub.StartMasters(ctx, d.lab, d.masters, []net.IP{d.vip.AsSlice(), d.lb1.Addr.AsSlice(), d.lb2.Addr.AsSlice()})
	if err != nil {
		return err
	}
	d.ms = ms
	d.backends = nil
	for _, m := range d.masters {
		d.backends = append(d.backends, ms.Addr(m.Name))
		d.say("%s  https://%s  (pid %d): /readyz, /version, watch streams", m.Name, ms.Addr(m.Name), ms.Proc(m.Name).PID)
	}
	d.say("serving certificates from a throw-away CA (%s) for each master's address and the VIP; up in %v",
		ms.CAFile, time.Since(t0).Round(10*time.Millisecond))
	return nil
}

// lbConfig is the vipd config of one LB host: VRRP (vipd's default 200 ms adverts unless
// -advert), the proxy on :6443 to the three masters with https /readyz checks verified with the
// masters' CA, tracking, and the stats server on :8404 of every address.
func (d *demo) lbConfig(h *lab.Host, prio int, socket string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node_name: %s\nlog_level: info\nvrrp:\n  interface: %s\n  vrid: 51\n  priority: %d\n  version: 3\n",
		h.Name, h.Iface, prio)
	if d.advert > 0 {
		fmt.Fprintf(&b, "  advert_interval: %s\n", d.advert)
	}
	fmt.Fprintf(&b, "  preempt: true\n  vips:\n    - %s\nproxy:\n  listen: \":6443\"\n  backends:\n", lab.Prefix24(d.vip))
	for _, be := range d.backends {
		fmt.Fprintf(&b, "    - %s\n", be)
	}
	fmt.Fprintf(&b, `  balance: roundrobin
  connect_timeout: 1s
  retries: 2
  min_healthy_backends: 1
  track_weight: 50
health:
  type: https
  path: /readyz
  interval: 500ms
  fast_interval: 500ms
  timeout: 400ms
  rise: 2
  fall: 2
  tls:
    ca_file: %s
stats:
  listen: ":8404"
  refresh: 2s
control_socket: %s
`, d.ms.CAFile, socket)
	return b.String()
}

// startLB writes the config for h and starts vipd there.
func (d *demo) startLB(h *lab.Host, prio int) (*lab.Vipd, error) {
	dir := filepath.Join(d.lab.Dir, h.Name+"-vipd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: vipd dir: %w", h.Name, err)
	}
	socket := filepath.Join(dir, "vipd.sock")
	path := filepath.Join(dir, "vipd.yaml")
	if err := os.WriteFile(path, []byte(d.lbConfig(h, prio, socket)), 0o600); err != nil {
		return nil, fmt.Errorf("%s: write vipd config: %w", h.Name, err)
	}
	p, err := h.Start("vipd", []string{d.bin, "run", "-c", path}, "")
	if err != nil {
		return nil, err
	}
	return &lab.Vipd{Proc: p, Opts: lab.VipdOptions{Bin: d.bin, VIP: d.vip, Priority: prio, Advert: d.advert},
		ConfigPath: path, Socket: socket, StatsAddr: net.JoinHostPort(h.Addr.String(), "8404")}, nil
}

// snap fetches /stats.json from v (inside its host) in pkg/stats's model.
func snap(ctx context.Context, v *lab.Vipd) (*stats.Snapshot, error) {
	s, err := v.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return &s.Snapshot, nil
}

// waitSnap polls /stats.json every 50 ms until ok accepts it; it returns the snapshot and when
// it was seen.
func waitSnap(ctx context.Context, v *lab.Vipd, what string, ok func(*stats.Snapshot) bool) (*stats.Snapshot, time.Time, error) {
	var lastErr error
	for {
		s, err := snap(ctx, v)
		if err == nil && ok(s) {
			return s, time.Now(), nil
		}
		lastErr = err
		if !v.Running() {
			return nil, time.Time{}, fmt.Errorf("%s: vipd exited while waiting for %s:\n%s", v.Host.Name, what, v.Tail(20))
		}
		select {
		case <-ctx.Done():
			return nil, time.Time{}, fmt.Errorf("%s: waiting for %s (last error %v): %w", v.Host.Name, what, lastErr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func backendOf(s *stats.Snapshot, addr string) *stats.BackendView {
	for i := range s.Backends {
		if s.Backends[i].Addr == addr {
			return &s.Backends[i]
		}
	}
	return nil
}

// allUp reports whether every backend in want is UP.
func allUp(want []string) func(*stats.Snapshot) bool {
	return func(s *stats.Snapshot) bool {
		for _, a := range want {
			if b := backendOf(s, a); b == nil || b.StatusText() != stats.BackendUp {
				return false
			}
		}
		return true
	}
}

// errKinds sums up why requests failed ("none", "12 timed out, 3 refused").
func errKinds(rs []apiserverstub.Result) string {
	kinds := map[string]int{}
	for _, r := range rs {
		if r.Err == nil {
			continue
		}
		e := r.Err.Error()
		k := "other"
		switch {
		case strings.Contains(e, "Timeout") || strings.Contains(e, "timeout") || strings.Contains(e, "deadline"):
			k = "timed out"
		case strings.Contains(e, "refused"):
			k = "refused"
		case strings.Contains(e, "reset"):
			k = "reset"
		case strings.Contains(e, "EOF"):
			k = "closed early"
		case strings.Contains(e, "unreachable") || strings.Contains(e, "no route"):
			k = "unreachable"
		}
		kinds[k]++
	}
	if len(kinds) == 0 {
		return "none"
	}
	var parts []string
	for k, n := range kinds {
		parts = append(parts, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// byMaster formats answers per master ("m1 30, m2 31").
func byMaster(byHost map[string]int) string {
	var parts []string
	for h, n := range byHost {
		parts = append(parts, fmt.Sprintf("%s %d", h, n))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "no answers"
	}
	return "answered by " + strings.Join(parts, ", ")
}

func (d *demo) startLoad(ctx context.Context) error {
	target := net.JoinHostPort(d.vip.String(), "6443")
	d.began = time.Now()
	d.load = apiserverstub.StartProber(d.client.Dial, d.ms.ClientTLS(), target, 50*time.Millisecond, 2*time.Second)
	d.say("client: every 50 ms a new TCP + TLS connection to %s, GET /version (certificate verified, 2 s timeout)", target)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Second):
	}
	end := time.Now()
	d.load.WaitDone(end)
	rs := d.load.Between(d.began, end)
	total, failed, byHost, _ := apiserverstub.Summary(rs)
	var lat []time.Duration
	for _, r := range rs {
		if r.Err == nil {
			lat = append(lat, r.End.Sub(r.Start))
		}
	}
	slices.Sort(lat)
	med := time.Duration(0)
	if len(lat) > 0 {
		med = lat[len(lat)/2]
	}
	d.say("first 2 s: %d requests, %d failed, %s (round-robin); median %v per request",
		total, failed, byMaster(byHost), med.Round(100*time.Microsecond))
	if failed > 0 {
		d.say("%d of %d requests failed with every host up (%s): is the machine overloaded?", failed, total, errKinds(rs))
	}
	return nil
}

// clientGet fetches url from inside the client's namespace (as curl there would).
func (d *demo) clientGet(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := d.client.HTTPClient(3 * time.Second).Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("client: GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("client: read %s: %w", url, err)
	}
	return resp.StatusCode, body, nil
}

func (d *demo) showStats(ctx context.Context) error {
	m := d.master
	if m == nil {
		m = d.vipd1
	}
	base := "http://" + m.StatsAddr
	d.say("stats pages (inside the lab): %s/stats (lb1), http://%s/stats (lb2); also /stats.json, /metrics",
		"http://"+d.vipd1.StatsAddr, d.vipd2.StatsAddr)
	d.say("look at them from the client while the demo runs (or run it with -hold to keep the lab up):")
	d.say("  ip netns exec %s curl -s %s/stats.json", d.client.NS, base)
	d.say("  ip netns exec %s chromium --headless --no-sandbox --screenshot=/tmp/stats.png %s/stats", d.client.NS, base)

	code, page, err := d.clientGet(ctx, base+"/stats")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s/stats from the client: HTTP %d", base, code)
	}
	txt := string(page)
	d.say("GET /stats from the client: HTTP %d, %.1f KiB of HTML showing MASTER: %v, 3 backends: %v",
		code, float64(len(page))/1024, strings.Contains(txt, "MASTER"),
		strings.Contains(txt, d.backends[0]) && strings.Contains(txt, d.backends[1]) && strings.Contains(txt, d.backends[2]))

	code, body, err := d.clientGet(ctx, base+"/stats.json")
	if err != nil {
		return err
	}
	var s stats.Snapshot
	if err := json.Unmarshal(body, &s); code != http.StatusOK || err != nil {
		return fmt.Errorf("GET %s/stats.json from the client: HTTP %d, %v", base, code, err)
	}
	d.say("GET /stats.json from the client (%s):", m.Host.Name)
	for _, line := range d.statsLines(&s) {
		d.say("  %s", line)
	}
	code, metrics, err := d.clientGet(ctx, base+"/metrics")
	if err != nil {
		return err
	}
	n := 0
	for _, l := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(l, "vipd_") {
			n++
		}
	}
	d.say("GET /metrics: HTTP %d, %d vipd_* samples (Prometheus text)", code, n)
	d.note("stats page", fmt.Sprintf("http://%s/stats: %s %s, %d/3 UP", m.StatsAddr, s.Node, s.VRRP.State, countUp(&s)), "", "")
	return nil
}

func countUp(s *stats.Snapshot) int {
	n := 0
	for _, b := range s.Backends {
		if b.StatusText() == stats.BackendUp {
			n++
		}
	}
	return n
}

// statsLines is a 3-line summary of a /stats.json snapshot: VRRP, frontend, backends.
func (d *demo) statsLines(s *stats.Snapshot) []string {
	v := s.VRRP
	holds := "does not hold"
	if v.HoldsVIP {
		holds = "holds"
	}
	l1 := fmt.Sprintf("vrrp:     %s %s, priority %d (configured %d), %s %s, %d adverts sent",
		s.Node, v.State, v.EffectivePriority, v.Priority, holds, strings.Join(v.VIPs, ","), v.AdvertsSent)
	l2 := "frontend: none"
	if f := s.Frontend; f != nil {
		state := "listening"
		if !f.Listening {
			state = "NOT listening"
		}
		l2 = fmt.Sprintf("frontend: %s %s, %d open / %d total connections, %s in / %s out, %d errors",
			f.Listen, state, f.CurrentConns, f.TotalConns, kib(f.BytesIn), kib(f.BytesOut), f.Errors)
	}
	var bs []string
	for _, b := range s.Backends {
		bs = append(bs, fmt.Sprintf("%s %s (%s, %v, %d conns)", d.mname(b.Addr), b.StatusText(), b.LastResult,
			b.LastLatency.Std().Round(100*time.Microsecond), b.TotalConns))
	}
	return []string{l1, l2, "backends: " + strings.Join(bs, "; ")}
}

func kib(n uint64) string { return fmt.Sprintf("%.1f KiB", float64(n)/1024) }

func (d *demo) killMaster(ctx context.Context) error {
	m3 := d.masters[2]
	addr := d.ms.Addr(m3.Name)
	from := time.Now().Add(-time.Second)
	killed := time.Now()
	if err := d.ms.Kill(m3.Name); err != nil {
		return err
	}
	d.say("%s: stand-in SIGKILLed at %s; the client keeps sending through the VIP", m3.Name, killed.Format("15:04:05.000"))
	// Poll both LBs' /stats.json until each shows m3 DOWN.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lbs := []*lab.Vipd{d.vipd1, d.vipd2}
	seen := map[*lab.Vipd]time.Time{}
	views := map[*lab.Vipd]stats.BackendView{}
	for len(seen) < len(lbs) {
		for _, v := range lbs {
			if _, ok := seen[v]; ok {
				continue
			}
			if s, err := snap(wctx, v); err == nil {
				if b := backendOf(s, addr); b != nil && b.StatusText() == stats.BackendDown {
					seen[v], views[v] = time.Now(), *b
				}
			}
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("%s not DOWN on both LBs' /stats 10 s after the kill", m3.Name)
		case <-time.After(50 * time.Millisecond):
		}
	}
	var downs []string
	for _, v := range lbs {
		b := views[v]
		d.say("%s's /stats shows %s DOWN %v after the kill (DOWN since +%v; last check: %s)", v.Host.Name, m3.Name,
			seen[v].Sub(killed).Round(time.Millisecond), b.Since.Sub(killed).Round(time.Millisecond), b.LastResult)
		downs = append(downs, fmt.Sprintf("%s %v", v.Host.Name, seen[v].Sub(killed).Round(10*time.Millisecond)))
	}
	until := killed.Add(3 * time.Second)
	d.load.WaitDone(until)
	rs := d.load.Between(from, until)
	total, failed, _, _ := apiserverstub.Summary(rs)
	_, _, after, _ := apiserverstub.Summary(d.load.Between(killed.Add(100*time.Millisecond), until))
	gap := d.load.LongestGap(from)
	d.say("requests from 1 s before to 3 s after the kill: %d, %d failed (%s); after it %s",
		total, failed, errKinds(rs), byMaster(after))
	if s, err := snap(ctx, d.master); err == nil {
		if b := backendOf(s, addr); b != nil {
			d.say("%s: %d dials to %s failed and were retried on another master at once (conn_errors %d, retries %d)",
				d.master.Host.Name, b.ConnErrors, m3.Name, b.ConnErrors, b.Retries)
		}
	}
	d.note("SIGKILL master m3", "DOWN on /stats after "+strings.Join(downs, ", "),
		fmt.Sprintf("%d / %d", failed, total), gap.Round(time.Millisecond).String())
	return nil
}

func (d *demo) summary(_ context.Context) error {
	d.load.Stop()
	end := time.Now()
	rs := d.load.Between(d.began, end)
	total, failed, byHost, _ := apiserverstub.Summary(rs)
	gap := d.load.LongestGap(d.began)
	d.note("whole run", fmt.Sprintf("%v of requests through the VIP, %s", end.Sub(d.began).Round(100*time.Millisecond), byMaster(byHost)),
		fmt.Sprintf("%d / %d", failed, total), gap.Round(time.Millisecond).String())
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  step\tmeasured\tfailed / requests\tlongest gap")
	for _, r := range d.results {
		f, g := r.failed, r.gap
		if f == "" {
			f, g = "-", "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.step, r.measured, f, g)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	d.say("(longest gap: the longest time between two answers the client got; it sends every 50 ms)")
	if failed > 0 {
		d.say("failed requests by kind: %s", errKinds(rs))
	}
	return nil
}
