package importer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vipd-project/vipd/pkg/config"
)

func load(t *testing.T, name string) Sources {
	t.Helper()
	var s Sources
	for _, f := range []struct {
		suffix string
		file   *string
		data   *[]byte
	}{{"-keepalived.conf", &s.KeepalivedFile, &s.Keepalived}, {"-haproxy.cfg", &s.HAProxyFile, &s.HAProxy}} {
		p := filepath.Join("testdata", name+f.suffix)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		*f.file, *f.data = p, b
	}
	return s
}

// TestImportVariants: the reference setup, kubeadm's guide and four real-world variants
// translate into a vipd.yaml that passes vipd's own validation, with the values a user
// would check and a comment for what was not carried over.
func TestImportVariants(t *testing.T) {
	for name, want := range map[string][]string{
		"kubeadm": {"interface: eth0", "vrid: 51", "priority: 101", "version: 2", "- 192.168.0.40/32", "had no prefix length",
			"auth_pass_file: /etc/vipd/vrrp-pass", "listen: \":8443\"", "- 192.168.0.11:6443", "type: https", "path: /healthz",
			"expect_status: 200", "insecure_skip_verify: true", "connect_timeout: 5s", "timeout: 10s", "retries: 1",
			"timeout client 35s", "vrrp_script check_apiserver", "track_weight: 2", "option redispatch", "router_id LVS_DEVEL"},
		"reference": {"interface: ens33", "advert_interval: 1s", "- 192.168.10.100/24", "listen: 192.168.10.100:6443",
			"type: tcp", "fall: 3", "rise: 2", "max_conns: 4000", "had weight 2", "track_weight: 0", "timeout client 20s",
			"stats:\n  listen: \":8404\"", "stats auth", "not carried over: global_defs script_user root"},
		"unicast": {"version: 3", "preempt: false", "advert_interval: 0.5s", "unicast_source: 10.0.0.12", "unicast_peers:\n    - 10.0.0.11",
			"listen: \":6443\"", "balance: leastconn", "interval: 2s", "connect_timeout: 3000ms", "is a backup server",
			"not carried over: notify_master", "stats:\n  listen: 10.0.0.12:8405", "nothing runs curl", "max_conns: 20000"},
		"vmac": {"source_mac_check: false", "count: 3", "refresh: 30s", "track_interface: true", "track_interface eth9",
			"not carried over: vrrp_instance B", "- 172.16.0.10/32", "- 172.16.0.11/16", "bind ... ssl", "not carried over: frontend other",
			"balance source", "balance: roundrobin", "option ssl-hello-chk", "inter 3s differs", "server c", "had no check"},
		"checkssl": {"priority: 254", "preempt_delay: 5s", "path: /readyz", "ca_file: /etc/kubernetes/pki/ca.crt", "interval: 1500ms",
			"fall: 2", "rise: 1", "retries: 3", "timeout: 2s", "listen: \":6443\""},
	} {
		t.Run(name, func(t *testing.T) {
			src := load(t, name)
			out, err := Import(src)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := config.Parse(name+".yaml", out); err != nil {
				t.Fatalf("the translation does not pass vipd check: %v\n%s", err, out)
			}
			for _, w := range want {
				if !strings.Contains(string(out), w) {
					t.Errorf("lacks %q:\n%s", w, out)
				}
			}
			for _, secret := range []string{"auth_pass: ", "123456", "admin:secret"} {
				if strings.Contains(string(out), secret) {
					t.Errorf("the translation carries a secret (%q):\n%s", secret, out)
				}
			}
		})
	}
}

func TestImportErrors(t *testing.T) {
	for _, c := range []struct {
		ka, ha, want string
	}{
		{"global_defs {\n}\n", "", "k.conf: no vrrp_instance block"},
		{"vrrp_instance A {\n  interface eth0\n", "", "k.conf: 1 block(s) not closed (the one opened at line 1)"},
		{"}\n", "", "k.conf:1: unmatched \"}\""},
		{"vrrp_instance A {\n  advert_int x\n}\n", "", "k.conf:2: advert_int: \"x\" is not a number of seconds"},
		{"vrrp_instance A {\n  script \"unterminated\n}\n", "", "k.conf:2: unterminated quoted string"},
		{"vrrp_instance A {\n interface eth0\n virtual_ipaddress {\n 10.0.0.1\n }\n}\n", "frontend f\n bind :6443\n default_backend nope\n", "h.cfg:3: default_backend nope: no such backend"},
		{"vrrp_instance A {\n interface eth0\n virtual_ipaddress {\n 10.0.0.1\n }\n}\n", "defaults\n mode tcp\n", "h.cfg: no frontend with a default_backend"},
	} {
		_, err := Import(Sources{KeepalivedFile: "k.conf", Keepalived: []byte(c.ka), HAProxyFile: "h.cfg", HAProxy: []byte(c.ha)})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q / %q: error %v, want %q", c.ka, c.ha, err, c.want)
		}
	}
}
