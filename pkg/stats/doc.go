// Package stats owns vipd's HTTP server on stats.listen (default :8404):
//
//	/stats        HTML page for a person: this node's VRRP state and priority,
//	              the VIP and who holds it, backends, frontend, the LB tier
//	              (gossip) with its alarms, recent VRRP transitions.
//	              Auto-refreshes every stats.refresh (JS, or meta refresh
//	              without JS). /stats?format=json is /stats.json.
//	/stats.json   the Snapshot as JSON (field names below).
//	/metrics      Prometheus text (client_golang, own registry): the vipd_*
//	              metrics read from one Snapshot per scrape, plus the Go and
//	              process collectors.
//	/healthz      200 "ok" when Config.Healthz returns nil, else 503 with why.
//
// Optional basic auth (Config.BasicAuth) protects /stats and /stats.json
// only, so Prometheus and liveness probes need no password.
//
// The package has its own plain data model (Snapshot) and imports none of
// pkg/vrrp, pkg/health, pkg/tcpproxy or pkg/cluster: the daemon gives a
// Source that converts their snapshots. Wiring:
//
//	srv, err := stats.New(stats.Config{
//		Listen:    cfg.Stats.Listen,
//		Refresh:   cfg.Stats.Refresh,
//		BasicAuth: auth,            // nil, or {Username, Password read from password_file}
//		Healthz:   daemon.Healthy, // func() error
//	}, stats.SourceFunc(daemon.StatsSnapshot), log)
//	go func() { errc <- srv.Run(ctx) }() // returns nil after ctx is done
//	<-srv.Ready()                        // bound (sd_notify READY after this)
//
// # JSON fields (/stats.json)
//
// Stable snake_case names; times are RFC 3339 and omitted when unknown;
// *_seconds are float seconds; lists are [] rather than null.
//
//	node, version, time, started
//	vrrp: state (INIT|BACKUP|MASTER|FAULT), priority, effective_priority,
//	      master_addr, vips[], holds_vip, interface, vrid, proto_version,
//	      advert_interval_seconds, since, transitions[]{from,to,at,reason},
//	      transitions_total, adverts_sent, adverts_received, garps_sent,
//	      drops{reason: count}, source_table{source_table_full|
//	      source_evicted|source_expired: count}, sources_bound, faults[]
//	frontend (absent without a proxy): listen, listening, current_conns,
//	      total_conns, refused_by_cap, max_conns, refused_per_source,
//	      max_conns_per_source, timed_out{first_byte_timeout|
//	      half_closed_timeout|idle_timeout: count}, bytes_in, bytes_out, errors
//	backends[]: addr, up, status (UP|DOWN|UNKNOWN|DRAIN, optional), since,
//	      last_check, last_result, last_latency_seconds, check_failures,
//	      transitions, current_conns, total_conns, bytes_in, bytes_out,
//	      conn_errors, retries
//	cluster (absent without gossip): enabled, members[]{name, addr, self,
//	      alive, vrrp_state, priority, holds_vip, backends{addr: up},
//	      config_fingerprint, version, last_seen},
//	      alarms[]{kind (split_brain|blocked_vrrp|config_drift|
//	      backend_disagreement|peer_lost), since, message}
//
// Bytes "in" are client to server and "out" server to client, for the
// frontend and the backends alike (HAProxy's convention).
//
// # Metrics (/metrics)
//
//	vipd_build_info{version,node} 1, vipd_start_time_seconds
//	vipd_vrrp_state{state} (1 for the current of INIT/BACKUP/MASTER/FAULT),
//	vipd_vrrp_priority, vipd_vrrp_effective_priority, vipd_vrrp_holds_vip,
//	vipd_vrrp_state_last_change_seconds, vipd_vrrp_transitions_total,
//	vipd_vrrp_adverts_sent_total, vipd_vrrp_adverts_received_total,
//	vipd_vrrp_packets_dropped_total{reason}, vipd_vrrp_garps_sent_total,
//	vipd_vrrp_faults, vipd_vrrp_source_table_entries,
//	vipd_vrrp_source_table_events_total{event} (source_table_full,
//	source_evicted, source_expired)
//	vipd_frontend_{listening,current_sessions,limit_sessions,
//	limit_sessions_per_source}{frontend},
//	vipd_frontend_{sessions,limit_sessions_denied,refused_per_source,
//	bytes_in,bytes_out,connection_errors}_total{frontend},
//	vipd_frontend_timeouts_total{frontend,reason} (first_byte_timeout,
//	half_closed_timeout, idle_timeout)
//	vipd_backend_{up,current_sessions,check_last_change_seconds,
//	check_duration_seconds}{backend},
//	vipd_backend_{check_failures,check_up_down,sessions,connection_errors,
//	retry_warnings,bytes_in,bytes_out}_total{backend},
//	vipd_backends_up, vipd_backends
//	vipd_cluster_members, vipd_cluster_member_alive{member},
//	vipd_cluster_alarm{kind} (0/1 for every kind)
//
// deploy/grafana-dashboard.json and deploy/prometheus-alerts.yaml use these.
package stats
