package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"github.com/vipd-project/vipd/pkg/logx"
)

// validate checks the whole file: first what only the file can judge (a string that is not an
// address, an integer too large for its field, keys that go together), then each section
// converted to its package's Config and judged by that package's Validate, the one owner of
// each rule. Every problem becomes an *Error with the field's line.
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
	if n := len(v.errs); c.validateVRRPShape(v) && len(v.errs) == n {
		v.pkg(c.VRRPConfig().Validate())
	}
	if p := c.Proxy; p != nil {
		if p.TrackWeight != nil && (*p.TrackWeight < 0 || *p.TrackWeight > 254) {
			v.add("proxy.track_weight", "must be 0-254 (0 gives up the VIP outright), got %d", *p.TrackWeight)
		}
		v.pkg(c.ProxyConfig().Validate())
		v.pkg(c.HealthConfig().Validate())
		if c.Health.BearerTokenFile != "" && c.Health.TLS.CAFile == "" {
			c.Warnings = append(c.Warnings, "health.bearer_token_file is sent to backends whose certificate is not verified (no health.tls.ca_file)")
		}
	}
	if ba := c.Stats.BasicAuth; ba != nil {
		if ba.Username == "" {
			v.add("stats.basic_auth.username", "is required when basic_auth is set")
		}
		if ba.PasswordFile == "" {
			v.add("stats.basic_auth.password_file", "is required when basic_auth is set (a password never goes in this file)")
		}
	}
	sc := c.StatsConfig(nil)
	sc.BasicAuth = nil // its fields are checked above; the password is read by CheckHost
	v.pkg(sc.Validate())
	if !strings.HasPrefix(c.ControlSocket, "/") {
		v.add("control_socket", "%q must be an absolute path", c.ControlSocket)
	}
	if !strings.HasPrefix(c.StateFile, "/") {
		v.add("state_file", "%q must be an absolute path", c.StateFile)
	}
	v.pkg(c.ClusterConfig().Validate())
	v.sort()
	return v.errs
}

// validateVRRPShape checks what pkg/vrrp's Config cannot hold: strings that are not
// addresses, integers beyond a byte, a password file with VRRPv3. It reports false when the
// section cannot be converted faithfully (then pkg/vrrp's Validate is not run on it).
func (c *Config) validateVRRPShape(v *validator) bool {
	r := &c.VRRP
	ok := true
	if r.VRID < 0 || r.VRID > 255 {
		v.add("vrrp.vrid", "must be 1-255, got %d", r.VRID)
	}
	if r.Priority < 0 || r.Priority > 255 {
		v.add("vrrp.priority", "must be 1-254 (or 255 for the address owner), got %d", r.Priority)
	}
	if r.AuthPassFile != "" {
		if r.AuthPass != "" {
			v.add("vrrp.auth_pass_file", "set auth_pass or auth_pass_file, not both")
		}
		if r.Version == 3 {
			v.add("vrrp.auth_pass_file", "VRRPv3 has no authentication (RFC 5798 removed it); remove auth_pass_file or set version: 2")
		}
	}
	if r.AuthHMACKeyID < 0 || r.AuthHMACKeyID > 255 || r.AuthHMACKeyFile != "" && r.AuthHMACKeyID == 0 {
		v.add("vrrp.auth_hmac_key_id", "must be 1-255, got %d", r.AuthHMACKeyID)
	}
	if r.AuthHMACKeyFile == "" && r.AuthHMACKeyID != 0 {
		v.add("vrrp.auth_hmac_key_id", "set only with vrrp.auth_hmac_key_file")
	}
	if r.AuthHMACKeyFile != "" && (r.AuthPass != "" || r.AuthPassFile != "") {
		v.add("vrrp.auth_hmac_key_file", "set auth_pass (or auth_pass_file) or auth_hmac_key_file, not both")
	}
	for i, s := range r.VIPs {
		f := fmt.Sprintf("vrrp.vips[%d]", i)
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			ok = false
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				v.add(f, "%q has no prefix length: write %s/24 (or the subnet's length)", s, a)
			} else {
				v.add(f, "%q is not an IPv4 address with prefix length, e.g. 192.168.10.100/24", s)
			}
		case !p.Addr().Is4():
			ok = false
			v.add(f, "%q: only IPv4 VIPs are supported", s)
		}
	}
	for i, s := range r.UnicastPeers {
		if a, err := netip.ParseAddr(s); err != nil || !a.Is4() {
			ok = false
			v.add(fmt.Sprintf("vrrp.unicast_peers[%d]", i), "%q is not an IPv4 address", s)
		}
	}
	if r.UnicastSource != "" {
		if a, err := netip.ParseAddr(r.UnicastSource); err != nil || !a.Is4() {
			ok = false
			v.add("vrrp.unicast_source", "%q is not an IPv4 address", r.UnicastSource)
		}
	}
	return ok
}

type validator struct {
	c    *Config
	errs Errors
}

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.c.path, Line: v.c.lines.Find(field), Field: field, Msg: fmt.Sprintf(format, args...)})
}

// fieldPrefix matches the "section.key[i]: " a package's Validate starts each problem with.
var fieldPrefix = regexp.MustCompile(`^([a-z_]+(?:\.[a-z_]+|\[[0-9]+\])*): (.*)$`)

// pkg adds the problems of a package's Validate (errors.Join of "field: problem"), each at
// the line of its field.
func (v *validator) pkg(err error) {
	v.errs = append(v.errs, v.c.fromPackage(err)...)
}

func (c *Config) fromPackage(err error) Errors {
	if err == nil {
		return nil
	}
	var out Errors
	for _, line := range strings.Split(err.Error(), "\n") {
		if line == "" {
			continue
		}
		m := fieldPrefix.FindStringSubmatch(line)
		if m == nil {
			out = append(out, &Error{File: c.path, Msg: line})
			continue
		}
		field := m[1]
		if field == "vrrp.auth_pass" && c.VRRP.AuthPassFile != "" && c.VRRP.AuthPass == "" {
			field = "vrrp.auth_pass_file" // the password came from the file
		}
		out = append(out, &Error{File: c.path, Line: c.lines.Find(field), Field: field, Msg: m[2]})
	}
	return out
}

func (v *validator) sort() {
	sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
}

// asError returns es as an error, or nil when empty.
func (es Errors) asError() error {
	if len(es) == 0 {
		return nil
	}
	return es
}
