package config

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/vipd-project/vipd/pkg/cluster"
	"github.com/vipd-project/vipd/pkg/health"
	"github.com/vipd-project/vipd/pkg/secretfile"
	"github.com/vipd-project/vipd/pkg/vrrp"
)

// ServiceUser is the user the systemd unit runs vipd as (deploy/vipd.service).
const ServiceUser = "vipd"

// CheckHost makes the checks that depend on the machine: the VRRP interface exists, and every
// file the daemon reads (secrets, CA, client certificate) exists, passes the secret-file rule
// (pkg/secretfile) and can be read by this process. It reads the secrets into c for the
// conversions and runs each package's Validate again on what the files hold (an auth_pass_file
// longer than VRRPv2's 8 bytes). `vipd check --no-host-checks` skips it, to check a file meant
// for another machine. Problems are reported like Load's: "file:line: field: problem".
func (c *Config) CheckHost() error {
	return c.checkHost(nil)
}

// CheckHostAs is CheckHost that also checks, when run as root, that the files can be read by
// the user the unit runs vipd as (ServiceUser): what `vipd check` does when an operator runs it
// by hand as root. (The unit's ExecStartPre and `vipd run` run as that user: their own reads
// decide.) Without such a user on the machine it is CheckHost.
func (c *Config) CheckHostAs() error {
	return c.checkHost(serviceUser())
}

func (c *Config) checkHost(svc *account) error {
	v := &validator{c: c}
	if _, err := net.InterfaceByName(c.VRRP.Interface); err != nil {
		v.add("vrrp.interface", "no interface %q on this host (ip -br link lists them; check a file meant for another machine with --no-host-checks)", c.VRRP.Interface)
	}
	secret := func(field, path string) (string, bool) {
		s, err := secretfile.Read(field, path)
		if err != nil {
			v.pkg(err)
			return "", false
		}
		if err := svc.canRead(path); err != nil {
			v.add(field, "%v", err)
		}
		return s, true
	}
	if p := c.VRRP.AuthPassFile; p != "" {
		if s, ok := secret("vrrp.auth_pass_file", p); ok {
			c.authPass = s
			v.pkg(c.VRRPConfig().Validate())
		}
	}
	if p := c.VRRP.AuthHMACKeyFile; p != "" {
		if s, ok := secret("vrrp.auth_hmac_key_file", p); ok {
			if key, err := vrrp.ParseHMACKey(s); err != nil {
				v.add("vrrp.auth_hmac_key_file", "%s: %v", p, err)
			} else {
				c.authHMACKey = key
				v.pkg(c.VRRPConfig().Validate())
			}
		}
	}
	if ba := c.Stats.BasicAuth; ba != nil && ba.PasswordFile != "" {
		if s, ok := secret("stats.basic_auth.password_file", ba.PasswordFile); ok {
			c.statsPassword = s
		}
	}
	if c.Cluster.Enabled && c.Cluster.KeyFile != "" {
		if _, err := cluster.LoadKey(c.Cluster.KeyFile); err != nil {
			v.pkg(err)
		} else if err := svc.canRead(c.Cluster.KeyFile); err != nil {
			v.add("cluster.key_file", "%v", err)
		}
	}
	if c.Proxy != nil {
		// The checker loads the CA, the client key pair and the token exactly as the daemon
		// will, with the secret rule for the key and the token.
		if _, err := health.NewChecker(c.HealthConfig()); err != nil {
			v.pkg(err)
		}
		h := c.Health
		for field, p := range map[string]string{"health.tls.ca_file": h.TLS.CAFile, "health.tls.cert_file": h.TLS.CertFile,
			"health.tls.key_file": h.TLS.KeyFile, "health.bearer_token_file": h.BearerTokenFile} {
			if p == "" {
				continue
			}
			if err := svc.canRead(p); err != nil {
				v.add(field, "%v", err)
			}
		}
	}
	v.sort()
	return v.errs.asError()
}

// account is the user the daemon runs as, for "can it read this file" (nil: unknown, e.g. no
// user vipd on a developer machine: then only this process's own access is checked).
type account struct {
	uid, gid uint32
	groups   map[uint32]bool
	name     string
}

func serviceUser() *account {
	if os.Geteuid() != 0 {
		return nil // running as the service user (or a developer): the read itself decides
	}
	u, err := user.Lookup(ServiceUser)
	if err != nil {
		return nil
	}
	a := &account{name: u.Username, groups: map[uint32]bool{}}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	a.uid, a.gid = uint32(uid), uint32(gid)
	a.groups[a.gid] = true
	if gs, err := u.GroupIds(); err == nil {
		for _, g := range gs {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				a.groups[uint32(n)] = true
			}
		}
	}
	return a
}

// canRead reports whether the account may read path by its mode bits (the directories on the
// way are not judged: /etc/vipd is 0750 root:vipd by the README's install).
func (a *account) canRead(path string) error {
	if a == nil {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	perm := st.Mode().Perm()
	switch {
	case sys.Uid == a.uid && perm&0o400 != 0:
		return nil
	case sys.Uid != a.uid && a.groups[sys.Gid] && perm&0o040 != 0:
		return nil
	case perm&0o004 != 0:
		return nil
	}
	return fmt.Errorf("%s cannot be read by user %s, which the unit runs vipd as (owner uid %d, group gid %d, mode %04o): run chown root:%s %s; chmod 640 %s",
		path, a.name, sys.Uid, sys.Gid, perm, a.name, path, path)
}
