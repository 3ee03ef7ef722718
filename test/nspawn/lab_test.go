package nspawn

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// lockedBuffer is a bytes.Buffer safe for the two copy goroutines of an SSH session.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// sshRun runs cmd on a lab host over SSH from the operator namespace, verifying the host
// key against the lab's known_hosts.
func sshRun(ctx context.Context, l *Lab, h *Host, cfg *ssh.ClientConfig, cmd string, stdin string) (string, error) {
	hk, err := knownhosts.New(l.KnownHosts)
	if err != nil {
		return "", err
	}
	cfg.HostKeyCallback = hk
	cfg.Timeout = 10 * time.Second
	addr := net.JoinHostPort(h.Addr.String(), "22")
	conn, err := l.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return "", err
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	s, err := client.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	var out lockedBuffer
	s.Stdout, s.Stderr = &out, &out
	s.Stdin = strings.NewReader(stdin)
	err = s.Run(cmd)
	return out.String(), err
}

func TestLabBootSSHSudoRepo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, systemd-nspawn)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	log := testLogger(t)
	t0 := time.Now()
	if _, err := EnsureRootfs(ctx, log, ""); err != nil {
		t.Fatal(err)
	}
	t.Logf("rootfs ready in %v", time.Since(t0).Round(time.Millisecond))
	debs, err := DebianDebs(ctx, "", "containerd", "runc")
	if err != nil {
		t.Fatal(err)
	}
	specs := []HostSpec{{"lb1", "lb"}, {"lb2", "lb"}, {"master1", "master"}, {"master2", "master"}, {"master3", "master"}, {"worker1", "worker"}}
	t1 := time.Now()
	l, err := Start(ctx, Options{Hosts: specs, Log: log, Repos: []Repo{{Name: "debian", Debs: debs}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		t2 := time.Now()
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		t.Logf("lab closed in %v", time.Since(t2).Round(time.Millisecond))
		for _, ns := range []string{l.BridgeNS, l.OperatorNS, l.Hosts[0].NetNS} {
			if _, err := os.Stat("/run/netns/" + ns); err == nil {
				t.Errorf("netns %s left behind", ns)
			}
		}
	})
	boot := time.Since(t1)
	t.Logf("6 hosts booted in %v", boot.Round(time.Millisecond))
	if boot > 60*time.Second {
		t.Errorf("booting 6 hosts took %v, want well under 60s", boot)
	}

	for _, h := range l.Hosts {
		out, err := l.Exec(ctx, h.Name, "hostname")
		if err != nil || strings.TrimSpace(string(out)) != h.Name {
			t.Errorf("%s: hostname = %q, %v", h.Name, out, err)
		}
		out, err = l.Exec(ctx, h.Name, "ip", "-4", "-o", "addr", "show", "dev", "host0")
		if err != nil || !strings.Contains(string(out), h.Addr.String()+"/") {
			t.Errorf("%s: host0 addresses %q, %v", h.Name, out, err)
		}
	}
	mid0, _ := l.ReadFile("lb1", "/etc/machine-id")
	mid1, _ := l.ReadFile("lb2", "/etc/machine-id")
	if len(bytes.TrimSpace(mid0)) != 32 || bytes.Equal(mid0, mid1) {
		t.Errorf("machine ids not per host: %q %q", mid0, mid1)
	}

	key, err := os.ReadFile(l.SSHKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out, err := sshRun(ctx, l, l.Host("master1"), &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}}, "id -un; systemctl is-system-running", "")
	if err != nil || !strings.HasPrefix(out, "root\n") {
		t.Errorf("ssh root@master1 with key: %q, %v", out, err)
	}
	opsCfg := func(pw string) *ssh.ClientConfig {
		return &ssh.ClientConfig{User: "ops", Auth: []ssh.AuthMethod{ssh.Password(pw)}}
	}
	out, err = sshRun(ctx, l, l.Host("worker1"), opsCfg(l.OpsPassword), "sudo -S -p '' id -u", l.OpsPassword+"\n")
	if err != nil || strings.TrimSpace(out) != "0" {
		t.Errorf("ops sudo with password on worker1: %q, %v", out, err)
	}
	out, err = sshRun(ctx, l, l.Host("worker1"), opsCfg(l.OpsPassword), "sudo -S -p '' id -u", "wrong\n")
	if err == nil {
		t.Errorf("sudo with a wrong password succeeded: %q", out)
	}
	if _, err := sshRun(ctx, l, l.Host("worker1"), opsCfg("wrong"), "true", ""); err == nil {
		t.Errorf("ssh ops with a wrong password succeeded")
	}

	// The lab repository: the real containerd from Debian installs and runs in a guest.
	script := fmt.Sprintf(`set -e
mkdir -p /etc/apt/keyrings
curl -fsS %s | gpg --dearmor -o /etc/apt/keyrings/lab.gpg
echo "deb [signed-by=/etc/apt/keyrings/lab.gpg] %s /" > /etc/apt/sources.list.d/lab.list
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q containerd
for i in $(seq 50); do test -S /run/containerd/containerd.sock && break; sleep 0.2; done
systemctl is-active containerd
ctr version
`, l.RepoKeyURL("debian"), l.RepoURL("debian"))
	t2 := time.Now()
	out2, err := l.Exec(ctx, "master1", "bash", "-c", script)
	if err != nil {
		t.Fatalf("containerd from the lab repo: %v\n%s", err, out2)
	}
	t.Logf("containerd installed and active in %v", time.Since(t2).Round(time.Millisecond))
	mp, _ := l.Exec(ctx, "master1", "modprobe", "overlay")
	t.Logf("modprobe overlay in a guest: %s", strings.TrimSpace(string(mp)))
}

