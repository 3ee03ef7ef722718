// Package config owns vipd's YAML configuration file: its schema, strict decoding (an
// unknown key is an error), defaults, and validation whose messages name the field and the
// line it is on. It knows nothing of how the daemon uses the values; cmd/vipd maps them onto
// the options of pkg/vrrp, pkg/health, pkg/tcpproxy, pkg/stats and pkg/cluster.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vipd-project/vipd/pkg/logx"
)

// DefaultPath is where vipd looks for its configuration when -c is not given.
const DefaultPath = "/etc/vipd/vipd.yaml"

// Config is the whole vipd configuration file.
type Config struct {
	NodeName      string   `yaml:"node_name"`
	LogLevel      string   `yaml:"log_level"`
	LogFormat     string   `yaml:"log_format"`
	VRRP          VRRP     `yaml:"vrrp"`
	Proxy         *Proxy   `yaml:"proxy"`
	Health        Health   `yaml:"health"`
	Stats         Stats    `yaml:"stats"`
	ControlSocket string   `yaml:"control_socket"`
	Cluster       Cluster  `yaml:"cluster"`
	path          string   // file it was read from
	lines         lineMap  // field path -> line
	Warnings      []string `yaml:"-"`
}

// VRRP is the election section.
type VRRP struct {
	Interface      string   `yaml:"interface"`
	VRID           int      `yaml:"vrid"`
	Priority       int      `yaml:"priority"`
	Version        int      `yaml:"version"`
	AdvertInterval Duration `yaml:"advert_interval"`
	// MaxPeerAdvertInterval bounds the advert interval vipd accepts from another router
	// (VRRPv3). 0: 3 x advert_interval, at least 1s (pkg/vrrp owns that default).
	MaxPeerAdvertInterval Duration `yaml:"max_peer_advert_interval"`
	Preempt               *bool    `yaml:"preempt"`
	PreemptDelay          Duration `yaml:"preempt_delay"`
	VIPs                  []string `yaml:"vips"`
	UnicastPeers          []string `yaml:"unicast_peers"`
	UnicastSource         string   `yaml:"unicast_source"`
	AuthPass              string   `yaml:"auth_pass"`
	AuthPassFile          string   `yaml:"auth_pass_file"`
	TrackInterface        *bool    `yaml:"track_interface"`
	SourceMACCheck        *bool    `yaml:"source_mac_check"`
	GARP                  GARP     `yaml:"garp"`
}

// GARP controls gratuitous ARP announcements of the VIP.
type GARP struct {
	Count    int       `yaml:"count"`
	Interval Duration  `yaml:"interval"`
	Refresh  *Duration `yaml:"refresh"`
}

// Proxy is the TCP load balancer section. A nil *Proxy means VRRP only.
type Proxy struct {
	Listen              string    `yaml:"listen"`
	Backends            []string  `yaml:"backends"`
	Balance             string    `yaml:"balance"`
	ConnectTimeout      Duration  `yaml:"connect_timeout"`
	Retries             *int      `yaml:"retries"`
	MaxConns            *int      `yaml:"max_conns"`
	IdleTimeout         Duration  `yaml:"idle_timeout"`
	KeepAlive           Duration  `yaml:"keepalive"`
	DrainGrace          *Duration `yaml:"drain_grace"`
	RemovedBackendGrace Duration  `yaml:"removed_backend_grace"`
	MinHealthyBackends  *int      `yaml:"min_healthy_backends"`
	TrackWeight         *int      `yaml:"track_weight"`
}

// Health is the active check section for the proxy's backends.
type Health struct {
	Type            string   `yaml:"type"`
	Path            string   `yaml:"path"`
	ExpectStatus    int      `yaml:"expect_status"`
	Interval        Duration `yaml:"interval"`
	FastInterval    Duration `yaml:"fast_interval"`
	Timeout         Duration `yaml:"timeout"`
	Rise            int      `yaml:"rise"`
	Fall            int      `yaml:"fall"`
	Jitter          *float64 `yaml:"jitter"`
	TLS             TLS      `yaml:"tls"`
	BearerTokenFile string   `yaml:"bearer_token_file"`
	AuthErrorsAreUp bool     `yaml:"auth_errors_are_up"`
}

