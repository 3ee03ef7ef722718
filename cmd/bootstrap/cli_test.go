package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/vipd-project/vipd/pkg/sshx/sshdtest"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "topology.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadTopologyExitsTwo(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"literal password": {`loadBalancer: {vip: 10.0.0.100/24}
ssh:
  password: "1"
hosts:
  - {name: m1, address: 10.0.0.1, role: master}
  - {name: lb1, address: 10.0.0.2, role: lb}
`, "topology.yaml:3: ssh.password: a literal password is not accepted"},
		"unknown role": {`loadBalancer: {vip: 10.0.0.100/24}
hosts:
  - {name: m1, address: 10.0.0.1, role: master}
  - {name: lb1, address: 10.0.0.2, role: haproxy}
`, `topology.yaml:4: hosts[1].role: unknown role "haproxy"`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "up", "--dry-run", "-f", writeFile(t, c.yaml))
			if code != exitUsage || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, c.want)
			}
		})
	}
	if code, _, stderr := runCLI(t, "up", "-f", "/nonexistent/topology.yaml"); code != exitUsage || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing file: exit %d %q", code, stderr)
	}
}

// A host that refuses connections for longer than ssh.connectPatience: exit 3 (documented:
// SSH refused), after about that long, naming the host.
func TestUnreachableHostExitsThree(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	top := writeFile(t, fmt.Sprintf(`loadBalancer: {vip: 127.0.0.100/8}
ssh: {user: root, port: %d, knownHosts: %s, agent: false, connectPatience: 2s}
hosts:
  - {name: m1, address: 127.0.0.1, role: master}
  - {name: lb1, address: 127.0.0.2, role: lb}
`, port, filepath.Join(t.TempDir(), "kh")))
	t.Setenv("BOOTSTRAP_SSH_PASSWORD", "x")
	start := time.Now()
	code, out, stderr := runCLI(t, "up", "--dry-run", "--only", "init", "-f", top)
	d := time.Since(start)
	if code != exitSSH || !strings.Contains(out, "m1") || !strings.Contains(out, "connectPatience") {
		t.Errorf("exit %d, want 3 naming m1 and ssh.connectPatience\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if d < 1500*time.Millisecond || d > 15*time.Second {
		t.Errorf("gave up after %s, want about the 2s of patience", d)
	}
	for _, args := range [][]string{{"status", "extra"}, {"help"}} {
		code, _, stderr := runCLI(t, args...)
		want := map[string]int{"status": exitUsage, "help": exitOK}[args[0]]
		if code != want {
			t.Errorf("%v: exit %d (%s), want %d", args, code, stderr, want)
		}
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{{"up", "--only", "lb,nope"}, {"frobnicate"}, {"up", "--no-such-flag"}} {
		code, _, stderr := runCLI(t, args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d (%s), want 2", args, code, stderr)
		}
	}
}

// Against a real sshd on 127.0.0.1: an unknown host key is refused (exit 3) naming the host
// and the fingerprint; --accept-new-host-keys records it and the plan is printed; a changed
// key is refused (exit 3) even with --accept-new-host-keys.
func TestHostKeysThroughTheCLI(t *testing.T) {
	s := sshdtest.Start(t)
	if _, err := os.Stat("/etc/kubernetes/admin.conf"); err == nil {
		t.Skip("this machine has /etc/kubernetes/admin.conf")
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	top := writeFile(t, fmt.Sprintf(`cluster: {name: t}
loadBalancer: {vip: 127.0.0.100/8}
ssh: {user: root, port: %d, identityFile: %s, knownHosts: %s, agent: false}
hosts:
  - {name: m1, address: 127.0.0.1, role: master}
  - {name: lb1, address: 127.0.0.2, role: lb}
`, s.Port, s.KeyFile, kh))
	fp := ssh.FingerprintSHA256(s.HostKey)

	code, out, stderr := runCLI(t, "up", "--dry-run", "--only", "init", "-f", top)
	if code != exitSSH || !strings.Contains(out, "[m1] init: FAILED") || !strings.Contains(out, fp) || !strings.Contains(out, "unknown host key") {
		t.Fatalf("unknown host: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if !strings.Contains(stderr, "warning:") || !strings.Contains(stderr, "one lb host") {
		t.Errorf("topology warning not printed: %q", stderr)
	}

	code, out, stderr = runCLI(t, "up", "--dry-run", "--only", "init", "--accept-new-host-keys", "-f", top)
	if code != exitOK || !strings.Contains(out, "[m1] init: would kubeadm init --config /etc/kubernetes/kubeadm-config.yaml --upload-certs") {
		t.Fatalf("accept-new: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if b, _ := os.ReadFile(kh); !strings.Contains(string(b), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey)))) {
		t.Errorf("key not recorded: %q", b)
	}
	// The operator is told which key was trusted, for each host.
	for _, h := range []string{"m1"} {
		if !strings.Contains(stderr, "recorded the host key of "+h+" ") || !strings.Contains(stderr, fp) {
			t.Errorf("accept-new did not print the recorded fingerprint of %s (%s):\n%s", h, fp, stderr)
		}
	}

	other := sshdtest.WriteKey(t, filepath.Join(t.TempDir(), "k"))
	line := knownhosts.Line([]string{knownhosts.Normalize(fmt.Sprintf("127.0.0.1:%d", s.Port))}, other)
	if err := os.WriteFile(kh, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(t, "up", "--dry-run", "--only", "init", "--accept-new-host-keys", "-f", top)
	if code != exitSSH || !strings.Contains(out, "HOST KEY CHANGED") || !strings.Contains(out, fp) || !strings.Contains(out, kh+":1") {
		t.Fatalf("changed key: exit %d\n%s", code, out)
	}
}

func TestUsageAndVersionLikeVipd(t *testing.T) {
	for _, args := range [][]string{{"bogus"}, {"--bogus"}, {"status", "extra"}, {"up", "--only"}} {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	code1, out1, _ := runCLI(t, "--version")
	code2, out2, _ := runCLI(t, "version")
	if code1 != 0 || code2 != 0 || out1 != out2 || !strings.HasPrefix(out1, "bootstrap ") || !strings.Contains(out1, "(commit ") {
		t.Fatalf("--version: %d %q; version: %d %q", code1, out1, code2, out2)
	}
}
