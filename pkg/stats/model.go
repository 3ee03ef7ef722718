package stats

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Snapshot is everything /stats, /stats.json and /metrics show, read once per
// request from a Source. It is a plain data model of its own: the daemon
// converts the snapshots of pkg/vrrp, pkg/health, pkg/tcpproxy and
// pkg/cluster into it, so this package imports none of them.
//
// The JSON encoding (/stats.json) uses the snake_case names in the struct
// tags; they are a stable interface for scripts and tests. Times are RFC 3339
// strings and are omitted when zero; durations are float seconds in fields
// whose name ends in _seconds.
type Snapshot struct {
	// Node is this node's name (node_name in the config).
	Node string `json:"node"`
	// Version is vipd's version.
	Version string `json:"version"`
	// Time is when the snapshot was taken; the server sets it when zero.
	Time time.Time `json:"time"`
	// Started is when the daemon started (for the uptime); optional.
	Started time.Time `json:"started,omitzero"`

	VRRP VRRPView `json:"vrrp"`
	// Frontend is nil when the proxy is not configured (VRRP only).
	Frontend *FrontendView `json:"frontend,omitempty"`
	// Backends are the proxy's backends, in configuration order.
	Backends []BackendView `json:"backends"`
	// Cluster is nil when gossip is not configured.
	Cluster *ClusterView `json:"cluster,omitempty"`
}

// MarshalJSON encodes s with [] and {} instead of null for empty lists and
// maps, whoever marshals it (the stats server or the control socket).
func (s Snapshot) MarshalJSON() ([]byte, error) {
	normalize(&s)
	type plain Snapshot // no MarshalJSON method: no recursion
	return json.Marshal(plain(s))
}

// normalize replaces nil slices and maps by empty ones so that JSON readers
// get [] and {} instead of null.
func normalize(s *Snapshot) {
	if s.Backends == nil {
		s.Backends = []BackendView{}
	}
	v := &s.VRRP
	if v.VIPs == nil {
		v.VIPs = []string{}
	}
	if v.Transitions == nil {
		v.Transitions = []Transition{}
	}
	if v.Drops == nil {
		v.Drops = map[string]uint64{}
	}
	if v.Faults == nil {
		v.Faults = []string{}
	}
	if v.SourceTable == nil {
		v.SourceTable = map[string]uint64{}
	}
	if f := s.Frontend; f != nil && f.TimedOut == nil {
		ff := *f
		ff.TimedOut = map[string]uint64{}
		s.Frontend = &ff
	}
	if c := s.Cluster; c != nil {
		cc := *c
		if cc.Members == nil {
			cc.Members = []MemberView{}
		}
		if cc.Alarms == nil {
			cc.Alarms = []Alarm{}
		}
		s.Cluster = &cc
	}
}

// VRRP states as they appear in VRRPView.State, MemberView.VRRPState and the
// vipd_vrrp_state{state} metric (Keepalived's spelling).
const (
	StateInit   = "INIT"
	StateBackup = "BACKUP"
	StateMaster = "MASTER"
	StateFault  = "FAULT"
)

// VRRPStates lists the states for which vipd_vrrp_state is always exported.
var vrrpStates = []string{StateInit, StateBackup, StateMaster, StateFault}

