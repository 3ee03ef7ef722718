// Package sshx owns bootstrap's SSH transport: connecting with key, ssh-agent or password
// authentication and known_hosts verification (golang.org/x/crypto/ssh), through an optional
// jump host, with retries for transient errors; running commands as root (sudo with a
// password when the login user is not root, the password written to sudo's stdin only); and
// uploading files atomically with explicit modes. One connection per host is reused.
package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Config describes how to reach one host.
type Config struct {
	Host string // name used in messages
	Addr string // address to dial
	Port int
	User string
	// IdentityFile is a private key file (unencrypted; load encrypted keys into ssh-agent).
	IdentityFile string
	// DefaultIdentities are tried when IdentityFile is empty, as OpenSSH tries
	// ~/.ssh/id_ed25519, id_ecdsa and id_rsa: those that exist and are not encrypted (an
	// encrypted one is skipped: load it into ssh-agent).
	DefaultIdentities []string
	// Agent uses the ssh-agent at SSH_AUTH_SOCK.
	Agent bool
	// Password for password and keyboard-interactive auth ("" = none).
	Password string
	// SudoPassword for sudo when User is not root ("" = sudo -n, i.e. NOPASSWD sudoers).
	SudoPassword string
	KnownHosts   *KnownHosts
	Jump         *JumpConfig
	// ConnectTimeout bounds one TCP connect + handshake (default 10s).
	ConnectTimeout time.Duration
	// Patience is how long transient connect errors (refused, timeout, reset, unreachable)
	// are retried, from the first attempt, before giving up with a *ConnectError: long enough
	// to ride out an sshd restart or a reboot's last seconds (default DefaultPatience). It
	// applies to every reconnect, also when a connection drops between two commands. The last
	// attempt starts when it runs out and still lasts up to ConnectTimeout.
	Patience time.Duration
	// RetryDelay is the first delay between attempts, doubled each time up to MaxRetryDelay
	// (defaults 1s and 2s: a host back after an outage is found within 2s).
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// MaxSessions caps the commands running at once on the connection (default 8: OpenSSH
	// refuses more than MaxSessions, 10 by default, per connection).
	MaxSessions int
	Logger      *slog.Logger
}

// JumpConfig is the bastion a connection goes through.
type JumpConfig struct {
	Addr              string
	Port              int
	User              string
	IdentityFile      string
	DefaultIdentities []string // as Config.DefaultIdentities
	Agent             bool
	Password          string
}

// DefaultPatience is Config.Patience's default: an sshd restart (systemctl restart ssh,
// an upgrade of openssh-server) refuses connections for a second or two; a host finishing
// a reboot for tens of seconds.
const DefaultPatience = 30 * time.Second

