package stats

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HAProxyProxyName is the "proxy" label of the haproxy_* series: vipd has one frontend and one
// backend, both named like the reference haproxy.cfg's kube-apiserver proxy.
const HAProxyProxyName = "kube-apiserver"

// Series named, labelled and typed like HAProxy's built-in Prometheus exporter (promex,
// `http-request use-service prometheus-exporter`), so dashboards and alerts written for
// HAProxy work on vipd unchanged: proxy="kube-apiserver", server="HOST:PORT" (HAProxy's
// server name; vipd's backends are named by address). A test compares every family below
// with a real HAProxy's /metrics. The vipd_frontend_*/vipd_backend_* series that carried
// the same numbers are deprecated and go in the next release.
var (
	haFE   = []string{"proxy"}
	haSrv  = []string{"proxy", "server"}
	haDesc = func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc("haproxy_"+name, help, labels, nil)
	}

	descHAFEStatus   = haDesc("frontend_status", "Current status of the service (frontend: the listener).", []string{"proxy", "state"})
	descHAFECur      = haDesc("frontend_current_sessions", "Number of current sessions.", haFE)
	descHAFELimit    = haDesc("frontend_limit_sessions", "Configured session limit (0: none).", haFE)
	descHAFESessions = haDesc("frontend_sessions_total", "Total number of sessions.", haFE)
	descHAFEConns    = haDesc("frontend_connections_total", "Total number of new connections.", haFE)
	descHAFEBytesIn  = haDesc("frontend_bytes_in_total", "Current total of incoming bytes.", haFE)
	descHAFEBytesOut = haDesc("frontend_bytes_out_total", "Current total of outgoing bytes.", haFE)

	descHABEStatus   = haDesc("backend_status", "Current status of the service (UP while a server is UP).", []string{"proxy", "state"})
	descHABEActive   = haDesc("backend_active_servers", "Current number of active servers.", haFE)
	descHABECur      = haDesc("backend_current_sessions", "Number of current sessions.", haFE)
	descHABESessions = haDesc("backend_sessions_total", "Total number of sessions.", haFE)
	descHABEBytesIn  = haDesc("backend_bytes_in_total", "Current total of incoming bytes.", haFE)
	descHABEBytesOut = haDesc("backend_bytes_out_total", "Current total of outgoing bytes.", haFE)
	descHABEConnErr  = haDesc("backend_connection_errors_total", "Total number of connection errors.", haFE)
	descHABERetry    = haDesc("backend_retry_warnings_total", "Total number of retry warnings.", haFE)

	descHASrvStatus    = haDesc("server_status", "Current status of the service, per state label value.", []string{"proxy", "server", "state"})
	descHASrvWeight    = haDesc("server_weight", "Service weight.", haSrv)
	descHASrvCur       = haDesc("server_current_sessions", "Number of current sessions.", haSrv)
	descHASrvSessions  = haDesc("server_sessions_total", "Total number of sessions.", haSrv)
	descHASrvBytesIn   = haDesc("server_bytes_in_total", "Current total of incoming bytes.", haSrv)
	descHASrvBytesOut  = haDesc("server_bytes_out_total", "Current total of outgoing bytes.", haSrv)
	descHASrvConnErr   = haDesc("server_connection_errors_total", "Total number of connection errors.", haSrv)
	descHASrvRetry     = haDesc("server_retry_warnings_total", "Total number of retry warnings.", haSrv)
	descHASrvCheckFail = haDesc("server_check_failures_total", "Total number of failed individual health checks.", haSrv)
	descHASrvUpDown    = haDesc("server_check_up_down_total", "Total number of failed checks causing UP to DOWN server transitions.", haSrv)
	descHASrvLastChg   = haDesc("server_check_last_change_seconds", "How long ago the last server state change happened.", haSrv)
	descHASrvCheckDur  = haDesc("server_check_duration_seconds", "Total duration of the latest server health check, in seconds.", haSrv)

	haDescs = []*prometheus.Desc{
		descHAFEStatus, descHAFECur, descHAFELimit, descHAFESessions, descHAFEConns, descHAFEBytesIn, descHAFEBytesOut,
		descHABEStatus, descHABEActive, descHABECur, descHABESessions, descHABEBytesIn, descHABEBytesOut, descHABEConnErr, descHABERetry,
		descHASrvStatus, descHASrvWeight, descHASrvCur, descHASrvSessions, descHASrvBytesIn, descHASrvBytesOut, descHASrvConnErr, descHASrvRetry,
		descHASrvCheckFail, descHASrvUpDown, descHASrvLastChg, descHASrvCheckDur,
	}

	// haServerStates are the state label values of haproxy_server_status, in HAProxy's order.
	haServerStates = []string{"DOWN", "UP", "MAINT", "DRAIN", "NOLB"}
)

