package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
	"golang.org/x/crypto/ssh"

	"github.com/vipd-project/vipd/pkg/sshx"
	"github.com/vipd-project/vipd/pkg/topology"
)

// defaultIdentityNames are the keys OpenSSH tries when none is configured, in its order
// (ssh(1), -i; the DSA and security-key defaults are left out).
var defaultIdentityNames = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// sshConfig is the operator's ~/.ssh/config, read once. Its Host entries are looked up by the
// topology host's name, then by its address (as `ssh NAME`, then `ssh ADDRESS`); what the
// topology sets itself wins, as ssh's command line wins over the file.
type sshConfig struct {
	path string
	cfg  *ssh_config.Config // nil: no file
	home string
}

// loadSSHConfig reads ~/.ssh/config; a missing file is no configuration, a broken one an error
// naming it.
func loadSSHConfig() (*sshConfig, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return &sshConfig{}, nil
	}
	c := &sshConfig{path: filepath.Join(home, ".ssh", "config"), home: home}
	b, err := os.ReadFile(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", c.path, err)
	}
	c.cfg, err = ssh_config.DecodeBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.path, err)
	}
	return c, nil
}

// get returns key's value for the first of the aliases that has one ("" if none).
func (c *sshConfig) get(key string, aliases ...string) string {
	if c.cfg == nil {
		return ""
	}
	for _, a := range aliases {
		if v, err := c.cfg.Get(a, key); err == nil && v != "" {
			return v
		}
	}
	return ""
}

// expand resolves ~ and %d (home) in a path from the file.
func (c *sshConfig) expand(p string) string {
	p = strings.ReplaceAll(p, "%d", c.home)
	if p == "~" || strings.HasPrefix(p, "~/") {
		p = c.home + p[1:]
	}
	return p
}

// defaultIdentities are OpenSSH's default keys under ~/.ssh.
func (c *sshConfig) defaultIdentities() []string {
	if c.home == "" {
		return nil
	}
	var l []string
	for _, n := range defaultIdentityNames {
		l = append(l, filepath.Join(c.home, ".ssh", n))
	}
	return l
}

// apply completes cfg (built from the topology's settings s for host h) from ~/.ssh/config:
// HostName when the topology gives no ssh.address for the host, User and Port when the
// topology leaves them at their defaults, IdentityFile when it names none, ProxyJump when it
// has no jumpHost; then OpenSSH's default identities when still no key is named.
func (c *sshConfig) apply(cfg *sshx.Config, h topology.Host, s topology.SSH, jumpPassword string) error {
	aliases := []string{h.Name, h.Address}
	if v := c.get("HostName", aliases...); v != "" && (h.SSH == nil || h.SSH.Address == "") {
		cfg.Addr = strings.ReplaceAll(v, "%h", h.Name)
	}
	if v := c.get("User", aliases...); v != "" && s.UserDefaulted() {
		cfg.User = v
	}
	if v := c.get("Port", aliases...); v != "" && s.PortDefaulted() {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("%s: Host %s: Port %q is not a port number", c.path, h.Name, v)
		}
		cfg.Port = p
	}
	if cfg.IdentityFile == "" {
		cfg.IdentityFile = c.expand(c.get("IdentityFile", aliases...))
	}
	if cfg.IdentityFile == "" {
		cfg.DefaultIdentities = c.defaultIdentities()
	}
	if s.JumpHost == nil {
		j, err := c.proxyJump(c.get("ProxyJump", aliases...), cfg, jumpPassword)
		if err != nil {
			return fmt.Errorf("%s: Host %s: %w", c.path, h.Name, err)
		}
		cfg.Jump = j
	}
	if cfg.Jump != nil && cfg.Jump.IdentityFile == "" {
		cfg.Jump.DefaultIdentities = c.defaultIdentities()
	}
	return nil
}

// proxyJump turns a ProxyJump value ([user@]host[:port], one hop) into the jump host's
// settings, themselves completed from the file's entry for that host.
func (c *sshConfig) proxyJump(v string, target *sshx.Config, password string) (*sshx.JumpConfig, error) {
	if v == "" || strings.EqualFold(v, "none") {
		return nil, nil
	}
	if strings.Contains(v, ",") {
		return nil, fmt.Errorf("ProxyJump %q: only one jump host is supported", v)
	}
	v = strings.TrimPrefix(v, "ssh://")
	j := &sshx.JumpConfig{Agent: target.Agent, Password: password}
	if u, rest, ok := strings.Cut(v, "@"); ok {
		j.User, v = u, rest
	}
	host, port := v, ""
	if i := strings.LastIndex(v, ":"); i >= 0 && !strings.Contains(v[i+1:], "]") {
		host, port = v[:i], v[i+1:]
	}
	host = strings.Trim(host, "[]")
	if host == "" {
		return nil, fmt.Errorf("ProxyJump %q: no host", v)
	}
	j.Addr = host
	if hn := c.get("HostName", host); hn != "" {
		j.Addr = hn
	}
	if j.User == "" {
		j.User = c.get("User", host)
	}
	if j.User == "" {
		j.User = target.User
	}
	if port == "" {
		port = c.get("Port", host)
	}
	j.Port = 22
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("ProxyJump %q: %q is not a port number", v, port)
		}
		j.Port = p
	}
	j.IdentityFile = c.expand(c.get("IdentityFile", host))
	if j.IdentityFile == "" {
		j.IdentityFile = target.IdentityFile
	}
	if j.IdentityFile == "" {
		j.DefaultIdentities = c.defaultIdentities()
	}
	return j, nil
}

// hasKey reports whether a connection to h would have a key to offer without a password:
// one named by the topology or ~/.ssh/config, or one of the default files.
func (c *sshConfig) hasKey(h topology.Host, s topology.SSH) bool {
	if s.IdentityFile != "" || c.get("IdentityFile", h.Name, h.Address) != "" {
		return true
	}
	for _, p := range c.defaultIdentities() {
		if b, err := os.ReadFile(p); err == nil {
			if _, err := ssh.ParsePrivateKey(b); err == nil {
				return true
			}
		}
	}
	return false
}
