package cluster

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/vipd-project/vipd/pkg/hostport"
	"github.com/vipd-project/vipd/pkg/secretfile"
)

// Split-brain resolution policies (cluster.split_brain).
const (
	SplitBrainNone        = "none"
	SplitBrainResignLower = "resign-lower"
)

// Config is the `cluster:` section of vipd.yaml (plus the top-level node_name).
type Config struct {
	// Enabled turns gossip on.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// NodeName is the top-level node_name: this node's unique name in the gossip cluster.
	NodeName string `yaml:"-" json:"node_name"`
	// Bind is the "ip:port" for gossip, TCP and UDP (default 0.0.0.0:7946).
	Bind string `yaml:"bind" json:"bind"`
	// Advertise is the "ip[:port]" peers should use to reach this node, when Bind is a
	// wildcard or behind NAT. Empty: memberlist picks a private address of the host.
	Advertise string `yaml:"advertise" json:"advertise,omitempty"`
	// Peers are the other LB hosts' gossip addresses ("host:port").
	Peers []string `yaml:"peers" json:"peers"`
	// KeyFile holds the shared gossip key: 16, 24 or 32 bytes, raw or base64. Mode 0600/0400.
	KeyFile string `yaml:"key_file" json:"key_file"`
	// SplitBrain is "none" (detect only, default) or "resign-lower".
	SplitBrain string `yaml:"split_brain" json:"split_brain"`
	// BlockedVRRPIntervals is how many advert intervals a peer may stay silent on VRRP while
	// alive on gossip before blocked_vrrp is raised (default 3).
	BlockedVRRPIntervals int `yaml:"blocked_vrrp_intervals" json:"blocked_vrrp_intervals"`
	// ConnReset resets the clients of a dead master's connections after taking the VIP.
	ConnReset bool `yaml:"conn_reset" json:"conn_reset"`
	// ConnTableMax caps the connections shared by this node and kept per peer (default 10000).
	ConnTableMax int `yaml:"conn_table_max" json:"conn_table_max"`
	// ConnResetRate caps reset probes per second (default 5000).
	ConnResetRate int `yaml:"conn_reset_rate" json:"conn_reset_rate"`
}

// Defaults used by SetDefaults and by pkg/config (one value each).
const (
	DefaultBind                 = "0.0.0.0:7946"
	DefaultBlockedVRRPIntervals = 3
	DefaultConnTableMax         = 10000
	DefaultConnResetRate        = 5000
)

// SetDefaults fills unset fields (ConnReset, a bool, is left to the config loader, whose
// documented default is true).
func (c *Config) SetDefaults() {
	if c.Bind == "" {
		c.Bind = DefaultBind
	}
	if c.SplitBrain == "" {
		c.SplitBrain = SplitBrainNone
	}
	if c.BlockedVRRPIntervals == 0 {
		c.BlockedVRRPIntervals = DefaultBlockedVRRPIntervals
	}
	if c.ConnTableMax == 0 {
		c.ConnTableMax = DefaultConnTableMax
	}
	if c.ConnResetRate == 0 {
		c.ConnResetRate = DefaultConnResetRate
	}
}

// Validate checks the section and names the offending field as in YAML. It does not read the
// key file (LoadKey does). A disabled section is always valid.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("cluster.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if strings.TrimSpace(c.NodeName) == "" {
		errs = append(errs, errors.New("node_name: required when cluster.enabled is true (unique per LB host)"))
	}
	if _, err := parseBind(c.Bind); err != nil {
		bad("bind", "%v", err)
	}
	if c.Advertise != "" {
		if _, _, err := parseAdvertise(c.Advertise); err != nil {
			bad("advertise", "%v", err)
		}
	}
	for i, p := range c.Peers {
		if _, _, err := hostport.Dial(p); err != nil {
			bad(fmt.Sprintf("peers[%d]", i), "%v", err)
		}
	}
	if c.KeyFile == "" {
		bad("key_file", "is required: gossip is always encrypted (generate: head -c32 /dev/urandom | base64 > /etc/vipd/gossip.key; chmod 600 /etc/vipd/gossip.key)")
	}
	switch c.SplitBrain {
	case SplitBrainNone, SplitBrainResignLower:
	default:
		bad("split_brain", "%q is not one of none, resign-lower", c.SplitBrain)
	}
	if c.BlockedVRRPIntervals < 1 || c.BlockedVRRPIntervals > 1000 {
		bad("blocked_vrrp_intervals", "%d is outside 1-1000", c.BlockedVRRPIntervals)
	}
	// 0 is refused, not taken as "share nothing": New's SetDefaults would turn it into the
	// default, and a written value is never silently replaced.
	if c.ConnTableMax < 1 || c.ConnTableMax > 1000000 {
		bad("conn_table_max", "%d is outside 1-1000000", c.ConnTableMax)
	}
	if c.ConnReset && (c.ConnResetRate < 1 || c.ConnResetRate > 1000000) {
		bad("conn_reset_rate", "%d is outside 1-1000000", c.ConnResetRate)
	}
	return errors.Join(errs...)
}

func parseBind(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not ip:port (example 0.0.0.0:7946)", s)
	}
	return ap, nil
}

func parseAdvertise(s string) (netip.Addr, int, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.Addr{}, 0, fmt.Errorf("%q: port 0", s)
		}
		return ap.Addr(), int(ap.Port()), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("%q is not ip or ip:port", s)
	}
	return a, 0, nil
}

// LoadKey reads the gossip key from path: 16, 24 or 32 bytes (AES-128/192/256), either as base64
// text or raw. It refuses a file that others can read or its group can write, naming the chmod fix.
func LoadKey(path string) ([]byte, error) {
	if err := secretfile.Check("cluster.key_file", path); err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster.key_file: %w", err)
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw))); err == nil && validKeyLen(len(k)) {
		return k, nil
	}
	if validKeyLen(len(raw)) {
		return raw, nil
	}
	// Never echo key material.
	return nil, fmt.Errorf("cluster.key_file: %s holds neither base64 of 16, 24 or 32 bytes nor 16, 24 or 32 raw bytes (generate: head -c32 /dev/urandom | base64)", path)
}

func validKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }
