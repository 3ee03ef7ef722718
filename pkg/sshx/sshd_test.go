package sshx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/vipd-project/vipd/pkg/sshx/sshdtest"
)

type sshd struct {
	port    int
	hostPub ssh.PublicKey
	keyFile string
}

func writeKey(t *testing.T, path string) ssh.PublicKey { return sshdtest.WriteKey(t, path) }

func startSSHD(t *testing.T) *sshd {
	s := sshdtest.Start(t)
	return &sshd{port: s.Port, hostPub: s.HostKey, keyFile: s.KeyFile}
}

func (s *sshd) knownHostsFile(t *testing.T, withKey bool) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	if withKey {
		line := knownhosts.Line([]string{knownhosts.Normalize(fmt.Sprintf("127.0.0.1:%d", s.port))}, s.hostPub)
		if err := os.WriteFile(p, []byte(line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func (s *sshd) rootConfig(kh *KnownHosts) Config {
	return Config{Host: "h1", Addr: "127.0.0.1", Port: s.port, User: "root", IdentityFile: s.keyFile, KnownHosts: kh, ConnectTimeout: 5 * time.Second, Patience: 500 * time.Millisecond, RetryDelay: 100 * time.Millisecond}
}

func TestKeyAuthAcceptNewAndExitCodes(t *testing.T) {
	s := startSSHD(t)
	ctx := context.Background()
	khPath := filepath.Join(t.TempDir(), "sub", "known_hosts") // directory does not exist yet
	c, err := Dial(ctx, s.rootConfig(NewKnownHosts(khPath, true)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	st, err := os.Stat(khPath)
	if err != nil {
		t.Fatalf("accepted key not recorded: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts mode %04o, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(khPath)
	want := fmt.Sprintf("[127.0.0.1]:%d ssh-ed25519 ", s.port)
	if !strings.HasPrefix(string(b), want) || strings.Count(string(b), "\n") != 1 {
		t.Errorf("known_hosts = %q, want one line starting %q", b, want)
	}

	res, err := c.Run(ctx, "echo out; echo line1 >&2; echo line2 >&2; exit 3")
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("want *ExitError, got %v", err)
	}
	if ee.ExitCode != 3 || res.ExitCode != 3 || res.Stdout != "out\n" || ee.Stderr != "line1\nline2" {
		t.Errorf("exit error = %+v, result = %+v", ee, res)
	}
	res, err = c.Run(ctx, "id -u; printf '%s' \"$SSH_CONNECTION\" >&2")
	if err != nil || res.Stdout != "0\n" {
		t.Fatalf("id -u: %q %v", res.Stdout, err)
	}
	// One connection reused: the client's source port is the same for every command.
	first := res.Stderr
	for i := 0; i < 3; i++ {
		r, err := c.Run(ctx, "printf '%s' \"$SSH_CONNECTION\"")
		if err != nil {
			t.Fatal(err)
		}
		if r.Stdout != first {
			t.Errorf("command %d ran on connection %q, first on %q", i, r.Stdout, first)
		}
	}

	// A second client with the recorded key connects without accept-new.
	c2, err := Dial(ctx, s.rootConfig(NewKnownHosts(khPath, false)))
	if err != nil {
		t.Fatalf("recorded key not accepted: %v", err)
	}
	c2.Close()
	if b2, _ := os.ReadFile(khPath); string(b2) != string(b) {
		t.Errorf("known_hosts changed on a known host: %q", b2)
	}

	// Cancellation ends a long command promptly.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Run(cctx, "sleep 30"); err == nil {
		t.Error("sleep 30 returned no error after cancel")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancel took %s", d)
	}
}

// --accept-new-host-keys through a symlinked known_hosts (dotfiles): the key is written to
// the link's target, the link stays a link, and the recorded fingerprint is reported.
func TestAcceptNewThroughSymlink(t *testing.T) {
	s := startSSHD(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "dotfiles", "known_hosts")
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, []byte("# mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "known_hosts")
	if err := os.Symlink("dotfiles/known_hosts", link); err != nil {
		t.Fatal(err)
	}
	kh := NewKnownHosts(link, true)
	var told []string
	kh.Recorded = func(host, addr, keyType, fp, file string) {
		told = append(told, strings.Join([]string{host, addr, keyType, fp, file}, " "))
	}
	c, err := Dial(context.Background(), s.rootConfig(kh))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	fi, err := os.Lstat(link)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("known_hosts is no longer a symlink: %v %v", fi.Mode(), err)
	}
	b, _ := os.ReadFile(target)
	if !strings.HasPrefix(string(b), "# mine\n[127.0.0.1]:") {
		t.Errorf("target = %q, want the old line then the new key", b)
	}
	fp := ssh.FingerprintSHA256(s.hostPub)
	if len(told) != 1 || !strings.Contains(told[0], "h1 ") || !strings.Contains(told[0], fp) {
		t.Errorf("recorded = %q, want one report naming h1 and %s", told, fp)
	}
	// A dangling link: the file it names is created.
	dangling := filepath.Join(dir, "kh2")
	if err := os.Symlink(filepath.Join(dir, "new-known-hosts"), dangling); err != nil {
		t.Fatal(err)
	}
	c, err = Dial(context.Background(), s.rootConfig(NewKnownHosts(dangling, true)))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if fi, err := os.Lstat(dangling); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("dangling known_hosts link replaced by a file")
	}
	if _, err := os.Stat(filepath.Join(dir, "new-known-hosts")); err != nil {
		t.Errorf("the link's target was not created: %v", err)
	}
}

func TestUnknownHostRefused(t *testing.T) {
	s := startSSHD(t)
	kh := s.knownHostsFile(t, false)
	_, err := Dial(context.Background(), s.rootConfig(NewKnownHosts(kh, false)))
	var hke *HostKeyError
	if !errors.As(err, &hke) {
		t.Fatalf("want *HostKeyError, got %v", err)
	}
	fp := ssh.FingerprintSHA256(s.hostPub)
	if hke.Changed || hke.Fingerprint != fp || !strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), "h1") || !strings.Contains(err.Error(), "--accept-new-host-keys") {
		t.Errorf("error %q: want unknown host h1 with fingerprint %s", err, fp)
	}
	if _, err := os.Stat(kh); !errors.Is(err, os.ErrNotExist) {
		t.Error("known_hosts was written although new keys were not accepted")
	}
}

func TestChangedHostKeyRefused(t *testing.T) {
	s := startSSHD(t)
	other := writeKey(t, filepath.Join(t.TempDir(), "other"))
	kh := filepath.Join(t.TempDir(), "known_hosts")
	content := "# comment\n" + knownhosts.Line([]string{"example.org"}, other) + "\n" +
		knownhosts.Line([]string{knownhosts.Normalize(fmt.Sprintf("127.0.0.1:%d", s.port))}, other) + "\n"
	if err := os.WriteFile(kh, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, accept := range []bool{false, true} {
		_, err := Dial(context.Background(), s.rootConfig(NewKnownHosts(kh, accept)))
		var hke *HostKeyError
		if !errors.As(err, &hke) || !hke.Changed {
			t.Fatalf("accept-new=%v: want changed-key error, got %v", accept, err)
		}
		msg := err.Error()
		for _, want := range []string{"h1", ssh.FingerprintSHA256(s.hostPub), kh + ":3", ssh.FingerprintSHA256(other), "CHANGED"} {
			if !strings.Contains(msg, want) {
				t.Errorf("accept-new=%v: error %q does not name %q", accept, msg, want)
			}
		}
	}
	if b, _ := os.ReadFile(kh); string(b) != content {
		t.Error("known_hosts modified after a changed key")
	}
}

func TestUploadAtomicWithMode(t *testing.T) {
	s := startSSHD(t)
	ctx := context.Background()
	c, err := Dial(ctx, s.rootConfig(NewKnownHosts(s.knownHostsFile(t, true), false)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	dst := filepath.Join(dir, "vipd.yaml")
	if err := os.WriteFile(dst, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var before syscall.Stat_t
	syscall.Stat(dst, &before)
	data := []byte(strings.Repeat("x", 300000) + "\n")
	if err := c.Upload(ctx, dst, data, 0o640, "root:daemon"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	if string(got) != string(data) {
		t.Errorf("content: %d bytes, want %d", len(got), len(data))
	}
	var after syscall.Stat_t
	syscall.Stat(dst, &after)
	if after.Mode&0o777 != 0o640 || after.Uid != 0 || after.Gid != 1 {
		t.Errorf("mode %04o uid %d gid %d, want 0640 root:daemon(1)", after.Mode&0o777, after.Uid, after.Gid)
	}
	if after.Ino == before.Ino {
		t.Error("file rewritten in place (same inode), not replaced by a rename")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temp files left: %v", ents)
	}
	// A failed upload (directory missing) leaves nothing behind and reports the host.
	err = c.Upload(ctx, filepath.Join(dir, "nodir", "f"), data, 0o600, "root")
	if err == nil || !strings.Contains(err.Error(), "h1") {
		t.Errorf("upload into a missing directory: %v", err)
	}
}

func TestJumpHost(t *testing.T) {
	s := startSSHD(t)
	kh := NewKnownHosts(s.knownHostsFile(t, true), false)
	cfg := s.rootConfig(kh)
	cfg.Jump = &JumpConfig{Addr: "127.0.0.1", Port: s.port, User: "root", IdentityFile: s.keyFile}
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Run(context.Background(), "echo via jump")
	if err != nil || res.Stdout != "via jump\n" {
		t.Fatalf("%q %v", res.Stdout, err)
	}
	if c.jump == nil {
		t.Error("no jump connection was used")
	}
}

// TestPasswordUserWithSudo creates a throwaway local user with a password and a sudoers
// entry (removed by t.Cleanup) and checks password login, sudo with a password, an upload as
// that user, and the errors for a wrong ssh password and a wrong sudo password.
func TestPasswordUserWithSudo(t *testing.T) {
	s := startSSHD(t)
	for _, bin := range []string{"useradd", "userdel", "chpasswd", "sudo", "visudo"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	rnd := make([]byte, 3)
	rand.Read(rnd)
	user := "bst" + hex.EncodeToString(rnd)
	pass := "pw-" + hex.EncodeToString(rnd) + "-x"
	if out, err := exec.Command("useradd", "-M", "-s", "/bin/sh", "-d", "/nonexistent", user).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v %s", err, out)
	}
	sudoers := "/etc/sudoers.d/" + user
	t.Cleanup(func() {
		os.Remove(sudoers)
		os.RemoveAll("/run/sudo/ts/" + user)
		if out, err := exec.Command("userdel", "-f", user).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v %s", user, err, out)
		}
	})
	chp := exec.Command("chpasswd")
	chp.Stdin = strings.NewReader(user + ":" + pass + "\n")
	if out, err := chp.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v %s", err, out)
	}
	if err := os.WriteFile(sudoers, []byte(user+" ALL=(ALL:ALL) ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("visudo", "-cf", sudoers).CombinedOutput(); err != nil {
		t.Fatalf("visudo: %v %s", err, out)
	}
	khFile := s.knownHostsFile(t, true)
	cfg := Config{Host: "m2", Addr: "127.0.0.1", Port: s.port, User: user, Password: pass, SudoPassword: pass,
		KnownHosts: NewKnownHosts(khFile, false), ConnectTimeout: 5 * time.Second, Patience: time.Second, RetryDelay: 200 * time.Millisecond}
	ctx := context.Background()
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Run(ctx, "id -u; cat; echo done")
	if err != nil || res.Stdout != "0\ndone\n" {
		t.Fatalf("sudo id -u: %q %v (the password must not reach the command's stdin)", res.Stdout, err)
	}
	if strings.Contains(res.Stdout+res.Stderr, pass) {
		t.Error("the sudo password appeared in the command's output")
	}
	dir := t.TempDir()
	dst := filepath.Join(dir, "f.conf")
	if err := c.Upload(ctx, dst, []byte("secret-free\n"), 0o644, "root"); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	syscall.Stat(dst, &st)
	if b, _ := os.ReadFile(dst); string(b) != "secret-free\n" || st.Uid != 0 || st.Mode&0o777 != 0o644 {
		t.Errorf("upload as %s: %q uid %d mode %04o", user, b, st.Uid, st.Mode&0o777)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files left: %v", ents)
	}

	bad := cfg
	bad.SudoPassword = "Hunter2-not-it"
	_, err = Dial(ctx, bad)
	var se *SudoError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "sudo password rejected on host m2") || !strings.Contains(err.Error(), "password was wrong") {
		t.Errorf("wrong sudo password: got %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "Hunter2") {
		t.Errorf("error echoes the password: %v", err)
	}

	bad = cfg
	bad.Password = "wrong"
	start := time.Now()
	_, err = Dial(ctx, bad)
	var ae *AuthError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "m2") {
		t.Errorf("wrong ssh password: got %v", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("auth failure took %s: auth errors must not be retried", d)
	}
}

func TestTransientErrorsRetried(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens: connection refused
	cfg := Config{Host: "h", Addr: "127.0.0.1", Port: port, User: "root", Password: "x",
		KnownHosts: NewKnownHosts(filepath.Join(t.TempDir(), "kh"), false), Patience: time.Second, RetryDelay: 100 * time.Millisecond, MaxRetryDelay: 200 * time.Millisecond}
	start := time.Now()
	_, err = Dial(context.Background(), cfg)
	d := time.Since(start)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("want connection refused, got %v", err)
	}
	var ce *ConnectError
	if !errors.As(err, &ce) || ce.Attempts < 3 {
		t.Errorf("want a *ConnectError after several attempts, got %#v", err)
	}
	if !strings.Contains(err.Error(), "host h") || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("error does not name host and address: %v", err)
	}
	// Attempts for 1s (patience), not beyond.
	if d < 700*time.Millisecond || d > 5*time.Second {
		t.Errorf("gave up after %s, want about the 1s of patience", d)
	}
}

// An sshd that refuses connections for 8 s (a restart, the end of a reboot) is waited for
// with the default patience; the old fixed 3 retries (1+2+4 s) gave up after 7 s.
func TestPatienceRidesOutOutage(t *testing.T) {
	s := startSSHD(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // refused until the proxy below starts
	cfg := s.rootConfig(NewKnownHosts(s.knownHostsFile(t, false), true))
	cfg.Port, cfg.Patience, cfg.RetryDelay = port, 0, 0 // the defaults
	outage := 8 * time.Second
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		select {
		case <-time.After(outage):
		case <-stop:
			return
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Errorf("proxy listen: %v", err)
			return
		}
		go func() { <-stop; l.Close() }()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)))
			if err != nil {
				c.Close()
				continue
			}
			go func() { <-stop; c.Close(); u.Close() }()
			go func() { _, _ = io.Copy(u, c); u.Close(); c.Close() }()
			go func() { _, _ = io.Copy(c, u); u.Close(); c.Close() }()
		}
	}()
	start := time.Now()
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("gave up after %s during an %s outage: %v", time.Since(start).Round(time.Millisecond), outage, err)
	}
	defer c.Close()
	if res, err := c.Run(context.Background(), "echo ok"); err != nil || res.Stdout != "ok\n" {
		t.Errorf("after the outage: %q %v", res.Stdout, err)
	}
}

