// Package config owns vipd's YAML configuration file: its schema, strict decoding (an
// unknown key is an error), its defaults (the only place they live), and the conversion into
// the Config of each package (VRRPConfig, ProxyConfig, HealthConfig, StatsConfig,
// ClusterConfig). Validation is each package's Validate, called from here on the converted
// value, plus the checks only the file can make (a YAML string that is not an address, an
// integer too large for its field); every message is "file:line: field: problem".
//
// `vipd check`, `vipd run` and a SIGHUP reload all call LoadOnHost (check with --no-host-checks
// calls Load): one path, so check accepts exactly what run accepts. RestartRequired is the one
// list of settings a reload cannot apply, used by vipd and by bootstrap.
//
// Adding a setting: a field here with its yaml tag and comment, its default in defaults.go
// (only if absent, see present), its mapping in convert.go, and its rule in the using
// package's Validate; a line in RestartRequired if a reload cannot apply it; deploy/vipd.yaml.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vipd-project/vipd/pkg/yamlpos"
	"gopkg.in/yaml.v3"
)

// DefaultPath is where vipd looks for its configuration when -c is not given.
const DefaultPath = "/etc/vipd/vipd.yaml"

// Config is the whole vipd configuration file.
type Config struct {
	NodeName      string        `yaml:"node_name,omitempty"`
	LogLevel      string        `yaml:"log_level,omitempty"`
	LogFormat     string        `yaml:"log_format,omitempty"`
	VRRP          VRRP          `yaml:"vrrp,omitempty"`
	Proxy         *Proxy        `yaml:"proxy,omitempty"`
	Health        Health        `yaml:"health,omitempty"`
	Stats         Stats         `yaml:"stats,omitempty"`
	ControlSocket string        `yaml:"control_socket,omitempty"`
	StateFile     string        `yaml:"state_file,omitempty"`
	Cluster       Cluster       `yaml:"cluster,omitempty"`
	path          string        // file it was read from
	lines         yamlpos.Lines // field path -> line
	Warnings      []string      `yaml:"-"`

	// Secrets read by CheckHost (never logged, never in a message).
	authPass      string
	authHMACKey   []byte
	statsPassword string
}

// VRRP is the election section.
type VRRP struct {
	Interface      string   `yaml:"interface,omitempty"`
	VRID           int      `yaml:"vrid,omitempty"`
	Priority       int      `yaml:"priority,omitempty"`
	Version        int      `yaml:"version,omitempty"`
	AdvertInterval Duration `yaml:"advert_interval,omitempty"`
	// MaxPeerAdvertInterval bounds the advert interval vipd accepts from another router
	// (VRRPv3). 0: 3 x advert_interval, at least 1s (pkg/vrrp owns that default).
	MaxPeerAdvertInterval Duration `yaml:"max_peer_advert_interval,omitempty"`
	Preempt               *bool    `yaml:"preempt,omitempty"`
	PreemptDelay          Duration `yaml:"preempt_delay,omitempty"`
	VIPs                  []string `yaml:"vips,omitempty"`
	UnicastPeers          []string `yaml:"unicast_peers,omitempty"`
	UnicastSource         string   `yaml:"unicast_source,omitempty"`
	AuthPass              string   `yaml:"auth_pass,omitempty"`
	AuthPassFile          string   `yaml:"auth_pass_file,omitempty"`
	// AuthHMACKeyFile turns on authenticated adverts between vipd (Keepalived's auth_hmac
	// trailer); the file holds the key as Keepalived reads it (see vrrp.ParseHMACKey).
	AuthHMACKeyFile string `yaml:"auth_hmac_key_file,omitempty"`
	AuthHMACKeyID   int    `yaml:"auth_hmac_key_id,omitempty"` // 1-255, default 1
	TrackInterface  *bool  `yaml:"track_interface,omitempty"`
	SourceMACCheck  *bool  `yaml:"source_mac_check,omitempty"`
	GARP            GARP   `yaml:"garp,omitempty"`
}

// GARP controls gratuitous ARP announcements of the VIP.
type GARP struct {
	Count    int       `yaml:"count,omitempty"`
	Interval Duration  `yaml:"interval,omitempty"`
	Refresh  *Duration `yaml:"refresh,omitempty"`
}

// Proxy is the TCP load balancer section. A nil *Proxy means VRRP only.
type Proxy struct {
	Listen         string   `yaml:"listen,omitempty"`
	Backends       []string `yaml:"backends,omitempty"`
	Balance        string   `yaml:"balance,omitempty"`
	ConnectTimeout Duration `yaml:"connect_timeout,omitempty"`
	Retries        *int     `yaml:"retries,omitempty"`
	MaxConns       *int     `yaml:"max_conns,omitempty"`
	IdleTimeout    Duration `yaml:"idle_timeout,omitempty"`
	// FirstByteTimeout closes a connection whose client sent nothing this long (a TLS client
	// speaks first; client-go gives up its own handshake after 10s). 0: never.
	FirstByteTimeout Duration `yaml:"first_byte_timeout,omitempty"`
	// HalfClosedTimeout closes a session this long after one side closed its half, when
	// nothing has moved since (HAProxy's timeout client-fin/server-fin). 0: never.
	HalfClosedTimeout Duration `yaml:"half_closed_timeout,omitempty"`
	// MaxConnsPerSource caps concurrent connections from one client address. 0: no cap.
	MaxConnsPerSource   *int      `yaml:"max_conns_per_source,omitempty"`
	KeepAlive           Duration  `yaml:"keepalive,omitempty"`
	DrainGrace          *Duration `yaml:"drain_grace,omitempty"`
	RemovedBackendGrace Duration  `yaml:"removed_backend_grace,omitempty"`
	MinHealthyBackends  *int      `yaml:"min_healthy_backends,omitempty"`
	TrackWeight         *int      `yaml:"track_weight,omitempty"`
}