// haServerState maps a backend's status to HAProxy's server states: disabled is MAINT,
// drained (and weight 0 while UP, as HAProxy shows it) is DRAIN.
func haServerState(b BackendView) string {
	switch {
	case b.Status == BackendMaint:
		return "MAINT"
	case b.Status == BackendDrain, b.Up && b.Admin != "" && b.Weight == 0:
		return "DRAIN"
	}
	if b.Up {
		return "UP"
	}
	return "DOWN"
}

// collectHAProxy emits the haproxy_* series of one snapshot (backends already deduplicated).
func collectHAProxy(s Snapshot, backends []BackendView, now time.Time,
	gauge func(*prometheus.Desc, float64, ...string), counter func(*prometheus.Desc, uint64, ...string)) {
	p := HAProxyProxyName
	if f := s.Frontend; f != nil {
		gauge(descHAFEStatus, b2f(!f.Listening), p, "DOWN")
		gauge(descHAFEStatus, b2f(f.Listening), p, "UP")
		gauge(descHAFECur, float64(f.CurrentConns), p)
		gauge(descHAFELimit, float64(f.MaxConns), p)
		counter(descHAFESessions, f.TotalConns, p)
		counter(descHAFEConns, f.TotalConns+f.RefusedByCap, p)
		counter(descHAFEBytesIn, f.BytesIn, p)
		counter(descHAFEBytesOut, f.BytesOut, p)
	}
	if len(backends) == 0 {
		return
	}
	var active int
	var cur int64
	var sessions, in, out, connErr, retries uint64
	for _, b := range backends {
		st := haServerState(b)
		if st == "UP" {
			active++
		}
		cur += b.CurrentConns
		sessions += b.TotalConns
		in += b.BytesIn
		out += b.BytesOut
		connErr += b.ConnErrors
		retries += b.Retries
		for _, state := range haServerStates {
			gauge(descHASrvStatus, b2f(st == state), p, b.Addr, state)
		}
		if b.Admin != "" {
			gauge(descHASrvWeight, float64(b.Weight), p, b.Addr)
		}
		gauge(descHASrvCur, float64(b.CurrentConns), p, b.Addr)
		counter(descHASrvSessions, b.TotalConns, p, b.Addr)
		counter(descHASrvBytesIn, b.BytesIn, p, b.Addr)
		counter(descHASrvBytesOut, b.BytesOut, p, b.Addr)
		counter(descHASrvConnErr, b.ConnErrors, p, b.Addr)
		counter(descHASrvRetry, b.Retries, p, b.Addr)
		counter(descHASrvCheckFail, b.CheckFailures, p, b.Addr)
		counter(descHASrvUpDown, b.Transitions, p, b.Addr)
		if !b.Since.IsZero() {
			gauge(descHASrvLastChg, max(0, now.Sub(b.Since).Seconds()), p, b.Addr)
		}
		if !b.LastCheck.IsZero() {
			gauge(descHASrvCheckDur, b.LastLatency.Seconds(), p, b.Addr)
		}
	}
	gauge(descHABEStatus, b2f(active == 0), p, "DOWN")
	gauge(descHABEStatus, b2f(active > 0), p, "UP")
	gauge(descHABEActive, float64(active), p)
	gauge(descHABECur, float64(cur), p)
	counter(descHABESessions, sessions, p)
	counter(descHABEBytesIn, in, p)
	counter(descHABEBytesOut, out, p)
	counter(descHABEConnErr, connErr, p)
	counter(descHABERetry, retries, p)
}