// ConnectError is returned when the host could not be reached within Config.Patience:
// every attempt met a transient error (refused, timed out, reset, unreachable).
type ConnectError struct {
	Host     string
	Addr     string
	Attempts int
	Waited   time.Duration
	Err      error // the last attempt's error
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("host %s: cannot connect to %s: gave up after %d attempts over %s (ssh.connectPatience): %v", e.Host, e.Addr, e.Attempts, e.Waited.Round(100*time.Millisecond), e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// Result is what a command produced.
type Result struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

// ExitError is returned by Run when the command exited non-zero.
type ExitError struct {
	Host     string
	Cmd      string
	ExitCode int
	Stderr   string // the last lines of stderr
}

func (e *ExitError) Error() string {
	s := fmt.Sprintf("host %s: exit code %d", e.Host, e.ExitCode)
	if e.Stderr != "" {
		s += ": " + e.Stderr
	}
	return s
}

// AuthError is returned when the host refused every authentication method offered.
type AuthError struct {
	Host, User, Methods string
	Err                 error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("host %s: ssh authentication as %q failed (tried %s): %v", e.Host, e.User, e.Methods, e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

// SudoError is returned when sudo refused the password or the user.
type SudoError struct {
	Host, User, Detail string
}

func (e *SudoError) Error() string {
	return fmt.Sprintf("sudo password rejected on host %s (user %s): %s", e.Host, e.User, e.Detail)
}

// Client is one SSH connection to a host, redialled if it drops. Safe for concurrent use.
type Client struct {
	cfg  Config
	log  *slog.Logger
	mu   sync.Mutex
	conn *ssh.Client
	jump *ssh.Client
	seq  int
	sem  chan struct{}
}

// Dial connects to the host (retrying transient errors) and, when the user is not root,
// checks that sudo accepts the password.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Port == 0 {
		cfg.Port = 22
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.Patience == 0 {
		cfg.Patience = DefaultPatience
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	if cfg.MaxRetryDelay <= 0 {
		cfg.MaxRetryDelay = 2 * time.Second
	}
	if cfg.Host == "" {
		cfg.Host = cfg.Addr
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 8
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &Client{cfg: cfg, log: log.With("host", cfg.Host), sem: make(chan struct{}, cfg.MaxSessions)}
	if _, err := c.client(ctx); err != nil {
		return nil, err
	}
	if cfg.User != "root" {
		if _, err := c.Run(ctx, "true"); err != nil {
			c.Close()
			var ee *ExitError
			if errors.As(err, &ee) {
				return nil, fmt.Errorf("host %s: sudo as %s does not work: %w", cfg.Host, cfg.User, err)
			}
			return nil, err
		}
	}
	return c, nil
}

// Host returns the host's name.
func (c *Client) Host() string { return c.cfg.Host }

// Close ends the connection (and the jump host's).
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	if c.conn != nil {
		err = c.conn.Close()
		c.conn = nil
	}
	if c.jump != nil {
		c.jump.Close()
		c.jump = nil
	}
	return err
}

func (c *Client) client(ctx context.Context) (*ssh.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		return c.conn, nil
	}
	start := time.Now()
	delay := c.cfg.RetryDelay
	for attempt := 1; ; attempt++ {
		err := c.connect(ctx)
		if err == nil {
			return c.conn, nil
		}
		if !transient(err) || ctx.Err() != nil {
			return nil, err
		}
		left := c.cfg.Patience - time.Since(start)
		if left <= 0 {
			return nil, &ConnectError{Host: c.cfg.Host, Addr: net.JoinHostPort(c.cfg.Addr, strconv.Itoa(c.cfg.Port)), Attempts: attempt, Waited: time.Since(start), Err: err}
		}
		wait := min(delay, left) // the last attempt starts when the patience runs out
		c.log.Debug("ssh connect failed, retrying", "attempt", attempt, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		delay = min(delay*2, c.cfg.MaxRetryDelay)
	}
}

// transient reports whether a connect error is worth retrying: refused, timed out, reset,
// unreachable, or the handshake cut short (sshd starting). Auth and host key errors are not.
func transient(err error) bool {
	var hke *HostKeyError
	var ae *AuthError
	if errors.As(err, &hke) || errors.As(err, &ae) {
		return false
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "EOF")
}

func (c *Client) connect(ctx context.Context) error {
	addr := net.JoinHostPort(c.cfg.Addr, strconv.Itoa(c.cfg.Port))
	var jump *ssh.Client
	if j := c.cfg.Jump; j != nil {
		jaddr := net.JoinHostPort(j.Addr, strconv.Itoa(j.Port))
		jc, err := c.handshake(ctx, "jump host "+j.Addr, jaddr, nil, j.User, identities(j.IdentityFile, j.DefaultIdentities), j.Agent, j.Password)
		if err != nil {
			return fmt.Errorf("host %s: via jump host: %w", c.cfg.Host, err)
		}
		jump = jc
	}
	conn, err := c.handshake(ctx, c.cfg.Host, addr, jump, c.cfg.User, identities(c.cfg.IdentityFile, c.cfg.DefaultIdentities), c.cfg.Agent, c.cfg.Password)
	if err != nil {
		if jump != nil {
			jump.Close()
		}
		return err
	}
	c.conn, c.jump = conn, jump
	return nil
}

// keyFiles are the identity files of one hop: the configured one (an error if unusable) or
// the defaults that exist (skipped if unusable).
type keyFiles struct {
	files    []string
	optional bool
}

func identities(file string, defaults []string) keyFiles {
	if file != "" {
		return keyFiles{files: []string{file}}
	}
	return keyFiles{files: defaults, optional: true}
}

func (c *Client) handshake(ctx context.Context, name, addr string, via *ssh.Client, user string, keys keyFiles, useAgent bool, password string) (*ssh.Client, error) {
	auth, methods, closeAgent, err := authMethods(keys, useAgent, password, c.cfg.Logger)
	if err != nil {
		return nil, &AuthError{Host: name, User: user, Methods: "none", Err: err}
	}
	defer closeAgent()
	if c.cfg.KnownHosts == nil {
		return nil, fmt.Errorf("host %s: no known_hosts verifier configured", name)
	}
	var refused error
	cc := &ssh.ClientConfig{
		User:              user,
		Auth:              auth,
		HostKeyCallback:   c.cfg.KnownHosts.Callback(name, &refused),
		HostKeyAlgorithms: c.cfg.KnownHosts.Algorithms(addr),
		Timeout:           c.cfg.ConnectTimeout,
	}
	dctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	var conn net.Conn
	if via != nil {
		conn, err = via.DialContext(dctx, "tcp", addr)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("host %s: connect %s: %w", name, addr, err)
	}
	// Bound the handshake by the same timeout.
	deadline, _ := dctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(dctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cc)
	stop()
	if err != nil {
		conn.Close()
		if refused != nil {
			return nil, refused
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, &AuthError{Host: name, User: user, Methods: methods, Err: err}
		}
		return nil, fmt.Errorf("host %s: ssh handshake with %s: %w", name, addr, err)
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), nil
}

func authMethods(keys keyFiles, useAgent bool, password string, log *slog.Logger) ([]ssh.AuthMethod, string, func(), error) {
	var signers []ssh.Signer
	var names []string
	closeFn := func() {}
	for _, identity := range keys.files {
		s, err := loadKey(identity)
		if err != nil {
			if !keys.optional {
				return nil, "", closeFn, err
			}
			if !errors.Is(err, fs.ErrNotExist) && log != nil {
				log.Debug("default identity skipped", "file", identity, "err", err)
			}
			continue
		}
		signers = append(signers, s)
		names = append(names, "key "+identity)
	}
	var auth []ssh.AuthMethod
	if useAgent {
		if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
			ac, err := net.Dial("unix", sock)
			if err != nil {
				return nil, "", closeFn, fmt.Errorf("connect to ssh-agent at SSH_AUTH_SOCK: %w", err)
			}
			closeFn = func() { ac.Close() }
			ag := agent.NewClient(ac)
			fixed := signers
			auth = append(auth, ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
				as, err := ag.Signers()
				if err != nil {
					return fixed, nil
				}
				return append(append([]ssh.Signer(nil), fixed...), as...), nil
			}))
			names = append(names, "ssh-agent")
		}
	}
	if len(auth) == 0 && len(signers) > 0 {
		auth = append(auth, ssh.PublicKeys(signers...))
	}
	if password != "" {
		auth = append(auth, ssh.Password(password), ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
			ans := make([]string, len(qs))
			for i := range qs {
				ans[i] = password
			}
			return ans, nil
		}))
		names = append(names, "password")
	}
	if len(auth) == 0 {
		return nil, "", closeFn, errors.New("no ssh authentication method: set ssh.identityFile (or IdentityFile in ~/.ssh/config, or have ~/.ssh/id_ed25519, id_ecdsa or id_rsa), use ssh-agent (SSH_AUTH_SOCK), or give a password through ssh.passwordEnv")
	}
	return auth, strings.Join(names, ", "), closeFn, nil
}

