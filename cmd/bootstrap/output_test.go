package main

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unreachableTopology: two hosts whose SSH port refuses connections (1 s of patience).
func unreachableTopology(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	t.Setenv("BOOTSTRAP_SSH_PASSWORD", "x")
	return writeFile(t, fmt.Sprintf(`loadBalancer: {vip: 127.0.0.100/8}
ssh: {user: root, port: %d, knownHosts: %s, agent: false, connectPatience: 1s}
hosts:
  - {name: m1, address: 127.0.0.1, role: master}
  - {name: lb1, address: 127.0.0.2, role: lb}
`, port, filepath.Join(t.TempDir(), "kh")))
}

// up --dry-run with two broken hosts names both (it stopped at the first), in about one
// patience (they are asked at once), and exits 3 (SSH).
func TestDryRunNamesEveryBrokenHost(t *testing.T) {
	top := unreachableTopology(t)
	start := time.Now()
	code, out, stderr := runCLI(t, "up", "--dry-run", "-f", top)
	d := time.Since(start)
	if code != exitSSH || !strings.Contains(out, "[m1] facts: FAILED") || !strings.Contains(out, "[lb1] facts: FAILED") {
		t.Errorf("exit %d, want 3 and both hosts FAILED\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if !strings.Contains(stderr, "bootstrap: dry run: facts failed on m1, facts failed on lb1") {
		t.Errorf("stderr %q, want one line naming both hosts", stderr)
	}
	if d > 10*time.Second {
		t.Errorf("took %s for two hosts of 1 s patience each", d)
	}
}

// status --output json: one JSON object per host per line; --output yaml is a usage error.
func TestStatusJSON(t *testing.T) {
	top := unreachableTopology(t)
	code, out, stderr := runCLI(t, "status", "--output", "json", "-f", top)
	if code != exitFailed {
		t.Errorf("status of unreachable hosts: exit %d, want 1 (%s)", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, one per host and the diff:\n%s", out)
	}
	var d diffJSON
	if err := json.Unmarshal([]byte(lines[2]), &d); err != nil || d.Type != "diff" || d.Error == "" {
		t.Errorf("last line %q (%v), want the diff, unknown", lines[2], err)
	}
	for i, want := range []string{"m1", "lb1"} {
		var s statusJSON
		if err := json.Unmarshal([]byte(lines[i]), &s); err != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, lines[i])
		}
		if s.Type != "host" || s.Host != want || s.Reachable || s.Error == "" || s.Done == nil {
			t.Errorf("line %d: %+v, want %s unreachable with its error", i+1, s, want)
		}
	}
	code, out, _ = runCLI(t, "up", "--dry-run", "--output", "json", "-f", top)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Errorf("up --output json: not JSON: %q", l)
		}
	}
	if code != exitSSH || !strings.Contains(out, `"type":"failed","host":"lb1","phase":"facts"`) {
		t.Errorf("up --dry-run --output json: exit %d:\n%s", code, out)
	}
	for _, args := range [][]string{{"status", "--output", "yaml"}, {"up", "--output", "yaml"}} {
		if code, _, stderr := runCLI(t, append(args, "-f", top)...); code != exitUsage || !strings.Contains(stderr, "--output") {
			t.Errorf("%v: exit %d %q, want 2 naming --output", args, code, stderr)
		}
	}
}

// bootstrap and vipd alike: no command prints the help on stdout and exits 0; the man page
// says so with the other exit codes.
func TestBareCommandPrintsHelp(t *testing.T) {
	code, out, stderr := runCLI(t)
	if code != exitOK || !strings.Contains(out, "Usage:") || !strings.Contains(out, "Available Commands:") || stderr != "" {
		t.Errorf("bare bootstrap: exit %d, stdout %q, stderr %q; want 0 and the help", code, out, stderr)
	}
	for _, want := range []string{"bootstrap without a command", "2: usage error", "3: SSH refused"} {
		if !strings.Contains(manExitStatus.Text, want) {
			t.Errorf("EXIT STATUS lacks %q", want)
		}
	}
}
