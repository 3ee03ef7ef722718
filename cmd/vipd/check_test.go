package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `vipd check` refuses every configuration `vipd run` refuses, with the same text: they call the
// same function. Each case is a file the old check passed (exit 0) while run, or a reload,
// refused it, so the unit's ExecStartPre passed and the service restart-looped. The interface
// does not exist, so a run that got past validation would stop at the interface: safe anywhere.
func TestCheckRefusesWhatRunRefuses(t *testing.T) {
	dir := t.TempDir()
	secret := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAxMjM=\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	openKey := secret("gossip-open.key", 0o644)
	goodKey := secret("gossip.key", 0o600)
	openPass := secret("vrrp-pass", 0o644)
	openToken := secret("token", 0o644)
	missing := filepath.Join(dir, "missing")

	const head = "node_name: lb1\nvrrp:\n  interface: vipdnone0\n  vips: [10.77.0.100/24]\n"
	const proxy = "proxy:\n  backends: [10.77.0.11:6443]\n"
	cluster := func(extra string) string {
		return "cluster:\n  enabled: true\n  peers: [10.77.0.2:7946]\n  key_file: " + goodKey + "\n" + extra
	}
	cases := []struct {
		name, yaml, want string // want: "line: field: problem"
	}{
		{"secret file mode", "vrrp:\n  interface: vipdnone0\n  version: 2\n  auth_pass_file: " + openPass + "\n  vips: [10.77.0.100/24]\n",
			"4: vrrp.auth_pass_file: " + openPass + " is open to every user"},
		{"missing secret file", head + "stats:\n  basic_auth:\n    username: admin\n    password_file: " + missing + "\n",
			"8: stats.basic_auth.password_file: stat " + missing + ": no such file"},
		{"gossip key mode", head + "cluster:\n  enabled: true\n  peers: [10.77.0.2:7946]\n  key_file: " + openKey + "\n",
			"8: cluster.key_file: " + openKey + " is open to every user"},
		{"bearer token mode", head + proxy + "health:\n  bearer_token_file: " + openToken + "\n",
			"8: health.bearer_token_file: " + openToken + " is open to every user"},
		{"client certificate unusable", head + proxy + "health:\n  tls:\n    cert_file: " + goodKey + "\n    key_file: " + goodKey + "\n",
			"9: health.tls.cert_file: loading it with health.tls.key_file: tls:"},
		{"keepalive below its floor", head + proxy + "  keepalive: 500ms\n", "7: proxy.keepalive: must be 1s-2h"},
		{"duplicate unicast peers", head + "  unicast_peers: [10.77.0.2, 10.77.0.2]\n", "5: vrrp.unicast_peers[1]: 10.77.0.2 listed twice"},
		{"garp interval", head + "  garp:\n    interval: 20s\n", "6: vrrp.garp.interval: 20s out of range 0-10s"},
		{"garp refresh", head + "  garp:\n    refresh: 500ms\n", "6: vrrp.garp.refresh: 500ms must be 0 (off) or 1s-24h"},
		{"stats refresh", head + "stats:\n  refresh: 100ms\n", "6: stats.refresh: must be 1s-1h, got 100ms"},
		{"cluster limits", head + cluster("  conn_table_max: 2000000\n"), "9: cluster.conn_table_max: 2000000 is outside 1-1000000"},
		{"preempt_delay bounds", head + "  preempt_delay: 2000s\n", "5: vrrp.preempt_delay: 33m20s out of range 0-1000s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, tc.yaml)
			want := p + ":" + tc.want
			code, out, checkErr := runCLI(t, "check", "-c", p)
			if code != 1 || !strings.Contains(checkErr, want) {
				t.Fatalf("check: exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, checkErr, want)
			}
			code, _, runErr := runCLI(t, "run", "-c", p)
			if code != 1 || runErr != checkErr {
				t.Fatalf("run must refuse with check's message:\nrun   (exit %d): %q\ncheck (exit 1): %q", code, runErr, checkErr)
			}
		})
	}
}

// --no-host-checks checks a file meant for another machine: its interface and secret files
// are not judged here, everything else is.
func TestCheckNoHostChecks(t *testing.T) {
	p := writeFile(t, "vrrp:\n  interface: vipdnone0\n  version: 2\n  auth_pass_file: /nonexistent/pass\n  vips: [10.77.0.100/24]\n")
	if code, _, errs := runCLI(t, "check", "-c", p); code != 1 || !strings.Contains(errs, p+":2: vrrp.interface: no interface \"vipdnone0\" on this host") {
		t.Fatalf("host checks: exit %d, %q", code, errs)
	}
	if code, out, errs := runCLI(t, "check", "--no-host-checks", "-c", p); code != 0 || !strings.Contains(out, "configuration is valid") {
		t.Fatalf("--no-host-checks: exit %d, %q %q", code, out, errs)
	}
	p = writeFile(t, "vrrp:\n  interface: vipdnone0\n  priority: 0\n  vips: [10.77.0.100/24]\n")
	if code, _, errs := runCLI(t, "check", "--no-host-checks", "-c", p); code != 1 || !strings.Contains(errs, p+":3: vrrp.priority:") {
		t.Fatalf("--no-host-checks must still refuse priority 0: exit %d, %q", code, errs)
	}
}