// TestStartFailureCleansUp: a Start that fails half-way (here: its context ends while the
// hosts boot) leaves no namespace, mount or process behind.
func TestStartFailureCleansUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, systemd-nspawn)")
	}
	log := testLogger(t)
	if _, err := EnsureRootfs(context.Background(), log, ""); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	l, err := Start(ctx, Options{Prefix: "vnfail", Hosts: []HostSpec{{"a", "lb"}, {"b", "master"}}, Log: log})
	if err == nil {
		l.Close()
		t.Skip("the lab booted within 400ms: nothing to clean up after")
	}
	t.Logf("Start failed as intended: %v", err)
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), "vnfail") {
		t.Errorf("namespaces left behind:\n%s", out)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), "vipd-lab-vnfail") {
		t.Errorf("overlay mounts left behind")
	}
	if m, _ := filepath.Glob("/sys/fs/cgroup/unified/vipd-lab/vnfail-*"); len(m) > 0 {
		t.Errorf("cgroups left behind: %v", m)
	}
	if left := labProcesses("vnfail", 3*time.Second); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
	if m, _ := filepath.Glob("/var/tmp/vipd-lab-vnfail-*"); len(m) > 0 {
		t.Errorf("lab directories left behind: %v", m)
	}
}

// TestHelperLabProcess is not a test: TestReapStale runs it in a child process that
// starts a lab and is then killed without Close.
func TestHelperLabProcess(t *testing.T) {
	if os.Getenv("VIPD_LAB_HELPER") != "1" {
		t.Skip("helper process for TestReapStale")
	}
	l, err := Start(context.Background(), Options{Prefix: "vnreap", Hosts: []HostSpec{{"a", "lb"}}})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("READY", l.Dir)
	time.Sleep(time.Minute)
}

// TestReapStale: a lab whose process was killed (no Close) is removed by the next Start.
func TestReapStale(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, systemd-nspawn)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperLabProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "VIPD_LAB_HELPER=1")
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var dir string
	for dir == "" {
		if m := regexp.MustCompile(`READY (\S+)`).FindStringSubmatch(out.String()); m != nil {
			dir = m[1]
		} else if strings.Contains(out.String(), "ERROR") || ctx.Err() != nil {
			cmd.Process.Kill()
			t.Fatalf("helper lab: %s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	l, err := Start(ctx, Options{Hosts: []HostSpec{{"b", "lb"}}, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("stale lab dir %s still there", dir)
	}
	if ns, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(ns), "vnreap") {
		t.Errorf("stale namespaces still there:\n%s", ns)
	}
	if left := labProcesses("vnreap", 3*time.Second); len(left) > 0 {
		t.Errorf("stale lab processes still running: %v", left)
	}
}

// labProcesses returns the live (not zombie) processes in the cgroups of labs with this
// prefix, waiting up to wait for exiting ones to go.
func labProcesses(prefix string, wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		var left []string
		cgs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
		for _, f := range cgs {
			b, _ := os.ReadFile(f)
			if !strings.Contains(string(b), "/vipd-lab/"+prefix+"-") {
				continue
			}
			st, _ := os.ReadFile(strings.TrimSuffix(f, "cgroup") + "stat")
			if i := strings.LastIndexByte(string(st), ')'); i > 0 && len(st) > i+2 && st[i+2] != 'Z' {
				left = append(left, strings.TrimSuffix(f, "/cgroup"))
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(100 * time.Millisecond)
	}
}