func loadKey(identity string) (ssh.Signer, error) {
	b, err := os.ReadFile(expandHome(identity))
	if err != nil {
		return nil, fmt.Errorf("read identity file: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	var pm *ssh.PassphraseMissingError
	if errors.As(err, &pm) {
		return nil, fmt.Errorf("identity file %s is encrypted: load it into ssh-agent (ssh-add) and set ssh.agent: true", identity)
	}
	if err != nil {
		return nil, fmt.Errorf("parse identity file %s: %w", identity, err)
	}
	return s, nil
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if h, err := os.UserHomeDir(); err == nil {
			return h + p[1:]
		}
	}
	return p
}

// ExpandHome replaces a leading ~/ with the user's home directory.
func ExpandHome(p string) string { return expandHome(p) }

// Quote returns s quoted for a POSIX shell.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// wrap turns a shell command into the remote command line, run as root: directly when the
// login user is root, otherwise under sudo. stdin of the command itself is /dev/null.
func (c *Client) wrap(cmd string) (line string, stdin []byte) {
	inner := "exec </dev/null; " + cmd
	if c.cfg.User == "root" {
		return "sh -c " + Quote(inner), nil
	}
	if c.cfg.SudoPassword == "" {
		return "sudo -n -- sh -c " + Quote(inner), nil
	}
	// -k: ignore cached credentials, so sudo always reads the password line we send and it
	// can never reach the command. -p '': no prompt on stderr.
	return "sudo -k -S -p '' -- sh -c " + Quote(inner), []byte(c.cfg.SudoPassword + "\n")
}

// Run runs cmd with sh -c as root on the host and returns its output. A non-zero exit gives
// an *ExitError (with the Result filled in); a rejected sudo password a *SudoError.
func (c *Client) Run(ctx context.Context, cmd string) (Result, error) {
	line, stdin := c.wrap(cmd)
	res, err := c.exec(ctx, line, stdin)
	if err != nil {
		return res, err
	}
	if res.ExitCode != 0 {
		if c.cfg.User != "root" && res.ExitCode == 1 {
			if d, ok := sudoFailure(res.Stderr); ok {
				return res, &SudoError{Host: c.cfg.Host, User: c.cfg.User, Detail: d}
			}
		}
		return res, &ExitError{Host: c.cfg.Host, Cmd: cmd, ExitCode: res.ExitCode, Stderr: Tail(res.Stderr, 5)}
	}
	return res, nil
}

func sudoFailure(stderr string) (string, bool) {
	// sudo -S reads one line, says "Sorry, try again." and then finds no more input; the
	// useful line is the count of incorrect attempts.
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, "incorrect password attempt") {
			return "the password was wrong (" + strings.TrimSpace(strings.TrimPrefix(line, "sudo: ")) + ")", true
		}
	}
	for _, marker := range []string{"incorrect password attempt", "Sorry, try again", "no password was provided", "a password is required", "is not in the sudoers file", "is not allowed to execute", "may not run sudo"} {
		if strings.Contains(stderr, marker) {
			return strings.TrimSpace(Tail(stderr, 2)), true
		}
	}
	return "", false
}

