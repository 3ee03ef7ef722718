package config

import (
	"os"
	"time"

	"github.com/vipd-project/vipd/pkg/cluster"
	"github.com/vipd-project/vipd/pkg/logx"
	"github.com/vipd-project/vipd/pkg/stats"
)

// The defaults of every setting live here and nowhere else (the stats and cluster ones are
// named constants of those packages, which their constructors also use); deploy/vipd.yaml
// shows them. A
// default replaces only an absent key (yamlpos.Lines.Present): a key written as 0 keeps its 0 and is
// judged by the using package's Validate ("vrrp.priority: ... got 0"), never silently replaced.

// Defaults that other code names (bootstrap renders them, tests compare against them).
const (
	DefaultVRID           = 51
	DefaultPriority       = 100
	DefaultVersion        = 3
	DefaultAdvertInterval = 200 * time.Millisecond // v3; v2 counts whole seconds: 1 s
	DefaultControlSocket  = "/run/vipd/vipd.sock"
	DefaultStateFile      = "/var/lib/vipd/state.json"
)

func boolPtr(b bool) *bool             { return &b }
func intPtr(i int) *int                { return &i }
func durPtr(d time.Duration) *Duration { v := Duration(d); return &v }

func (c *Config) setDefaults() {
	absent := func(field string) bool { return !c.lines.Present(field) }
	str := func(field string, p *string, def string) {
		if absent(field) {
			*p = def
		}
	}
	num := func(field string, p *int, def int) {
		if absent(field) {
			*p = def
		}
	}
	dur := func(field string, p *Duration, def time.Duration) {
		if absent(field) {
			*p = Duration(def)
		}
	}
	if absent("node_name") {
		if h, err := os.Hostname(); err == nil {
			c.NodeName = h
		}
	}
	str("log_level", &c.LogLevel, "info")
	str("log_format", &c.LogFormat, logx.FormatText)

	v := &c.VRRP
	num("vrrp.vrid", &v.VRID, DefaultVRID)
	num("vrrp.priority", &v.Priority, DefaultPriority)
	num("vrrp.version", &v.Version, DefaultVersion)
	if v.Version == 2 {
		// VRRPv2 counts whole seconds: 1 s, as Keepalived's advert_int 1.
		dur("vrrp.advert_interval", &v.AdvertInterval, time.Second)
	} else {
		// v3: 200 ms, so a crashed master is replaced in about 0.73 s (3 intervals + skew).
		dur("vrrp.advert_interval", &v.AdvertInterval, DefaultAdvertInterval)
	}
	if v.Preempt == nil {
		v.Preempt = boolPtr(true)
	}
	if v.TrackInterface == nil {
		v.TrackInterface = boolPtr(true)
	}
	if v.SourceMACCheck == nil {
		v.SourceMACCheck = boolPtr(true)
	}
	if v.AuthHMACKeyFile != "" {
		num("vrrp.auth_hmac_key_id", &v.AuthHMACKeyID, 1)
	}
	// 5 GARPs 300 ms apart: the burst spans more than Linux's 1 s neighbour locktime.
	num("vrrp.garp.count", &v.GARP.Count, 5)
	dur("vrrp.garp.interval", &v.GARP.Interval, 300*time.Millisecond)
	if v.GARP.Refresh == nil {
		v.GARP.Refresh = durPtr(60 * time.Second)
	}

	if p := c.Proxy; p != nil {
		str("proxy.listen", &p.Listen, ":6443")
		str("proxy.balance", &p.Balance, "roundrobin")
		dur("proxy.connect_timeout", &p.ConnectTimeout, time.Second)
		if p.Retries == nil {
			p.Retries = intPtr(2)
		}
		if p.MaxConns == nil {
			p.MaxConns = intPtr(20000)
		}
		// A client that has not sent its first byte after 10s has given up on its own TLS
		// handshake (client-go's TLSHandshakeTimeout is 10s): it only holds a slot.
		dur("proxy.first_byte_timeout", &p.FirstByteTimeout, 10*time.Second)
		// 2 x the apiserver's default --request-timeout (60s): a client that half-closed
		// after its request still gets the answer, or the apiserver's timeout error.
		dur("proxy.half_closed_timeout", &p.HalfClosedTimeout, 2*time.Minute)
		if p.MaxConnsPerSource == nil {
			// One busy node holds ~1-10 (client-go multiplexes on HTTP/2): 1000 leaves
			// room for a NAT in front of ~100 nodes, and one host alone can take at most a
			// 20th of max_conns.
			p.MaxConnsPerSource = intPtr(1000)
		}
		// TCP keepalive idle time on both sides: a dead peer is dropped after ~2 x this.
		dur("proxy.keepalive", &p.KeepAlive, 15*time.Second)
		if p.DrainGrace == nil {
			p.DrainGrace = durPtr(30 * time.Second)
		}
		if p.MinHealthyBackends == nil {
			p.MinHealthyBackends = intPtr(1)
		}
		if p.TrackWeight == nil {
			p.TrackWeight = intPtr(50)
		}
	}

	// HTTPS GET /readyz, as README and deploy/vipd.yaml document: a live port in front of a
	// dead apiserver is DOWN. HAProxy's timings: inter 2s, rise 2, fall 3.
	h := &c.Health
	str("health.type", &h.Type, "https")
	str("health.path", &h.Path, "/readyz")
	num("health.expect_status", &h.ExpectStatus, 200)
	dur("health.interval", &h.Interval, 2*time.Second)
	fast := 500 * time.Millisecond
	if h.Interval.D() > 0 && fast > h.Interval.D() {
		fast = h.Interval.D()
	}
	dur("health.fast_interval", &h.FastInterval, fast)
	dur("health.timeout", &h.Timeout, time.Second)
	num("health.rise", &h.Rise, 2)
	num("health.fall", &h.Fall, 3)
	if h.Jitter == nil {
		j := 0.1
		h.Jitter = &j
	}
	if h.TLS.InsecureSkipVerify == nil {
		// Without a CA the check verifies nothing: kubeadm's serving certificate is not issued
		// for the LB's view of the masters, and /readyz answers anonymous requests.
		h.TLS.InsecureSkipVerify = boolPtr(h.TLS.CAFile == "")
	}

	str("stats.listen", &c.Stats.Listen, stats.DefaultListen)
	dur("stats.refresh", &c.Stats.Refresh, stats.DefaultRefresh)
	str("control_socket", &c.ControlSocket, DefaultControlSocket)
	str("state_file", &c.StateFile, DefaultStateFile)

	cl := &c.Cluster
	str("cluster.bind", &cl.Bind, cluster.DefaultBind)
	str("cluster.split_brain", &cl.SplitBrain, cluster.SplitBrainNone)
	num("cluster.blocked_vrrp_intervals", &cl.BlockedVRRPIntervals, cluster.DefaultBlockedVRRPIntervals)
	if cl.ConnReset == nil {
		cl.ConnReset = boolPtr(true)
	}
	num("cluster.conn_table_max", &cl.ConnTableMax, cluster.DefaultConnTableMax)
	num("cluster.conn_reset_rate", &cl.ConnResetRate, cluster.DefaultConnResetRate)
}