// Health is the active check section for the proxy's backends.
type Health struct {
	Type            string   `yaml:"type,omitempty"`
	Path            string   `yaml:"path,omitempty"`
	ExpectStatus    int      `yaml:"expect_status,omitempty"`
	Interval        Duration `yaml:"interval,omitempty"`
	FastInterval    Duration `yaml:"fast_interval,omitempty"`
	Timeout         Duration `yaml:"timeout,omitempty"`
	Rise            int      `yaml:"rise,omitempty"`
	Fall            int      `yaml:"fall,omitempty"`
	Jitter          *float64 `yaml:"jitter,omitempty"`
	TLS             TLS      `yaml:"tls,omitempty"`
	BearerTokenFile string   `yaml:"bearer_token_file,omitempty"`
	AuthErrorsAreUp bool     `yaml:"auth_errors_are_up,omitempty"`
}

// TLS configures the HTTPS health check's client.
type TLS struct {
	CAFile             string `yaml:"ca_file,omitempty"`
	InsecureSkipVerify *bool  `yaml:"insecure_skip_verify,omitempty"`
	CertFile           string `yaml:"cert_file,omitempty"`
	KeyFile            string `yaml:"key_file,omitempty"`
}

// Stats is the HTTP stats, metrics and health endpoint section.
type Stats struct {
	Listen    string     `yaml:"listen,omitempty"`
	BasicAuth *BasicAuth `yaml:"basic_auth,omitempty"`
	Refresh   Duration   `yaml:"refresh,omitempty"`
}

// BasicAuth protects /stats and /stats.json.
type BasicAuth struct {
	Username     string `yaml:"username,omitempty"`
	PasswordFile string `yaml:"password_file,omitempty"`
}

// Cluster is the gossip section.
type Cluster struct {
	Enabled              bool     `yaml:"enabled,omitempty"`
	Bind                 string   `yaml:"bind,omitempty"`
	Advertise            string   `yaml:"advertise,omitempty"`
	Peers                []string `yaml:"peers,omitempty"`
	KeyFile              string   `yaml:"key_file,omitempty"`
	SplitBrain           string   `yaml:"split_brain,omitempty"`
	BlockedVRRPIntervals int      `yaml:"blocked_vrrp_intervals,omitempty"`
	ConnReset            *bool    `yaml:"conn_reset,omitempty"`
	ConnTableMax         int      `yaml:"conn_table_max,omitempty"`
	ConnResetRate        int      `yaml:"conn_reset_rate,omitempty"`
}

// Duration is a time.Duration written in Go syntax ("100ms", "2s") in YAML.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML accepts Go duration strings; a bare number is refused because its unit is
// ambiguous (Keepalived counts seconds, HAProxy milliseconds).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	// A *yaml.TypeError lets the decoder go on and report every bad value, each with its line.
	fail := func(format string, a ...any) error {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: ", n.Line) + fmt.Sprintf(format, a...)}}
	}
	if n.Kind != yaml.ScalarNode {
		return fail("want a duration such as 2s or 200ms")
	}
	if n.Value == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		if _, nerr := strconv.ParseFloat(n.Value, 64); nerr == nil {
			return fail("%q has no unit: write %ss or %sms", n.Value, n.Value, n.Value)
		}
		return fail("%q is not a duration such as 2s or 200ms", n.Value)
	}
	if v < 0 {
		return fail("duration %s is negative", n.Value)
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

func (e *Error) Error() string { return yamlpos.Format(e.File, e.Line, e.Field, e.Msg) }

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
	c, err := Decode(name, b)
	if err != nil {
		return nil, err
	}
	if errs := c.validate(); len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// Decode decodes a configuration strictly (an unknown key is an error) and fills the defaults,
// without validating the values: for comparing two files (RestartRequired), not for running.
func Decode(name string, b []byte) (*Config, error) {
	c := &Config{path: name}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, c.decodeErrors(err)
	}
	c.lines = yamlpos.Index(&root, nil)
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, Errors{{File: name, Msg: "file is empty: see deploy/vipd.yaml for an example"}}
	}
	if e := exampleError(name, b); e != nil {
		return nil, Errors{e}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return nil, c.decodeErrors(err)
	}
	c.setDefaults()
	return c, nil
}

// LoadOnHost is Load followed by CheckHost: what `vipd run`, a reload and `vipd check` (without
// --no-host-checks) accept. The secrets it reads are kept for the Config conversions.
func LoadOnHost(path string) (*Config, error) {
	c, err := Load(path)
	if err != nil {
		return nil, err
	}
	if err := c.CheckHost(); err != nil {
		return nil, err
	}
	return c, nil
}

// Path is the file the configuration was read from.
func (c *Config) Path() string { return c.path }

// decodeErrors turns a YAML decoding error into one Error per problem, each with its line and,
// when a key starts on that line, the field ("vrrp.advert_interval").
func (c *Config) decodeErrors(err error) Errors {
	var out Errors
	for _, d := range c.lines.DecodeErrors(err) {
		if d.UnknownKey != "" {
			out = append(out, &Error{File: c.path, Line: d.Line, Msg: fmt.Sprintf("unknown key %q (check the spelling against deploy/vipd.yaml)", d.UnknownKey)})
			continue
		}
		out = append(out, &Error{File: c.path, Line: d.Line, Field: d.Field, Msg: d.Message})
	}
	return out
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