// Tail returns the last n non-empty lines of s, joined by "; "-free newlines.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	var out []string
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		if strings.TrimSpace(lines[i]) != "" {
			out = append([]string{lines[i]}, out...)
		}
	}
	return strings.Join(out, "\n")
}

func (c *Client) exec(ctx context.Context, line string, stdin []byte) (Result, error) {
	var res Result
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	case <-ctx.Done():
		return res, fmt.Errorf("host %s: %w", c.cfg.Host, ctx.Err())
	}
	sess, err := c.session(ctx)
	if err != nil {
		return res, err
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	if stdin != nil {
		sess.Stdin = bytes.NewReader(stdin)
	}
	done := make(chan error, 1)
	if err := sess.Start(line); err != nil {
		return res, fmt.Errorf("host %s: start command: %w", c.cfg.Host, err)
	}
	go func() { done <- sess.Wait() }()
	select {
	case <-ctx.Done():
		// Best effort: sshd may refuse signals; closing the channel hangs up the command's
		// pipes. Do not wait for a command that ignores both.
		_ = sess.Signal(ssh.SIGKILL)
		sess.Close()
		select {
		case <-done:
		case <-time.After(time.Second):
		}
		return res, fmt.Errorf("host %s: %w", c.cfg.Host, ctx.Err())
	case err = <-done:
	}
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	var ee *ssh.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitStatus()
		if ee.Signal() != "" && res.ExitCode == 0 {
			res.ExitCode = 128
		}
	default:
		var em *ssh.ExitMissingError
		if errors.As(err, &em) {
			return res, fmt.Errorf("host %s: connection lost while the command ran: %w", c.cfg.Host, err)
		}
		return res, fmt.Errorf("host %s: %w", c.cfg.Host, err)
	}
	return res, nil
}

