package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vipd-project/vipd/pkg/sshx"
	"github.com/vipd-project/vipd/pkg/topology"
)

// ~/.ssh/config completes what the topology leaves open, as OpenSSH's command line wins
// over the file: HostName, User, Port, IdentityFile, ProxyJump (the jump host itself looked
// up in the file); without any key, OpenSSH's default identity files.
func TestSSHConfigApplied(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := `Host bastion
  HostName 203.0.113.9
  User jumper
  Port 2200
  IdentityFile ~/.ssh/bastion_key

Host lb1
  HostName 10.9.0.11
  User admin
  Port 2222
  IdentityFile ~/.ssh/lb_key
  ProxyJump bastion

Host 192.168.10.139
  User byaddress

Host *
  ServerAliveInterval 30
`
	if err := os.WriteFile(filepath.Join(home, ".ssh", "config"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	top, _, err := topology.Parse([]byte(`loadBalancer: {vip: 192.168.10.100/24}
hosts:
  - {name: lb1, address: 192.168.10.141, role: lb}
  - {name: m1, address: 192.168.10.139, role: master}
  - {name: m2, address: 192.168.10.140, role: master, ssh: {user: ops, port: 22}}
`), "topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := loadSSHConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfgFor := func(name string) sshx.Config {
		h, _ := top.Host(name)
		s := top.SSHFor(h)
		cfg := sshx.Config{Host: h.Name, Addr: s.Address, Port: s.Port, User: s.User, IdentityFile: s.IdentityFile}
		if err := c.apply(&cfg, h, s, ""); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	defaults := []string{home + "/.ssh/id_ed25519", home + "/.ssh/id_ecdsa", home + "/.ssh/id_rsa"}

	lb1 := cfgFor("lb1")
	want := sshx.Config{Host: "lb1", Addr: "10.9.0.11", Port: 2222, User: "admin", IdentityFile: home + "/.ssh/lb_key",
		Jump: &sshx.JumpConfig{Addr: "203.0.113.9", Port: 2200, User: "jumper", IdentityFile: home + "/.ssh/bastion_key"}}
	if !reflect.DeepEqual(lb1, want) {
		t.Errorf("lb1:\n%+v %+v\nwant\n%+v %+v", lb1, lb1.Jump, want, want.Jump)
	}
	// Found by address; no key anywhere: the default identities.
	m1 := cfgFor("m1")
	if m1.User != "byaddress" || m1.Addr != "192.168.10.139" || m1.Port != 22 || m1.IdentityFile != "" || !reflect.DeepEqual(m1.DefaultIdentities, defaults) || m1.Jump != nil {
		t.Errorf("m1: %+v", m1)
	}
	// The topology's own user and port win (even when it writes the default port).
	m2 := cfgFor("m2")
	if m2.User != "ops" || m2.Port != 22 {
		t.Errorf("m2: %+v", m2)
	}
}

func TestSSHConfigErrors(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	top, _, err := topology.Parse([]byte(`loadBalancer: {vip: 192.168.10.100/24}
hosts:
  - {name: lb1, address: 192.168.10.141, role: lb}
  - {name: m1, address: 192.168.10.139, role: master}
`), "topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for conf, want := range map[string]string{
		"Host lb1\n  Port eighty\n":             `Host lb1: Port "eighty" is not a port number`,
		"Host lb1\n  ProxyJump a,b\n":           `only one jump host is supported`,
		"Host lb1\n  ProxyJump bastion:99999\n": `is not a port number`,
	} {
		os.WriteFile(filepath.Join(home, ".ssh", "config"), []byte(conf), 0o600)
		c, err := loadSSHConfig()
		if err != nil {
			t.Fatal(err)
		}
		h, _ := top.Host("lb1")
		s := top.SSHFor(h)
		cfg := sshx.Config{Addr: s.Address, Port: s.Port, User: s.User}
		if err := c.apply(&cfg, h, s, ""); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), filepath.Join(home, ".ssh", "config")) {
			t.Errorf("%q: error %v, want the file and %q", conf, err, want)
		}
	}
}
