package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const minimal = `
vrrp:
  interface: eth0
  vips: [10.77.0.100/24]
`

func TestExampleConfigIsValid(t *testing.T) {
	c, err := Load("../../deploy/vipd.yaml")
	if err != nil {
		t.Fatalf("deploy/vipd.yaml must be valid: %v", err)
	}
	if c.VRRP.VRID != 51 || c.VRRP.Priority != 100 || len(c.Proxy.Backends) != 3 {
		t.Fatalf("example does not describe the reference setup: %+v", c.VRRP)
	}
	if c.Health.Interval.D() != 2*time.Second || c.Health.Rise != 2 || c.Health.Fall != 3 {
		t.Fatalf("health defaults differ from HAProxy's: %+v", c.Health)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("t.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.VRRP.VRID != 51 || c.VRRP.Version != 3 || c.VRRP.AdvertInterval.D() != 200*time.Millisecond || !*c.VRRP.Preempt {
		t.Errorf("vrrp defaults: %+v", c.VRRP)
	}
	if v2, err := Parse("t.yaml", []byte(minimal+"  version: 2\n")); err != nil || v2.VRRP.AdvertInterval.D() != time.Second {
		t.Errorf("v2 default interval must be 1s (whole seconds): %v", err)
	}
	if c.Proxy != nil {
		t.Errorf("no proxy section must mean VRRP only")
	}
	if c.Stats.Listen != ":8404" || c.ControlSocket != "/run/vipd/vipd.sock" {
		t.Errorf("stats/control defaults: %q %q", c.Stats.Listen, c.ControlSocket)
	}
	c2, err := Parse("t.yaml", []byte(minimal+"proxy:\n  backends: [10.77.0.11:6443]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c2.Proxy.Listen != ":6443" || *c2.Proxy.MinHealthyBackends != 1 || c2.Proxy.IdleTimeout != 0 {
		t.Errorf("proxy defaults: %+v", c2.Proxy)
	}
}

func TestErrorsNameFieldAndLine(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown key", minimal + "  vrdi: 5\n", `t.yaml:5: unknown key "vrrp.vrdi"`},
		{"vrid range", "vrrp:\n  interface: eth0\n  vrid: 300\n  vips: [10.0.0.1/24]\n", "t.yaml:3: vrrp.vrid: must be 1-255, got 300"},
		{"vip without prefix", "vrrp:\n  interface: eth0\n  vips:\n    - 10.0.0.1\n", "t.yaml:4: vrrp.vips[0]: \"10.0.0.1\" has no prefix length"},
		{"duration without unit", minimal + "  advert_interval: 1\n", "t.yaml:5"},
		{"v2 centiseconds", minimal + "  version: 2\n  advert_interval: 150ms\n", "vrrp.advert_interval: VRRPv2 counts whole seconds"},
		{"v3 auth", minimal + "  auth_pass: x\n", "vrrp.auth_pass: VRRPv3 has no authentication"},
		{"peer interval below ours", minimal + "  max_peer_advert_interval: 100ms\n", "t.yaml:5: vrrp.max_peer_advert_interval: must be at least advert_interval (200ms)"},
		{"peer interval v2", minimal + "  version: 2\n  max_peer_advert_interval: 3s\n", "t.yaml:6: vrrp.max_peer_advert_interval: is VRRPv3 only"},
		{"missing interface", "vrrp:\n  vips: [10.0.0.1/24]\n", "t.yaml:1: vrrp.interface: is required"},
		{"backend not host:port", minimal + "proxy:\n  backends:\n    - 10.0.0.1\n", "t.yaml:7: proxy.backends[0]: \"10.0.0.1\" is not host:port"},
		{"backend port", minimal + "proxy:\n  backends: [\"10.0.0.1:70000\"]\n", "t.yaml:6: proxy.backends[0]: \"10.0.0.1:70000\": port 70000 out of range (port must be 1-65535)"},
		{"duplicate backend", minimal + "proxy:\n  backends: [10.0.0.1:6443, 10.0.0.1:6443]\n", "t.yaml:6: proxy.backends[1]: duplicate backend \"10.0.0.1:6443\" (same as proxy.backends[0])"},
		{"health path", minimal + "proxy:\n  backends: [10.0.0.1:6443]\nhealth:\n  path: readyz\n", "t.yaml:8: health.path: \"readyz\" must start with \"/\""},
		{"cluster key", minimal + "cluster:\n  enabled: true\n  peers: [10.0.0.2:7946]\n", "cluster.key_file: is required"},
		{"bad yaml", "vrrp: [\n", "t.yaml"},
		{"empty", "", "file is empty"},
		{"package example", ExampleMarker + "\n" + minimal, "t.yaml:1: this is the example configuration installed by the package: edit it"},
		{"log format", "log_format: xml\n" + minimal, `t.yaml:1: log_format: "xml" is not one of text, json`},
		{"wrong type", "vrrp:\n  interface: eth0\n  vrid: abc\n  vips: [10.0.0.1/24]\n", "t.yaml:3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("want error containing %q, got none", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error is %T, want Errors", err)
			}
		})
	}
}

func TestFingerprintIgnoresOrderNotContent(t *testing.T) {
	a, _ := Parse("a", []byte(minimal+"proxy:\n  backends: [10.0.0.1:6443, 10.0.0.2:6443]\n"))
	b, _ := Parse("b", []byte(minimal+"proxy:\n  backends: [10.0.0.2:6443, 10.0.0.1:6443]\n"))
	c, _ := Parse("c", []byte(minimal+"proxy:\n  backends: [10.0.0.2:6443]\n"))
	if a.Fingerprint() != b.Fingerprint() {
		t.Error("backend order must not change the fingerprint")
	}
	if a.Fingerprint() == c.Fingerprint() {
		t.Error("different backends must change the fingerprint")
	}
}