// VRRPView is this node's VRRP instance.
type VRRPView struct {
	// State is one of INIT, BACKUP, MASTER, FAULT.
	State string `json:"state"`
	// Priority is the configured priority; EffectivePriority is after
	// tracking (lowered when the proxy cannot serve).
	Priority          int `json:"priority"`
	EffectivePriority int `json:"effective_priority"`
	// MasterAddr is the current master's address ("" when unknown); when
	// this node is master it is this node's own address.
	MasterAddr string `json:"master_addr"`
	// VIPs are the virtual addresses, with prefix length.
	VIPs []string `json:"vips"`
	// HoldsVIP reports whether the VIPs are on this host's interface now.
	HoldsVIP       bool     `json:"holds_vip"`
	Interface      string   `json:"interface"`
	VRID           int      `json:"vrid"`
	ProtoVersion   int      `json:"proto_version"`
	AdvertInterval Duration `json:"advert_interval_seconds"`
	// Since is when the current state was entered.
	Since time.Time `json:"since,omitzero"`
	// Transitions are the most recent state changes, oldest first (the
	// daemon keeps a bounded list); TransitionsTotal counts all of them.
	Transitions      []Transition `json:"transitions"`
	TransitionsTotal uint64       `json:"transitions_total"`
	AdvertsSent      uint64       `json:"adverts_sent"`
	AdvertsReceived  uint64       `json:"adverts_received"`
	GARPsSent        uint64       `json:"garps_sent"`
	// Drops counts received packets dropped, by reason (for example "ttl",
	// "checksum", "auth", "vrid", "version", "interval", "short").
	Drops map[string]uint64 `json:"drops"`
	// SourceTable counts what the source MAC check's bounded table of sources did:
	// source_table_full (a new source refused), source_evicted (the least recently heard
	// source forgotten to make room), source_expired (a binding not confirmed for its TTL
	// forgotten). SourcesBound is how many sources it holds now (at most 64).
	SourceTable  map[string]uint64 `json:"source_table"`
	SourcesBound int               `json:"sources_bound"`
	// Faults are the current reasons for FAULT or lowered priority (for
	// example "link down on ens33", "0/3 backends UP (min 1)").
	Faults []string `json:"faults"`
	// Maintenance: `vipd maintenance on` holds this host BACKUP until it is turned off.
	Maintenance bool `json:"maintenance,omitempty"`
}

