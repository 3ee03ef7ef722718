package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the config loader: it never panics or hangs; a refusal is
// an Errors whose every line names the file; and a file it accepts converts into package
// Configs that their own Validate accepts (check and run cannot disagree).
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../../deploy/vipd.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "proxy:\n  backends: [10.0.0.1:6443, 10.0.0.2:6443]\n  keepalive: 1s\nhealth:\n  type: tcp\n  fast_interval: 10ms\n"))
	f.Add([]byte(minimal + "  version: 2\n  advert_interval: 1s\n  auth_pass: abc\n  unicast_peers: [10.0.0.2]\n"))
	f.Add([]byte("vrrp:\n  interface: eth0\n  vrid: 0\n  priority: 0\n  advert_interval: 0s\n  vips: [10.0.0.1/24]\n"))
	f.Add([]byte(minimal + "cluster:\n  enabled: true\n  peers: [10.0.0.2:7946]\n  key_file: /k\n  conn_table_max: 0\n"))
	f.Add([]byte("vrrp: {interface: eth0, vips: [\"10.0.0.1/24\"], garp: {refresh: null}}\nproxy: null\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse("f.yaml", b)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error %T %v is not Errors", err, err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "f.yaml") {
					t.Fatalf("error line %q does not name the file", line)
				}
			}
			return
		}
		if err := c.VRRPConfig().Validate(); err != nil {
			t.Fatalf("accepted, but vrrp refuses it: %v", err)
		}
		if c.Proxy != nil {
			if err := c.ProxyConfig().Validate(); err != nil {
				t.Fatalf("accepted, but tcpproxy refuses it: %v", err)
			}
			if err := c.HealthConfig().Validate(); err != nil {
				t.Fatalf("accepted, but health refuses it: %v", err)
			}
		}
		if err := c.ClusterConfig().Validate(); err != nil {
			t.Fatalf("accepted, but cluster refuses it: %v", err)
		}
		if got := RestartRequired(c, c); len(got) != 0 {
			t.Fatalf("a file compared with itself needs a restart for %v", got)
		}
		_ = c.Fingerprint()
	})
}