func TestQuote(t *testing.T) {
	out, err := exec.Command("sh", "-c", "printf '%s' "+Quote(`a 'b' $c "d"`)).Output()
	if err != nil || string(out) != `a 'b' $c "d"` {
		t.Errorf("Quote round trip: %q %v", out, err)
	}
}

// Agent auth: the key is only in an ssh-agent (started for the test, ended by PID).
func TestAgentAuth(t *testing.T) {
	s := startSSHD(t)
	for _, bin := range []string{"ssh-agent", "ssh-add"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 100 {
			t.Fatal("ssh-agent did not create its socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
	add := exec.Command("ssh-add", s.keyFile)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v %s", err, out)
	}
	t.Setenv("SSH_AUTH_SOCK", sock)
	cfg := s.rootConfig(NewKnownHosts(s.knownHostsFile(t, true), false))
	cfg.IdentityFile = ""
	cfg.Agent = true
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("agent auth: %v", err)
	}
	c.Close()
	// Without the agent there is no way in.
	cfg.Agent = false
	_, err = Dial(context.Background(), cfg)
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Errorf("no auth method: want *AuthError, got %v", err)
	}
}

// A server that accepts TCP but never speaks SSH: each attempt ends at the connect
// timeout, the attempts are retried, and the error says it timed out.
func TestHandshakeTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open, silent, until the test ends
		}
	}()
	defer func() {
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	}()
	cfg := Config{Host: "silent", Addr: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port, User: "root", Password: "x",
		KnownHosts: NewKnownHosts(filepath.Join(t.TempDir(), "kh"), false), ConnectTimeout: 300 * time.Millisecond, Patience: 400 * time.Millisecond, RetryDelay: 50 * time.Millisecond}
	start := time.Now()
	_, err = Dial(context.Background(), cfg)
	d := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "silent") || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("err = %v", err)
	}
	if d < 600*time.Millisecond || d > 5*time.Second {
		t.Errorf("took %s, want two attempts of 300ms", d)
	}
	if n := len(accepted); n != 2 {
		t.Errorf("%d connection attempts, want 2 (one retry)", n)
	}
}

// Many commands at once on one connection: more than sshd's MaxSessions (10) would be
// refused; the client queues them instead.
func TestManyConcurrentCommands(t *testing.T) {
	s := startSSHD(t)
	c, err := Dial(context.Background(), s.rootConfig(NewKnownHosts(s.knownHostsFile(t, true), false)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errs := make(chan error, 30)
	for i := 0; i < 30; i++ {
		go func() {
			res, err := c.Run(context.Background(), fmt.Sprintf("sleep 0.1; echo %d", i))
			if err == nil && res.Stdout != fmt.Sprintf("%d\n", i) {
				err = fmt.Errorf("command %d printed %q", i, res.Stdout)
			}
			errs <- err
		}()
	}
	for i := 0; i < 30; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