// Transition is one VRRP state change.
type Transition struct {
	From   string    `json:"from"`
	To     string    `json:"to"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// FrontendView is the proxy's listener.
type FrontendView struct {
	Listen string `json:"listen"`
	// Listening is false when the listener could not be bound (or failed).
	Listening    bool   `json:"listening"`
	CurrentConns int64  `json:"current_conns"`
	TotalConns   uint64 `json:"total_conns"`
	// RefusedByCap counts connections closed because MaxConns was reached.
	RefusedByCap uint64 `json:"refused_by_cap"`
	// MaxConns is the cap on concurrent connections (0: none).
	MaxConns int64 `json:"max_conns"`
	// RefusedPerSource counts connections reset because their client address was at
	// MaxConnsPerSource (the per-address cap, 0: none).
	RefusedPerSource  uint64 `json:"refused_per_source"`
	MaxConnsPerSource int64  `json:"max_conns_per_source"`
	// TimedOut counts sessions the proxy closed by a timeout, by reason: first_byte_timeout
	// (the client never spoke), half_closed_timeout (one side closed its half, then
	// silence), idle_timeout.
	TimedOut map[string]uint64 `json:"timed_out"`
	// BytesIn are bytes received from clients, BytesOut bytes sent to them.
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
	// Errors counts client connections that failed (no backend could be
	// reached, accept errors).
	Errors uint64 `json:"errors"`
}

// Backend statuses for BackendView.Status.
const (
	BackendUp      = "UP"
	BackendDown    = "DOWN"
	BackendUnknown = "UNKNOWN" // not checked yet
	BackendDrain   = "DRAIN"   // drained (vipd backend drain, or weight 0) or removed by a reload: no new connections
	BackendMaint   = "MAINT"   // disabled (vipd backend disable): no new connections, open ones closed
)

// BackendView is one proxy backend with its health.
type BackendView struct {
	// Addr is "host:port" as configured.
	Addr string `json:"addr"`
	// Up is what the proxy uses: true when the health checker says UP.
	Up bool `json:"up"`
	// Status refines Up for display: UP, DOWN, UNKNOWN (never checked),
	// DRAIN or MAINT (the administrative state wins over health). Empty means
	// UP or DOWN according to Up.
	Status string `json:"status,omitempty"`
	// Admin is the run-time administrative state set over the control
	// socket (vipd backend drain/disable/enable): READY, DRAIN or MAINT.
	// Weight is the backend's weight (0-256, 1 unless set by vipd backend
	// weight). DrainEnds is, while draining with a grace, when the open
	// connections will be closed.
	Admin     string    `json:"admin,omitempty"`
	Weight    int       `json:"weight"`
	DrainEnds time.Time `json:"drain_ends,omitzero"`
	// Since is when the backend entered its current state.
	Since time.Time `json:"since,omitzero"`
	// LastCheck is when the last check finished; LastResult says how it
	// went ("HTTP 200", "L4OK", "dial tcp ...: connection refused");
	// LastLatency is how long it took.
	LastCheck   time.Time `json:"last_check,omitzero"`
	LastResult  string    `json:"last_result"`
	LastLatency Duration  `json:"last_latency_seconds"`
	// CheckFailures counts failed checks (active and passive); Transitions
	// counts UP<->DOWN changes.
	CheckFailures uint64 `json:"check_failures"`
	Transitions   uint64 `json:"transitions"`
	CurrentConns  int64  `json:"current_conns"`
	TotalConns    uint64 `json:"total_conns"`
	// BytesIn are bytes sent to the backend (client to server); BytesOut
	// bytes received from it (server to client), as HAProxy counts them.
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
	// ConnErrors counts failed dials to the backend; Retries counts dials
	// retried on another backend after one to this backend failed.
	ConnErrors uint64 `json:"conn_errors"`
	Retries    uint64 `json:"retries"`
}

// StatusText is Status, or UP/DOWN from Up when Status is empty.
func (b BackendView) StatusText() string {
	if b.Status != "" {
		return b.Status
	}
	if b.Up {
		return BackendUp
	}
	return BackendDown
}

// ClusterView is the LB tier as this node sees it through gossip.
type ClusterView struct {
	Enabled bool `json:"enabled"`
	// Members includes this node (Self true).
	Members []MemberView `json:"members"`
	// Alarms are the conditions active now.
	Alarms []Alarm `json:"alarms"`
}

// MemberView is one LB node of the tier.
type MemberView struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	Self  bool   `json:"self"`
	Alive bool   `json:"alive"`
	// VRRPState, Priority (effective) and HoldsVIP as the member reports them.
	VRRPState string `json:"vrrp_state"`
	Priority  int    `json:"priority"`
	HoldsVIP  bool   `json:"holds_vip"`
	// Backends is the member's view of each backend: address -> UP.
	Backends map[string]bool `json:"backends"`
	// ConfigFingerprint is a hash of the settings that must match.
	ConfigFingerprint string    `json:"config_fingerprint"`
	Version           string    `json:"version"`
	LastSeen          time.Time `json:"last_seen,omitzero"`
}

// Alarm kinds (Alarm.Kind and the vipd_cluster_alarm{kind} label).
const (
	AlarmSplitBrain          = "split_brain"
	AlarmBlockedVRRP         = "blocked_vrrp"
	AlarmConfigDrift         = "config_drift"
	AlarmBackendDisagreement = "backend_disagreement"
	AlarmPeerLost            = "peer_lost"
	AlarmGossipKey           = "gossip_key"
)

var alarmKinds = []string{AlarmSplitBrain, AlarmBlockedVRRP, AlarmConfigDrift, AlarmBackendDisagreement, AlarmPeerLost, AlarmGossipKey}

// Alarm is one active cluster condition.
type Alarm struct {
	Kind    string    `json:"kind"`
	Since   time.Time `json:"since,omitzero"`
	Message string    `json:"message"`
}

// Source gives the current Snapshot. It is called once per request or
// scrape, from any goroutine.
type Source interface {
	Snapshot() Snapshot
}

// SourceFunc adapts a function to Source.
type SourceFunc func() Snapshot

// Snapshot calls f.
func (f SourceFunc) Snapshot() Snapshot { return f() }

// Duration is a time.Duration that encodes in JSON as float seconds (and
// decodes from float seconds or a Go duration string such as "1.5s").
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Seconds returns d in seconds.
func (d Duration) Seconds() float64 { return time.Duration(d).Seconds() }

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON encodes d as seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, d.Seconds(), 'f', -1, 64), nil
}

// UnmarshalJSON decodes seconds (a number) or a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("duration %s: want seconds or a duration string", b)
	}
	if math.IsNaN(f) || math.Abs(f) > math.MaxInt64/float64(time.Second) {
		return fmt.Errorf("duration %s: out of range", b)
	}
	*d = Duration(f * float64(time.Second))
	return nil
}