// session opens a session, redialling once if the connection dropped.
func (c *Client) session(ctx context.Context) (*ssh.Session, error) {
	conn, err := c.client(ctx)
	if err != nil {
		return nil, err
	}
	s, err := conn.NewSession()
	if err == nil {
		return s, nil
	}
	var oce *ssh.OpenChannelError
	if errors.As(err, &oce) {
		// The server refused this session: sshd frees a closed session's slot a little
		// after the client saw the command end, so a burst can meet "no more sessions"
		// (MaxSessions) below our own cap. The connection is fine: back off and retry.
		for delay := 20 * time.Millisecond; delay <= 640*time.Millisecond; delay *= 2 {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil, fmt.Errorf("host %s: open ssh session: %w", c.cfg.Host, ctx.Err())
			}
			if s, err = conn.NewSession(); err == nil {
				return s, nil
			}
			if !errors.As(err, &oce) {
				break
			}
		}
		return nil, fmt.Errorf("host %s: open ssh session: %w", c.cfg.Host, err)
	}
	c.log.Debug("ssh session failed, reconnecting", "err", err)
	c.mu.Lock()
	if c.conn == conn {
		c.conn.Close()
		c.conn = nil
		if c.jump != nil {
			c.jump.Close()
			c.jump = nil
		}
	}
	c.mu.Unlock()
	conn, err = c.client(ctx)
	if err != nil {
		return nil, err
	}
	s, err = conn.NewSession()
	if err != nil {
		return nil, fmt.Errorf("host %s: open ssh session: %w", c.cfg.Host, err)
	}
	return s, nil
}

// Upload writes data to dst on the host atomically (a temp file in dst's directory, then a
// rename) with the given mode and owner ("root", "root:vipd"). The directory must exist.
func (c *Client) Upload(ctx context.Context, dst string, data []byte, mode os.FileMode, owner string) error {
	if !path.IsAbs(dst) {
		return fmt.Errorf("host %s: upload %s: not an absolute path", c.cfg.Host, dst)
	}
	if owner == "" {
		owner = "root"
	}
	dir, base := path.Split(dst)
	c.mu.Lock()
	c.seq++
	seq := c.seq
	c.mu.Unlock()
	tmp := fmt.Sprintf("%s.%s.bootstrap-%d-%d", dir, base, os.Getpid(), seq)
	finish := fmt.Sprintf("chmod %04o %s && chown %s %s && mv -f %s %s", mode.Perm(), Quote(tmp), Quote(owner), Quote(tmp), Quote(tmp), Quote(dst))
	if c.cfg.User == "root" {
		// Data on stdin, straight into the temp file (created 0600 by umask 077).
		line := "sh -c " + Quote(fmt.Sprintf("umask 077; trap 'rm -f %s' EXIT; cat > %s && %s", Quote(tmp), Quote(tmp), finish))
		res, err := c.exec(ctx, line, data)
		if err == nil && res.ExitCode != 0 {
			err = &ExitError{Host: c.cfg.Host, Cmd: "upload " + dst, ExitCode: res.ExitCode, Stderr: Tail(res.Stderr, 5)}
		}
		if err != nil {
			return fmt.Errorf("upload %s: %w", dst, err)
		}
		return nil
	}
	// Not root: stage the data as the login user in a private temp file (no sudo on that
	// stdin, so the password and the data never mix), then move it into place as root.
	stage := "sh -c " + Quote("umask 077; t=$(mktemp) && cat > \"$t\" && echo \"$t\"")
	res, err := c.exec(ctx, stage, data)
	if err == nil && res.ExitCode != 0 {
		err = &ExitError{Host: c.cfg.Host, Cmd: "upload " + dst + " (staging)", ExitCode: res.ExitCode, Stderr: Tail(res.Stderr, 5)}
	}
	if err != nil {
		return fmt.Errorf("upload %s: %w", dst, err)
	}
	staged := strings.TrimSpace(res.Stdout)
	if staged == "" || strings.ContainsAny(staged, "'\n") {
		return fmt.Errorf("host %s: upload %s: mktemp returned %q", c.cfg.Host, dst, staged)
	}
	cmd := fmt.Sprintf("umask 077; trap 'rm -f %s %s' EXIT; cat %s > %s && %s", Quote(tmp), Quote(staged), Quote(staged), Quote(tmp), finish)
	if _, err := c.Run(ctx, cmd); err != nil {
		return fmt.Errorf("upload %s: %w", dst, err)
	}
	return nil
}

// ReadFile returns the content of a file on the host (read as root).
func (c *Client) ReadFile(ctx context.Context, p string) ([]byte, error) {
	res, err := c.Run(ctx, "cat "+Quote(p))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return []byte(res.Stdout), nil
}
