package stats

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// realHAProxyFamilies runs Debian's HAProxy (hack/deps.sh installs it) on loopback with
// its built-in exporter, a frontend and a backend with one server, and returns its
// haproxy_* families.
func realHAProxyFamilies(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy not installed (hack/deps.sh installs it): %v", err)
	}
	free := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	prom, fe := free(), free()
	cfg := fmt.Sprintf(`global
  log stdout format raw local0 emerg
defaults
  mode tcp
  timeout connect 1s
  timeout client 10s
  timeout server 10s
frontend prom
  mode http
  bind 127.0.0.1:%d
  http-request use-service prometheus-exporter if { path /metrics }
frontend kube-apiserver
  bind 127.0.0.1:%d
  default_backend kube-apiserver
backend kube-apiserver
  server m1 127.0.0.1:1 check inter 100ms
`, prom, fe)
	p := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", p)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", prom))
		if err == nil {
			parser := expfmt.NewTextParser(model.UTF8Validation)
			fams, perr := parser.TextToMetricFamilies(resp.Body)
			resp.Body.Close()
			if perr != nil {
				t.Fatalf("parse HAProxy's /metrics: %v", perr)
			}
			if fams["haproxy_server_check_failures_total"] != nil {
				return fams
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("HAProxy's exporter did not answer: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func labelNames(f *dto.MetricFamily) string {
	var names []string
	for _, l := range f.Metric[0].Label {
		names = append(names, l.GetName())
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

func labelValues(f *dto.MetricFamily, name string) []string {
	var vs []string
	seen := map[string]bool{}
	for _, m := range f.Metric {
		for _, l := range m.Label {
			if l.GetName() == name && !seen[l.GetValue()] {
				seen[l.GetValue()] = true
				vs = append(vs, l.GetValue())
			}
		}
	}
	sort.Strings(vs)
	return vs
}

// TestHAProxyCompatibleSeries: every haproxy_* family vipd exports exists in a real HAProxy's
// exporter with the same type, the same label names and the same state values, so HAProxy
// dashboards and alerts read vipd unchanged.
func TestHAProxyCompatibleSeries(t *testing.T) {
	real := realHAProxyFamilies(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newCollector(SourceFunc(fakeSnapshot), slog.New(slog.DiscardHandler)))
	ours, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range ours {
		if !strings.HasPrefix(f.GetName(), "haproxy_") {
			continue
		}
		n++
		r := real[f.GetName()]
		if r == nil {
			t.Errorf("%s: HAProxy has no such family", f.GetName())
			continue
		}
		if f.GetType() != r.GetType() {
			t.Errorf("%s: type %v, HAProxy's %v", f.GetName(), f.GetType(), r.GetType())
		}
		if got, want := labelNames(f), labelNames(r); got != want {
			t.Errorf("%s: labels %s, HAProxy's %s", f.GetName(), got, want)
		}
		if got, want := labelValues(f, "state"), labelValues(r, "state"); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: state values %v, HAProxy's %v", f.GetName(), got, want)
		}
	}
	if n < 20 {
		t.Errorf("only %d haproxy_* families exported", n)
	}
	// The families the issue names, present for every backend of the snapshot.
	for _, name := range []string{"haproxy_server_status", "haproxy_server_check_failures_total", "haproxy_server_check_duration_seconds",
		"haproxy_server_current_sessions", "haproxy_server_connection_errors_total", "haproxy_server_retry_warnings_total"} {
		found := false
		for _, f := range ours {
			found = found || f.GetName() == name
		}
		if !found {
			t.Errorf("%s not exported", name)
		}
	}
}

// TestHAProxySeriesValues: the numbers behind the names (status per state, the backend's
// sums over its servers).
func TestHAProxySeriesValues(t *testing.T) {
	c := newCollector(SourceFunc(fakeSnapshot), slog.New(slog.DiscardHandler))
	want := `
# HELP haproxy_server_status Current status of the service, per state label value.
# TYPE haproxy_server_status gauge
`
	s := fakeSnapshot()
	var active int
	var sessions uint64
	for _, b := range s.Backends {
		st := haServerState(b)
		if st == "UP" {
			active++
		}
		sessions += b.TotalConns
		for _, state := range haServerStates {
			v := 0
			if st == state {
				v = 1
			}
			want += fmt.Sprintf("haproxy_server_status{proxy=\"kube-apiserver\",server=%q,state=%q} %d\n", b.Addr, state, v)
		}
	}
	want += fmt.Sprintf(`# HELP haproxy_backend_active_servers Current number of active servers.
# TYPE haproxy_backend_active_servers gauge
haproxy_backend_active_servers{proxy="kube-apiserver"} %d
# HELP haproxy_backend_sessions_total Total number of sessions.
# TYPE haproxy_backend_sessions_total counter
haproxy_backend_sessions_total{proxy="kube-apiserver"} %d
`, active, sessions)
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "haproxy_server_status", "haproxy_backend_active_servers", "haproxy_backend_sessions_total"); err != nil {
		t.Error(err)
	}
	if active == 0 || active == len(s.Backends) {
		t.Fatalf("fixture: want some backends UP and some not, got %d of %d", active, len(s.Backends))
	}
}

// A drained backend is haproxy_server_status{state="DRAIN"} 1 and a disabled one
// {state="MAINT"} 1, as HAProxy's exporter shows `set server ... state drain|maint`; weight 0
// while UP is DRAIN too (HAProxy's rule); the weight is haproxy_server_weight.
func TestHAProxyAdminStates(t *testing.T) {
	for _, c := range []struct {
		b    BackendView
		want string
	}{
		{BackendView{Up: true, Admin: "READY", Weight: 1}, "UP"},
		{BackendView{Up: false, Admin: "READY", Weight: 1}, "DOWN"},
		{BackendView{Up: true, Admin: "DRAIN", Status: BackendDrain, Weight: 1}, "DRAIN"},
		{BackendView{Up: false, Admin: "MAINT", Status: BackendMaint, Weight: 1}, "MAINT"},
		{BackendView{Up: true, Admin: "READY", Weight: 0}, "DRAIN"},
	} {
		if got := haServerState(c.b); got != c.want {
			t.Errorf("%+v: state %s, want %s", c.b, got, c.want)
		}
	}
}