// TLS configures the HTTPS health check's client.
type TLS struct {
	CAFile             string `yaml:"ca_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
}

// Stats is the HTTP stats, metrics and health endpoint section.
type Stats struct {
	Listen    string     `yaml:"listen"`
	BasicAuth *BasicAuth `yaml:"basic_auth"`
	Refresh   Duration   `yaml:"refresh"`
}

// BasicAuth protects /stats and /stats.json.
type BasicAuth struct {
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
}

// Cluster is the gossip section.
type Cluster struct {
	Enabled              bool     `yaml:"enabled"`
	Bind                 string   `yaml:"bind"`
	Advertise            string   `yaml:"advertise"`
	Peers                []string `yaml:"peers"`
	KeyFile              string   `yaml:"key_file"`
	SplitBrain           string   `yaml:"split_brain"`
	BlockedVRRPIntervals int      `yaml:"blocked_vrrp_intervals"`
	ConnReset            *bool    `yaml:"conn_reset"`
	ConnTableMax         int      `yaml:"conn_table_max"`
	ConnResetRate        int      `yaml:"conn_reset_rate"`
}

// Duration is a time.Duration written in Go syntax ("100ms", "2s") in YAML.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML accepts Go duration strings; a bare number is refused because its unit is
// ambiguous (Keepalived counts seconds, HAProxy milliseconds).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as 2s or 200ms", n.Line)
	}
	if n.Value == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		if _, nerr := strconv.ParseFloat(n.Value, 64); nerr == nil {
			return fmt.Errorf("line %d: %q has no unit: write %ss or %sms", n.Line, n.Value, n.Value, n.Value)
		}
		return fmt.Errorf("line %d: %q is not a duration such as 2s or 200ms", n.Line, n.Value)
	}
	if v < 0 {
		return fmt.Errorf("line %d: duration %s is negative", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration in Go syntax.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Error is one problem in the file: the field path as written in YAML ("vrrp.vips[1]"), the
// line it is on (0 when the field is absent), and what is wrong.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", loc, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Field, e.Msg)
}

// Errors is every problem found in one file.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Load reads, decodes, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, b)
}

// Parse decodes, defaults and validates a configuration. name is used in messages.
func Parse(name string, b []byte) (*Config, error) {
	c := &Config{path: name}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, Errors{decodeError(name, err)}
	}
	c.lines = lineMap{}
	c.lines.walk("", &root)
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, Errors{{File: name, Msg: "file is empty: see deploy/vipd.yaml for an example"}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return nil, Errors{decodeError(name, err)}
	}
	c.setDefaults()
	if errs := c.validate(); len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// Path is the file the configuration was read from.
func (c *Config) Path() string { return c.path }

func decodeError(name string, err error) *Error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	msg = strings.TrimSpace(msg)
	line := 0
	// yaml.v3 reports "line N: ..."; lift the first line number into Error.Line.
	if strings.HasPrefix(msg, "line ") {
		rest := msg[len("line "):]
		if i := strings.IndexByte(rest, ':'); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line = n
				msg = strings.TrimSpace(rest[i+1:])
			}
		}
	}
	msg = strings.ReplaceAll(msg, "\n  line ", "; line ")
	if strings.Contains(msg, "not found in type") {
		// "field foo not found in type config.VRRP" -> "unknown key \"foo\""
		f := strings.Fields(msg)
		if len(f) >= 2 && f[0] == "field" {
			msg = fmt.Sprintf("unknown key %q (check the spelling against deploy/vipd.yaml)", f[1])
		}
	}
	return &Error{File: name, Line: line, Msg: msg}
}

func boolPtr(b bool) *bool             { return &b }
func intPtr(i int) *int                { return &i }
func durPtr(d time.Duration) *Duration { v := Duration(d); return &v }

func (c *Config) setDefaults() {
	if c.NodeName == "" {
		if h, err := os.Hostname(); err == nil {
			c.NodeName = h
		}
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.LogFormat == "" {
		c.LogFormat = logx.FormatText
	}
	v := &c.VRRP
	if v.VRID == 0 {
		v.VRID = 51
	}
	if v.Priority == 0 {
		v.Priority = 100
	}
	if v.Version == 0 {
		v.Version = 3
	}
	if v.AdvertInterval == 0 {
		// v3: 200 ms, so a crashed master is replaced in about 0.73 s (3 intervals + skew);
		// v2 counts whole seconds: 1 s, as Keepalived's advert_int 1.
		v.AdvertInterval = Duration(200 * time.Millisecond)
		if v.Version == 2 {
			v.AdvertInterval = Duration(time.Second)
		}
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
	if v.GARP.Count == 0 {
		v.GARP.Count = 5
	}
	if v.GARP.Interval == 0 {
		v.GARP.Interval = Duration(300 * time.Millisecond)
	}
	if v.GARP.Refresh == nil {
		v.GARP.Refresh = durPtr(60 * time.Second)
	}
	if p := c.Proxy; p != nil {
		if p.Listen == "" {
			p.Listen = ":6443"
		}
		if p.Balance == "" {
			p.Balance = "roundrobin"
		}
		if p.ConnectTimeout == 0 {
			p.ConnectTimeout = Duration(time.Second)
		}
		if p.Retries == nil {
			p.Retries = intPtr(2)
		}
		if p.MaxConns == nil {
			p.MaxConns = intPtr(20000)
		}
		if p.KeepAlive == 0 {
			p.KeepAlive = Duration(15 * time.Second)
		}
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
	h := &c.Health
	if h.Type == "" {
		h.Type = "tcp"
	}
	if h.Path == "" {
		h.Path = "/readyz"
	}
	if h.ExpectStatus == 0 {
		h.ExpectStatus = 200
	}
	if h.Interval == 0 {
		h.Interval = Duration(2 * time.Second)
	}
	if h.FastInterval == 0 {
		h.FastInterval = Duration(500 * time.Millisecond)
		if h.FastInterval > h.Interval {
			h.FastInterval = h.Interval
		}
	}
	if h.Timeout == 0 {
		h.Timeout = Duration(time.Second)
	}
	if h.Rise == 0 {
		h.Rise = 2
	}
	if h.Fall == 0 {
		h.Fall = 3
	}
	if h.Jitter == nil {
		j := 0.1
		h.Jitter = &j
	}
	if c.Stats.Listen == "" {
		c.Stats.Listen = ":8404"
	}
	if c.Stats.Refresh == 0 {
		c.Stats.Refresh = Duration(5 * time.Second)
	}
	if c.ControlSocket == "" {
		c.ControlSocket = "/run/vipd/vipd.sock"
	}
	cl := &c.Cluster
	if cl.Bind == "" {
		cl.Bind = "0.0.0.0:7946"
	}
	if cl.SplitBrain == "" {
		cl.SplitBrain = "none"
	}
	if cl.BlockedVRRPIntervals == 0 {
		cl.BlockedVRRPIntervals = 3
	}
	if cl.ConnReset == nil {
		cl.ConnReset = boolPtr(true)
	}
	if cl.ConnTableMax == 0 {
		cl.ConnTableMax = 10000
	}
	if cl.ConnResetRate == 0 {
		cl.ConnResetRate = 5000
	}
}

type validator struct {
	c    *Config
	errs Errors
}

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.c.path, Line: v.c.lines.find(field), Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) validate() Errors {
	v := &validator{c: c}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		v.add("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	if err := logx.CheckFormat(c.LogFormat); err != nil {
		v.add("log_format", "%v", err)
	}
	c.validateVRRP(v)
	if c.Proxy != nil {
		c.validateProxy(v)
		c.validateHealth(v)
	}
	if _, err := listenAddr(c.Stats.Listen); err != nil {
		v.add("stats.listen", "%v", err)
	}
	if c.Stats.BasicAuth != nil {
		if c.Stats.BasicAuth.Username == "" {
			v.add("stats.basic_auth.username", "is required when basic_auth is set")
		}
		if c.Stats.BasicAuth.PasswordFile == "" {
			v.add("stats.basic_auth.password_file", "is required when basic_auth is set (a password never goes in this file)")
		}
	}
	if !strings.HasPrefix(c.ControlSocket, "/") {
		v.add("control_socket", "%q must be an absolute path", c.ControlSocket)
	}
	c.validateCluster(v)
	sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
	return v.errs
}

func (c *Config) validateVRRP(v *validator) {
	r := &c.VRRP
	if r.Interface == "" {
		v.add("vrrp.interface", "is required (the interface that carries the VIP, e.g. eth0)")
	} else if len(r.Interface) > 15 || strings.ContainsAny(r.Interface, "/ ") {
		v.add("vrrp.interface", "%q is not a valid interface name", r.Interface)
	}
	if r.VRID < 1 || r.VRID > 255 {
		v.add("vrrp.vrid", "must be 1-255, got %d", r.VRID)
	}
	if r.Priority < 1 || r.Priority > 255 {
		v.add("vrrp.priority", "must be 1-254 (or 255 for the address owner), got %d", r.Priority)
	}
	switch r.Version {
	case 2:
		if r.AdvertInterval.D()%time.Second != 0 || r.AdvertInterval.D() < time.Second || r.AdvertInterval.D() > 255*time.Second {
			v.add("vrrp.advert_interval", "VRRPv2 counts whole seconds (1s-255s), got %s", r.AdvertInterval.D())
		}
		if len(r.AuthPass) > 8 {
			v.add("vrrp.auth_pass", "is longer than 8 characters (VRRPv2 PASS carries 8 bytes; Keepalived truncates, vipd refuses)")
		}
		if r.MaxPeerAdvertInterval != 0 {
			v.add("vrrp.max_peer_advert_interval", "is VRRPv3 only (VRRPv2 peers must send our own interval); remove it")
		}
	case 3:
		d := r.AdvertInterval.D()
		if d < 10*time.Millisecond || d > 4095*10*time.Millisecond || d%(10*time.Millisecond) != 0 {
			v.add("vrrp.advert_interval", "VRRPv3 counts centiseconds: a multiple of 10ms from 10ms to 40.95s, got %s", d)
		}
		if r.AuthPass != "" || r.AuthPassFile != "" {
			v.add("vrrp.auth_pass", "VRRPv3 has no authentication (RFC 5798 removed it); remove auth_pass or set version: 2")
		}
		if m := r.MaxPeerAdvertInterval.D(); m != 0 && (m < d || m > 4095*10*time.Millisecond) {
			v.add("vrrp.max_peer_advert_interval", "must be at least advert_interval (%s) and at most 40.95s, got %s", d, m)
		}
	default:
		v.add("vrrp.version", "must be 2 or 3, got %d", r.Version)
	}
	if r.AuthPass != "" && r.AuthPassFile != "" {
		v.add("vrrp.auth_pass_file", "set auth_pass or auth_pass_file, not both")
	}
	if len(r.VIPs) == 0 {
		v.add("vrrp.vips", "at least one virtual address is required, e.g. [192.168.10.100/24]")
	}
	seen := map[netip.Addr]bool{}
	for i, s := range r.VIPs {
		f := fmt.Sprintf("vrrp.vips[%d]", i)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				v.add(f, "%q has no prefix length: write %s/24 (or the subnet's length)", s, a)
			} else {
				v.add(f, "%q is not an IPv4 address with prefix length, e.g. 192.168.10.100/24", s)
			}
			continue
		}
		if !p.Addr().Is4() {
			v.add(f, "%q: only IPv4 VIPs are supported", s)
			continue
		}
		if seen[p.Addr()] {
			v.add(f, "%s is listed twice", p.Addr())
		}
		seen[p.Addr()] = true
	}
	for i, s := range r.UnicastPeers {
		f := fmt.Sprintf("vrrp.unicast_peers[%d]", i)
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			v.add(f, "%q is not an IPv4 address", s)
			continue
		}
		if seen[a] {
			v.add(f, "%s is a VIP; a peer is the other LB host's own address", a)
		}
	}
	if r.UnicastSource != "" {
		if a, err := netip.ParseAddr(r.UnicastSource); err != nil || !a.Is4() {
			v.add("vrrp.unicast_source", "%q is not an IPv4 address", r.UnicastSource)
		}
	}
	if r.GARP.Count < 0 || r.GARP.Count > 100 {
		v.add("vrrp.garp.count", "must be 0-100, got %d", r.GARP.Count)
	}
}

func (c *Config) validateProxy(v *validator) {
	p := c.Proxy
	if _, err := listenAddr(p.Listen); err != nil {
		v.add("proxy.listen", "%v", err)
	}
	if len(p.Backends) == 0 {
		v.add("proxy.backends", "at least one backend (a master's address:6443) is required")
	}
	seen := map[string]int{}
	for i, b := range p.Backends {
		f := fmt.Sprintf("proxy.backends[%d]", i)
		host, port, err := net.SplitHostPort(b)
		if err != nil {
			v.add(f, "%q is not host:port (e.g. 192.168.10.138:6443)", b)
			continue
		}
		if host == "" {
			v.add(f, "%q has no host", b)
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			v.add(f, "%q: port must be 1-65535", b)
			continue
		}
		if j, dup := seen[b]; dup {
			v.add(f, "%q duplicates proxy.backends[%d]", b, j)
		}
		seen[b] = i
	}
	switch p.Balance {
	case "roundrobin", "leastconn":
	default:
		v.add("proxy.balance", "%q is not roundrobin or leastconn", p.Balance)
	}
	if *p.Retries < 0 || *p.Retries > 10 {
		v.add("proxy.retries", "must be 0-10, got %d", *p.Retries)
	}
	if *p.MaxConns < 0 {
		v.add("proxy.max_conns", "must be >= 0 (0 = no cap), got %d", *p.MaxConns)
	}
	if *p.MinHealthyBackends < 0 || *p.MinHealthyBackends > len(p.Backends) {
		v.add("proxy.min_healthy_backends", "must be 0-%d (the number of backends), got %d", len(p.Backends), *p.MinHealthyBackends)
	}
	if *p.TrackWeight < 0 || *p.TrackWeight > 254 {
		v.add("proxy.track_weight", "must be 0-254 (0 gives up the VIP outright), got %d", *p.TrackWeight)
	}
}

func (c *Config) validateHealth(v *validator) {
	h := &c.Health
	switch h.Type {
	case "tcp", "https":
	default:
		v.add("health.type", "%q is not tcp or https", h.Type)
	}
	if h.ExpectStatus < 100 || h.ExpectStatus > 599 {
		v.add("health.expect_status", "must be an HTTP status code, got %d", h.ExpectStatus)
	}
	if !strings.HasPrefix(h.Path, "/") {
		v.add("health.path", "%q must start with /", h.Path)
	}
	if h.Timeout.D() <= 0 {
		v.add("health.timeout", "must be positive")
	}
	if h.Interval.D() < 10*time.Millisecond {
		v.add("health.interval", "must be at least 10ms, got %s", h.Interval.D())
	}
	if h.Rise < 1 || h.Rise > 100 {
		v.add("health.rise", "must be 1-100, got %d", h.Rise)
	}
	if h.Fall < 1 || h.Fall > 100 {
		v.add("health.fall", "must be 1-100, got %d", h.Fall)
	}
	if *h.Jitter < 0 || *h.Jitter > 0.5 {
		v.add("health.jitter", "must be 0-0.5 (a fraction of the interval), got %g", *h.Jitter)
	}
	if (h.TLS.CertFile == "") != (h.TLS.KeyFile == "") {
		v.add("health.tls.cert_file", "cert_file and key_file go together")
	}
	if h.TLS.CAFile != "" && h.TLS.InsecureSkipVerify {
		v.add("health.tls.insecure_skip_verify", "set ca_file or insecure_skip_verify, not both")
	}
}

func (c *Config) validateCluster(v *validator) {
	cl := &c.Cluster
	switch cl.SplitBrain {
	case "none", "resign-lower":
	default:
		v.add("cluster.split_brain", "%q is not none or resign-lower", cl.SplitBrain)
	}
	if !cl.Enabled {
		return
	}
	if _, _, err := net.SplitHostPort(cl.Bind); err != nil {
		v.add("cluster.bind", "%q is not ip:port", cl.Bind)
	}
	if len(cl.Peers) == 0 {
		v.add("cluster.peers", "at least one peer (the other LB's ip:7946) is required when the cluster is enabled")
	}
	for i, p := range cl.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			v.add(fmt.Sprintf("cluster.peers[%d]", i), "%q is not ip:port", p)
		}
	}
	if cl.KeyFile == "" {
		v.add("cluster.key_file", "is required: gossip is always encrypted (generate: head -c32 /dev/urandom | base64 > /etc/vipd/gossip.key; chmod 600)")
	}
	if cl.BlockedVRRPIntervals < 1 {
		v.add("cluster.blocked_vrrp_intervals", "must be >= 1")
	}
}

// listenAddr checks a "host:port" or ":port" listen address.
func listenAddr(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not [address]:port (e.g. :6443 or 192.168.10.100:6443)", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return netip.AddrPort{}, fmt.Errorf("%q: port must be 1-65535", s)
	}
	if host == "" {
		return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(n)), nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: %q is not an IP address", s, host)
	}
	return netip.AddrPortFrom(a, uint16(n)), nil
}

// ReadSecret reads a secret from a file that others (outside its owner and group) cannot read:
// the unit runs vipd as user vipd, so secrets are root:vipd 0640 or vipd-owned 0600.
func ReadSecret(field, path string) (string, error) {
	if err := CheckSecretFile(field, path); err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", field, path)
	}
	return s, nil
}

// CheckSecretFile refuses a secret file that is not a regular file, that every user can read,
// or that its group can write. The unit runs vipd as user vipd, so a secret is root:vipd 0640
// (or vipd's own 0600). field names the setting in messages.
func CheckSecretFile(field, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: %s is not a regular file", field, path)
	}
	if perm := st.Mode().Perm(); perm&0o027 != 0 {
		return fmt.Errorf("%s: %s is open to every user or writable by its group (mode %04o); refusing to use it: run chmod 640 %s (owner root, group vipd)", field, path, perm, path)
	}
	return nil
}

// Fingerprint hashes the settings that must match across the LB peers (VIP, VRID, version,
// advert interval, backends), so the gossip layer can report drift.
func (c *Config) Fingerprint() string {
	h := sha256.New()
	fmt.Fprintf(h, "vrid=%d\nversion=%d\nadvert=%s\n", c.VRRP.VRID, c.VRRP.Version, c.VRRP.AdvertInterval.D())
	vips := append([]string(nil), c.VRRP.VIPs...)
	sort.Strings(vips)
	fmt.Fprintf(h, "vips=%s\n", strings.Join(vips, ","))
	if c.Proxy != nil {
		b := append([]string(nil), c.Proxy.Backends...)
		sort.Strings(b)
		fmt.Fprintf(h, "listen=%s\nbackends=%s\n", c.Proxy.Listen, strings.Join(b, ","))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// lineMap maps field paths ("vrrp.vips[1]") to the line they start on.
type lineMap map[string]int

func (m lineMap) walk(path string, n *yaml.Node) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			m.walk(path, c)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			m[p] = k.Line
			m.walk(p, val)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			m[p] = c.Line
			m.walk(p, c)
		}
	}
}

// find returns the line of field, or of its closest present parent, or 0.
func (m lineMap) find(field string) int {
	for f := field; f != ""; {
		if l, ok := m[f]; ok {
			return l
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return 0
}
