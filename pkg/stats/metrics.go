package stats

import (
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric descriptors. The proxy's own series are the haproxy_* ones (haproxy.go); the
// vipd_frontend_* and vipd_backend_* names that duplicate them are deprecated.
var (
	descBuildInfo = prometheus.NewDesc("vipd_build_info",
		"vipd's version and node name; always 1.", []string{"version", "node"}, nil)
	descStartTime = prometheus.NewDesc("vipd_start_time_seconds",
		"When the daemon started, as a Unix timestamp.", nil, nil)

	descVRRPState = prometheus.NewDesc("vipd_vrrp_state",
		"1 for this node's current VRRP state, 0 for the others.", []string{"state"}, nil)
	descVRRPPriority = prometheus.NewDesc("vipd_vrrp_priority",
		"Configured VRRP priority.", nil, nil)
	descVRRPEffPriority = prometheus.NewDesc("vipd_vrrp_effective_priority",
		"VRRP priority after tracking (lowered when the proxy cannot serve).", nil, nil)
	descVRRPHoldsVIP = prometheus.NewDesc("vipd_vrrp_holds_vip",
		"1 when the VIP is on this host's interface.", nil, nil)
	descVRRPMaintenance = prometheus.NewDesc("vipd_vrrp_maintenance",
		"1 while vipd maintenance on holds this host BACKUP.", nil, nil)
	descVRRPLastChange = prometheus.NewDesc("vipd_vrrp_state_last_change_seconds",
		"Seconds since the VRRP state last changed.", nil, nil)
	descVRRPTransitions = prometheus.NewDesc("vipd_vrrp_transitions_total",
		"VRRP state changes.", nil, nil)
	descVRRPAdvertsSent = prometheus.NewDesc("vipd_vrrp_adverts_sent_total",
		"VRRP advertisements sent.", nil, nil)
	descVRRPAdvertsRecv = prometheus.NewDesc("vipd_vrrp_adverts_received_total",
		"Valid VRRP advertisements received.", nil, nil)
	descVRRPDropped = prometheus.NewDesc("vipd_vrrp_packets_dropped_total",
		"Received VRRP packets dropped, by reason.", []string{"reason"}, nil)
	descVRRPSourceTable = prometheus.NewDesc("vipd_vrrp_source_table_events_total",
		"What the source MAC check's bounded table of sources did, by event: source_table_full (a new source refused), source_evicted (the least recently heard forgotten to make room), source_expired (a binding not confirmed for its TTL forgotten).", []string{"event"}, nil)
	descVRRPSources = prometheus.NewDesc("vipd_vrrp_source_table_entries",
		"Sources in the source MAC check's table (at most 64).", nil, nil)
	descVRRPGARPs = prometheus.NewDesc("vipd_vrrp_garps_sent_total",
		"Gratuitous ARP packets sent for the VIPs.", nil, nil)
	descVRRPFaults = prometheus.NewDesc("vipd_vrrp_faults",
		"Number of active fault or tracking conditions.", nil, nil)

	descFEListening = prometheus.NewDesc("vipd_frontend_listening",
		"Deprecated, removed in the next release: use haproxy_frontend_status. 1 when the proxy's listener is bound.", []string{"frontend"}, nil)
	descFECur = prometheus.NewDesc("vipd_frontend_current_sessions",
		"Deprecated, removed in the next release: use haproxy_frontend_current_sessions. Current client connections.", []string{"frontend"}, nil)
	descFETotal = prometheus.NewDesc("vipd_frontend_sessions_total",
		"Deprecated, removed in the next release: use haproxy_frontend_sessions_total. Client connections accepted.", []string{"frontend"}, nil)
	descFELimit = prometheus.NewDesc("vipd_frontend_limit_sessions",
		"Deprecated, removed in the next release: use haproxy_frontend_limit_sessions. Cap on concurrent client connections (0: none).", []string{"frontend"}, nil)
	descFEDenied = prometheus.NewDesc("vipd_frontend_limit_sessions_denied_total",
		"Client connections refused because the cap was reached.", []string{"frontend"}, nil)
	descFESourceLimit = prometheus.NewDesc("vipd_frontend_limit_sessions_per_source",
		"Cap on concurrent client connections from one client address (0: none).", []string{"frontend"}, nil)
	descFESourceDenied = prometheus.NewDesc("vipd_frontend_refused_per_source_total",
		"Client connections reset because their address was at the per-source cap.", []string{"frontend"}, nil)
	descFETimedOut = prometheus.NewDesc("vipd_frontend_timeouts_total",
		"Client sessions the proxy closed by a timeout, by reason (first_byte_timeout, half_closed_timeout, idle_timeout).", []string{"frontend", "reason"}, nil)
	descFEBytesIn = prometheus.NewDesc("vipd_frontend_bytes_in_total",
		"Deprecated, removed in the next release: use haproxy_frontend_bytes_in_total. Bytes received from clients.", []string{"frontend"}, nil)
	descFEBytesOut = prometheus.NewDesc("vipd_frontend_bytes_out_total",
		"Deprecated, removed in the next release: use haproxy_frontend_bytes_out_total. Bytes sent to clients.", []string{"frontend"}, nil)
	descFEErrors = prometheus.NewDesc("vipd_frontend_connection_errors_total",
		"Client connections that failed (no backend reachable, accept errors).", []string{"frontend"}, nil)

	descBEUp = prometheus.NewDesc("vipd_backend_up",
		"Deprecated, removed in the next release: use haproxy_server_status. 1 when the backend is UP according to its health checks.", []string{"backend"}, nil)
	descBECheckFail = prometheus.NewDesc("vipd_backend_check_failures_total",
		"Deprecated, removed in the next release: use haproxy_server_check_failures_total. Failed health checks (active and passive).", []string{"backend"}, nil)
	descBEUpDown = prometheus.NewDesc("vipd_backend_check_up_down_total",
		"Deprecated, removed in the next release: use haproxy_server_check_up_down_total. UP/DOWN transitions of the backend.", []string{"backend"}, nil)
	descBELastChange = prometheus.NewDesc("vipd_backend_check_last_change_seconds",
		"Deprecated, removed in the next release: use haproxy_server_check_last_change_seconds. Seconds since the backend's last UP/DOWN change.", []string{"backend"}, nil)
	descBECheckDur = prometheus.NewDesc("vipd_backend_check_duration_seconds",
		"Deprecated, removed in the next release: use haproxy_server_check_duration_seconds. Duration of the last health check.", []string{"backend"}, nil)
	descBECur = prometheus.NewDesc("vipd_backend_current_sessions",
		"Deprecated, removed in the next release: use haproxy_server_current_sessions. Current connections to the backend.", []string{"backend"}, nil)
	descBETotal = prometheus.NewDesc("vipd_backend_sessions_total",
		"Deprecated, removed in the next release: use haproxy_server_sessions_total. Connections made to the backend.", []string{"backend"}, nil)
	descBEConnErr = prometheus.NewDesc("vipd_backend_connection_errors_total",
		"Deprecated, removed in the next release: use haproxy_server_connection_errors_total. Failed dials to the backend.", []string{"backend"}, nil)
	descBERetry = prometheus.NewDesc("vipd_backend_retry_warnings_total",
		"Deprecated, removed in the next release: use haproxy_server_retry_warnings_total. Dials retried on another backend after this one failed.", []string{"backend"}, nil)
	descBEBytesIn = prometheus.NewDesc("vipd_backend_bytes_in_total",
		"Deprecated, removed in the next release: use haproxy_server_bytes_in_total. Bytes sent to the backend (client to server).", []string{"backend"}, nil)
	descBEBytesOut = prometheus.NewDesc("vipd_backend_bytes_out_total",
		"Deprecated, removed in the next release: use haproxy_server_bytes_out_total. Bytes received from the backend (server to client).", []string{"backend"}, nil)
	descBackendsUp = prometheus.NewDesc("vipd_backends_up",
		"Deprecated, removed in the next release: use haproxy_backend_active_servers. Number of backends UP.", nil, nil)
	descBackends = prometheus.NewDesc("vipd_backends",
		"Number of configured backends.", nil, nil)

	descClusterMembers = prometheus.NewDesc("vipd_cluster_members",
		"LB nodes alive in the gossip cluster, this one included.", nil, nil)
	descClusterMemberAlive = prometheus.NewDesc("vipd_cluster_member_alive",
		"1 when the member is alive on the gossip path.", []string{"member"}, nil)
	descClusterAlarm = prometheus.NewDesc("vipd_cluster_alarm",
		"1 while the cluster condition is active.", []string{"kind"}, nil)
)

var allDescs = []*prometheus.Desc{
	descBuildInfo, descStartTime,
	descVRRPState, descVRRPPriority, descVRRPEffPriority, descVRRPHoldsVIP, descVRRPMaintenance, descVRRPLastChange,
	descVRRPTransitions, descVRRPAdvertsSent, descVRRPAdvertsRecv, descVRRPDropped, descVRRPGARPs,
	descVRRPSourceTable, descVRRPSources,
	descVRRPFaults,
	descFEListening, descFECur, descFETotal, descFELimit, descFEDenied, descFEBytesIn, descFEBytesOut,
	descFEErrors, descFESourceLimit, descFESourceDenied, descFETimedOut,
	descBEUp, descBECheckFail, descBEUpDown, descBELastChange, descBECheckDur, descBECur, descBETotal,
	descBEConnErr, descBERetry, descBEBytesIn, descBEBytesOut, descBackendsUp, descBackends,
	descClusterMembers, descClusterMemberAlive, descClusterAlarm,
}

// collector turns one Snapshot per scrape into constant metrics, so the
// numbers are counted once, by the packages that own them.
type collector struct {
	src Source
	log *slog.Logger
}

func newCollector(src Source, log *slog.Logger) *collector {
	return &collector{src: src, log: log}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
	for _, d := range haDescs {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Snapshot()
	now := s.Time
	if now.IsZero() {
		now = time.Now()
	}
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	counter := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}

	gauge(descBuildInfo, 1, s.Version, s.Node)
	if !s.Started.IsZero() {
		gauge(descStartTime, float64(s.Started.UnixNano())/1e9)
	}

	v := s.VRRP
	for _, st := range vrrpStates {
		gauge(descVRRPState, b2f(v.State == st), st)
	}
	if v.State != "" && !slices.Contains(vrrpStates, v.State) {
		gauge(descVRRPState, 1, v.State)
	}
	gauge(descVRRPPriority, float64(v.Priority))
	gauge(descVRRPEffPriority, float64(v.EffectivePriority))
	gauge(descVRRPHoldsVIP, b2f(v.HoldsVIP))
	gauge(descVRRPMaintenance, b2f(v.Maintenance))
	if !v.Since.IsZero() {
		gauge(descVRRPLastChange, max(0, now.Sub(v.Since).Seconds()))
	}
	counter(descVRRPTransitions, v.TransitionsTotal)
	counter(descVRRPAdvertsSent, v.AdvertsSent)
	counter(descVRRPAdvertsRecv, v.AdvertsReceived)
	for _, reason := range sortedKeys(v.Drops) {
		counter(descVRRPDropped, v.Drops[reason], reason)
	}
	counter(descVRRPGARPs, v.GARPsSent)
	for _, ev := range sortedKeys(v.SourceTable) {
		counter(descVRRPSourceTable, v.SourceTable[ev], ev)
	}
	gauge(descVRRPSources, float64(v.SourcesBound))
	gauge(descVRRPFaults, float64(len(v.Faults)))

	if f := s.Frontend; f != nil {
		name := f.Listen
		gauge(descFEListening, b2f(f.Listening), name)
		gauge(descFECur, float64(f.CurrentConns), name)
		counter(descFETotal, f.TotalConns, name)
		gauge(descFELimit, float64(f.MaxConns), name)
		counter(descFEDenied, f.RefusedByCap, name)
		counter(descFEBytesIn, f.BytesIn, name)
		counter(descFEBytesOut, f.BytesOut, name)
		counter(descFEErrors, f.Errors, name)
		gauge(descFESourceLimit, float64(f.MaxConnsPerSource), name)
		counter(descFESourceDenied, f.RefusedPerSource, name)
		for _, reason := range sortedKeys(f.TimedOut) {
			counter(descFETimedOut, f.TimedOut[reason], name, reason)
		}
	}

	seen := make(map[string]bool, len(s.Backends))
	uniq := make([]BackendView, 0, len(s.Backends))
	up := 0
	for _, b := range s.Backends {
		if seen[b.Addr] {
			c.log.Warn("metrics: duplicate backend in snapshot, exported once", "backend", b.Addr)
			continue
		}
		seen[b.Addr] = true
		uniq = append(uniq, b)
		if b.Up {
			up++
		}
		a := b.Addr
		gauge(descBEUp, b2f(b.Up), a)
		counter(descBECheckFail, b.CheckFailures, a)
		counter(descBEUpDown, b.Transitions, a)
		if !b.Since.IsZero() {
			gauge(descBELastChange, max(0, now.Sub(b.Since).Seconds()), a)
		}
		if !b.LastCheck.IsZero() {
			gauge(descBECheckDur, b.LastLatency.Seconds(), a)
		}
		gauge(descBECur, float64(b.CurrentConns), a)
		counter(descBETotal, b.TotalConns, a)
		counter(descBEConnErr, b.ConnErrors, a)
		counter(descBERetry, b.Retries, a)
		counter(descBEBytesIn, b.BytesIn, a)
		counter(descBEBytesOut, b.BytesOut, a)
	}
	if s.Frontend != nil || len(s.Backends) > 0 {
		gauge(descBackendsUp, float64(up))
		gauge(descBackends, float64(len(seen)))
	}
	collectHAProxy(s, uniq, now, gauge, counter)

	if cl := s.Cluster; cl != nil && cl.Enabled {
		alive := 0
		seenM := make(map[string]bool, len(cl.Members))
		for _, m := range cl.Members {
			if m.Alive || m.Self {
				alive++
			}
			if seenM[m.Name] {
				continue
			}
			seenM[m.Name] = true
			gauge(descClusterMemberAlive, b2f(m.Alive || m.Self), m.Name)
		}
		gauge(descClusterMembers, float64(alive))
		active := make(map[string]bool)
		for _, a := range cl.Alarms {
			active[a.Kind] = true
		}
		for _, k := range alarmKinds {
			gauge(descClusterAlarm, b2f(active[k]), k)
		}
		for _, k := range sortedKeys(active) {
			if !slices.Contains(alarmKinds, k) {
				gauge(descClusterAlarm, 1, k)
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
