package stats

import (
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches /metrics through the server's handler and parses the text.
func scrape(t *testing.T, srv *Server) map[string]*dto.MetricFamily {
	t.Helper()
	rec := get(t, srv.Handler(), "/metrics")
	if rec.Code != 200 {
		t.Fatalf("/metrics: status %d: %s", rec.Code, rec.Body.String())
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, rec.Body.String())
	}
	return fams
}

// value returns the value of the sample of family name whose labels include
// all of want (label, value pairs); ok false if there is none.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func TestMetricsValues(t *testing.T) {
	var calls atomic.Int64
	srv := newTestServer(t, Config{}, func() Snapshot { calls.Add(1); return fakeSnapshot() })
	fams := scrape(t, srv)
	if n := calls.Load(); n != 1 {
		t.Errorf("one scrape read %d snapshots, want 1", n)
	}
	be0, be1 := "192.168.10.138:6443", "192.168.10.139:6443"
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"vipd_build_info", []string{"version", "0.1.0-test", "node", "lb1"}, 1},
		{"vipd_vrrp_state", []string{"state", "MASTER"}, 1},
		{"vipd_vrrp_state", []string{"state", "BACKUP"}, 0},
		{"vipd_vrrp_state", []string{"state", "FAULT"}, 0},
		{"vipd_vrrp_state", []string{"state", "INIT"}, 0},
		{"vipd_vrrp_priority", nil, 100},
		{"vipd_vrrp_effective_priority", nil, 100},
		{"vipd_vrrp_holds_vip", nil, 1},
		{"vipd_vrrp_maintenance", nil, 0},
		{"vipd_vrrp_state_last_change_seconds", nil, 192},
		{"vipd_vrrp_transitions_total", nil, 2},
		{"vipd_vrrp_adverts_sent_total", nil, 7200},
		{"vipd_vrrp_adverts_received_total", nil, 180},
		{"vipd_vrrp_packets_dropped_total", []string{"reason", "ttl"}, 3},
		{"vipd_vrrp_packets_dropped_total", []string{"reason", "auth"}, 1},
		{"vipd_vrrp_garps_sent_total", nil, 12},
		{"vipd_vrrp_source_table_events_total", []string{"event", "source_table_full"}, 40},
		{"vipd_vrrp_source_table_events_total", []string{"event", "source_evicted"}, 6},
		{"vipd_vrrp_source_table_events_total", []string{"event", "source_expired"}, 2},
		{"vipd_vrrp_source_table_entries", nil, 64},
		{"vipd_frontend_current_sessions", []string{"frontend", ":6443"}, 42},
		{"vipd_frontend_sessions_total", nil, 123456},
		{"vipd_frontend_limit_sessions", nil, 20000},
		{"vipd_frontend_limit_sessions_denied_total", nil, 0},
		{"vipd_frontend_limit_sessions_per_source", []string{"frontend", ":6443"}, 1000},
		{"vipd_frontend_refused_per_source_total", []string{"frontend", ":6443"}, 17},
		{"vipd_frontend_timeouts_total", []string{"frontend", ":6443", "reason", "first_byte_timeout"}, 9},
		{"vipd_frontend_timeouts_total", []string{"frontend", ":6443", "reason", "half_closed_timeout"}, 4},
		{"vipd_frontend_timeouts_total", []string{"frontend", ":6443", "reason", "idle_timeout"}, 0},
		{"vipd_frontend_bytes_in_total", nil, 5 << 20},
		{"vipd_frontend_bytes_out_total", nil, 3 << 30},
		{"vipd_frontend_listening", nil, 1},
		{"vipd_backend_up", []string{"backend", be0}, 1},
		{"vipd_backend_up", []string{"backend", be1}, 0},
		{"vipd_backend_up", []string{"backend", hostileAddr}, 1},
		{"vipd_backend_check_failures_total", []string{"backend", be1}, 57},
		{"vipd_backend_check_up_down_total", []string{"backend", be1}, 3},
		{"vipd_backend_check_last_change_seconds", []string{"backend", be0}, 7200},
		{"vipd_backend_check_duration_seconds", []string{"backend", be0}, 0.0023},
		{"vipd_backend_current_sessions", []string{"backend", be0}, 20},
		{"vipd_backend_sessions_total", []string{"backend", be1}, 3456},
		{"vipd_backend_connection_errors_total", []string{"backend", be1}, 4},
		{"vipd_backend_retry_warnings_total", []string{"backend", be1}, 4},
		{"vipd_backend_bytes_in_total", []string{"backend", be0}, 2 << 20},
		{"vipd_backend_bytes_out_total", []string{"backend", be0}, 1 << 30},
		{"vipd_backends_up", nil, 2},
		{"vipd_backends", nil, 3},
		{"vipd_cluster_members", nil, 2},
		{"vipd_cluster_member_alive", []string{"member", "lb2"}, 1},
		{"vipd_cluster_alarm", []string{"kind", "split_brain"}, 1},
		{"vipd_cluster_alarm", []string{"kind", "backend_disagreement"}, 1},
		{"vipd_cluster_alarm", []string{"kind", "blocked_vrrp"}, 0},
		{"vipd_cluster_alarm", []string{"kind", "config_drift"}, 0},
		{"vipd_cluster_alarm", []string{"kind", "peer_lost"}, 0},
	} {
		got, ok := value(fams, c.name, c.labels...)
		if !ok {
			t.Errorf("%s%v: missing", c.name, c.labels)
			continue
		}
		if got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Types: counters end in _total and are counters.
	for name, f := range fams {
		if strings.HasPrefix(name, "vipd_") && strings.HasSuffix(name, "_total") && f.GetType() != dto.MetricType_COUNTER {
			t.Errorf("%s is %v, want counter", name, f.GetType())
		}
	}
	// Go and process collectors are there.
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if fams[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
}

func TestMetricsExactText(t *testing.T) {
	c := newCollector(SourceFunc(fakeSnapshot), slog.New(slog.DiscardHandler))
	want := `
# HELP vipd_vrrp_state 1 for this node's current VRRP state, 0 for the others.
# TYPE vipd_vrrp_state gauge
vipd_vrrp_state{state="BACKUP"} 0
vipd_vrrp_state{state="FAULT"} 0
vipd_vrrp_state{state="INIT"} 0
vipd_vrrp_state{state="MASTER"} 1
# HELP vipd_backend_up Deprecated, removed in the next release: use haproxy_server_status. 1 when the backend is UP according to its health checks.
# TYPE vipd_backend_up gauge
vipd_backend_up{backend="192.168.10.138:6443"} 1
vipd_backend_up{backend="192.168.10.139:6443"} 0
vipd_backend_up{backend="<script>alert(\"x\")</script>:6443"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "vipd_vrrp_state", "vipd_backend_up"); err != nil {
		t.Error(err)
	}
	// Describe and Collect agree (the pedantic registry checks every metric
	// against the descriptors).
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if _, err := reg.Gather(); err != nil {
		t.Errorf("pedantic gather: %v", err)
	}
}

func TestMetricsMinimalAndOddSnapshots(t *testing.T) {
	// VRRP only, no proxy, no cluster: no frontend/backend/cluster series.
	srv := newTestServer(t, Config{}, func() Snapshot {
		return Snapshot{Node: "lb2", VRRP: VRRPView{State: StateBackup, Priority: 90, EffectivePriority: 90}}
	})
	fams := scrape(t, srv)
	if v, ok := value(fams, "vipd_vrrp_state", "state", "BACKUP"); !ok || v != 1 {
		t.Errorf("BACKUP state = %v, %v", v, ok)
	}
	for _, name := range []string{"vipd_frontend_current_sessions", "vipd_backends_up", "vipd_cluster_members", "vipd_cluster_alarm"} {
		if fams[name] != nil {
			t.Errorf("%s exported without its section", name)
		}
	}

	// A duplicate backend and an unknown state do not break the scrape.
	snap := fakeSnapshot()
	snap.Backends = append(snap.Backends, snap.Backends[0])
	snap.VRRP.State = "WEIRD"
	snap.Cluster.Alarms = append(snap.Cluster.Alarms, Alarm{Kind: "new_kind"})
	srv = newTestServer(t, Config{}, func() Snapshot { return snap })
	fams = scrape(t, srv)
	if n := len(fams["vipd_backend_up"].GetMetric()); n != 3 {
		t.Errorf("vipd_backend_up has %d series with a duplicate backend, want 3", n)
	}
	if v, ok := value(fams, "vipd_vrrp_state", "state", "WEIRD"); !ok || v != 1 {
		t.Errorf("unknown state not exported: %v %v", v, ok)
	}
	if v, ok := value(fams, "vipd_vrrp_state", "state", "MASTER"); !ok || v != 0 {
		t.Errorf("MASTER = %v %v, want 0", v, ok)
	}
	if v, ok := value(fams, "vipd_cluster_alarm", "kind", "new_kind"); !ok || v != 1 {
		t.Errorf("unknown alarm kind not exported: %v %v", v, ok)
	}
}
