package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vipd-project/vipd/pkg/cli"
	"github.com/vipd-project/vipd/pkg/phases"
	"github.com/vipd-project/vipd/pkg/sshx"
	"github.com/vipd-project/vipd/pkg/topology"
)

// Exit codes scripts can rely on (README, bootstrap section).
const (
	exitOK     = 0
	exitFailed = 1             // a phase failed on a host; status: a host is unreachable or half-done
	exitUsage  = cli.ExitUsage // bad topology, flag or command
	exitSSH    = 3             // a host key refused, SSH or sudo authentication refused, or a host unreachable within ssh.connectPatience
)

type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func usageErr(err error) error  { return &exitError{code: exitUsage, err: err} }
func silentExit(code int) error { return &exitError{code: code} }

type globalOpts struct {
	file       string
	acceptNew  bool
	vipdBinary string
	deployDir  string
	verbose    bool
	format     string // --output of up and status: phases.FormatText or FormatJSON
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globalOpts{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "bootstrap",
		Short:         "Build a kubeadm HA Kubernetes cluster with vipd load balancers over SSH",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	pf := root.PersistentFlags()
	pf.StringVarP(&g.file, "file", "f", "topology.yaml", "topology file")
	pf.BoolVar(&g.acceptNew, "accept-new-host-keys", false, "record the host keys of hosts not in known_hosts (a changed key is always refused)")
	pf.StringVar(&g.vipdBinary, "vipd-binary", "", `vipd executable that bootstrap packages as the vipd .deb (version: its own) and installs on the lb hosts ("{arch}" is replaced by the host's architecture; default: vipd next to bootstrap)`)
	pf.StringVar(&g.deployDir, "deploy-dir", "", "directory holding a vipd.service to put in the vipd package instead of the one built into bootstrap")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "debug logging on stderr")

	var only string
	var dryRun bool
	up := &cobra.Command{
		Use:   "up",
		Short: "Build the cluster (or finish building it): " + strings.Join(phases.Names(), ", "),
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sel, err := phases.ParseOnly(only)
			if err != nil {
				return usageErr(err)
			}
			if err := g.parseFormat(); err != nil {
				return err
			}
			return g.withRunner(cmd.Context(), dryRun, func(r *phases.Runner) error {
				return g.up(cmd.Context(), r, sel, dryRun)
			})
		},
	}
	up.Flags().StringVar(&only, "only", "", "run only these phases (comma-separated): "+strings.Join(phases.Names(), ","))
	up.Flags().BoolVar(&dryRun, "dry-run", false, "probe every host at once and print the plan (and every host that fails); change nothing")
	up.Flags().StringVar(&g.format, "output", phases.FormatText, "text, or json: one event per line (for CI)")

	status := &cobra.Command{
		Use:   "status",
		Short: "Per host: reachable, role, phases done, node status, VIP holder; nodes of the file not in the cluster and the reverse",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.parseFormat(); err != nil {
				return err
			}
			return g.withRunner(cmd.Context(), false, func(r *phases.Runner) error {
				sts := r.Status(cmd.Context())
				if err := g.printStatus(r, sts, r.Diff(cmd.Context())); err != nil {
					return err
				}
				for _, s := range sts {
					if !s.Reachable || s.Error != "" || s.HalfDone != "" {
						return silentExit(exitFailed)
					}
				}
				return nil
			})
		},
	}

	status.Flags().StringVar(&g.format, "output", phases.FormatText, "text, or json: one JSON object per host, per line (for CI)")

	var maxOutage time.Duration
	drill := &cobra.Command{
		Use:   "drill",
		Short: "Test HA: stop vipd on the VIP holder, then kubelet + apiserver on a master; measure the outages; restore",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withRunner(cmd.Context(), false, func(r *phases.Runner) error {
				rs, err := r.Drill(cmd.Context(), phases.DrillOptions{MaxOutage: maxOutage})
				if len(rs) > 0 {
					fmt.Fprint(g.stdout, "\n"+phases.FormatDrill(rs))
				}
				if err != nil {
					return err
				}
				if !phases.DrillPassed(rs) {
					fmt.Fprintln(g.stdout, "drill FAILED")
					return silentExit(exitFailed)
				}
				fmt.Fprintln(g.stdout, "drill passed")
				return nil
			})
		},
	}
	drill.Flags().DurationVar(&maxOutage, "max-outage", 15*time.Second, "fail a step whose outage through the VIP is longer")

	var yes bool
	reset := &cobra.Command{
		Use:   "reset",
		Short: "Undo up: kubeadm reset -f on the nodes; vipd stopped and removed; a stuck VIP removed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f, ok := g.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) && !yes {
				fmt.Fprintf(g.stderr, "This destroys the cluster of %s. Type yes to go on: ", g.file)
				line, _ := bufio.NewReader(g.stdin).ReadString('\n')
				if strings.TrimSpace(line) != "yes" {
					return usageErr(errors.New("reset cancelled"))
				}
			}
			return g.withRunner(cmd.Context(), false, func(r *phases.Runner) error {
				return r.Reset(cmd.Context())
			})
		},
	}
	reset.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation on a terminal")

	var outFile string
	kubeconfig := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Write the admin kubeconfig (mode 0600) with its server set to the VIP",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withRunner(cmd.Context(), false, func(r *phases.Runner) error {
				b, err := r.Kubeconfig(cmd.Context())
				if err != nil {
					return err
				}
				if err := sshx.WriteFileAtomic(outFile, b, 0o600); err != nil {
					return fmt.Errorf("write %s: %w", outFile, err)
				}
				fmt.Fprintf(g.stdout, "wrote %s (server %s)\n", outFile, r.Topology().APIServerURL())
				return nil
			})
		},
	}
	kubeconfig.Flags().StringVarP(&outFile, "output", "o", "admin.conf", "file to write")

	root.AddCommand(up, status, drill, reset, kubeconfig, newBundleCmd(g))
	root.AddCommand(g.day2Commands()...)
	cli.AddVersion(root, cli.Version())
	cli.AddDocs(root, "1", manExitStatus)
	cli.StrictUsage(root)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCodeFor(err)
	var ee *exitError
	if errors.As(err, &ee) && ee.err == nil {
		return code
	}
	var plan *phases.PlanError
	if errors.As(err, &plan) {
		fmt.Fprintf(stderr, "bootstrap: %v\n", plan)
		return code
	}
	var pe *phases.PhaseError
	if errors.As(err, &pe) {
		// The runner printed the report; one summary line for scripts reading stderr.
		fmt.Fprintf(stderr, "bootstrap: %s failed on %s\n", pe.Phase, pe.Host)
		return code
	}
	fmt.Fprintf(stderr, "bootstrap: %v\n", err)
	if cli.IsUsage(err) {
		fmt.Fprintln(stderr, "run `bootstrap --help` for usage")
	}
	return code
}

// exitCodeFor maps an error to the exit code by its type: SSH refusals and unreachable hosts
// (3) first, since they may arrive wrapped in a phase failure; then usage errors (2).
func exitCodeFor(err error) int {
	var hke *sshx.HostKeyError
	var ae *sshx.AuthError
	var se *sshx.SudoError
	var ce *sshx.ConnectError
	if errors.As(err, &hke) || errors.As(err, &ae) || errors.As(err, &se) || errors.As(err, &ce) {
		return exitSSH
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var te *topology.Error
	if errors.As(err, &te) || cli.IsUsage(err) {
		return exitUsage
	}
	return exitFailed
}

// withRunner loads the topology, resolves the secrets, and runs fn with a runner whose
// connections are closed at the end.
func (g *globalOpts) withRunner(ctx context.Context, dryRun bool, fn func(r *phases.Runner) error) error {
	top, warns, err := topology.Load(g.file)
	for _, w := range warns {
		fmt.Fprintf(g.stderr, "warning: %s\n", w)
	}
	if err != nil {
		return usageErr(err)
	}
	level := slog.LevelWarn
	if g.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
	sshCfg, err := loadSSHConfig()
	if err != nil {
		return usageErr(err)
	}
	sec, err := resolveSecrets(top, sshCfg, g.stdin, g.stderr, os.Getenv)
	if err != nil {
		return usageErr(err)
	}
	var unit []byte // nil: the one built into bootstrap (deploy/vipd.service)
	if g.deployDir != "" {
		unit, err = os.ReadFile(filepath.Join(g.deployDir, "vipd.service"))
		if err != nil {
			return usageErr(fmt.Errorf("--deploy-dir: %w", err))
		}
	}
	c := &connector{top: top, sshCfg: sshCfg, secrets: sec, acceptNew: g.acceptNew, log: log, notice: g.stderr, known: map[string]*sshx.KnownHosts{}}
	defer c.closeAll()
	r := phases.NewRunner(phases.Options{
		Topology:    top,
		Connect:     c.connect,
		VipdPackage: newPackager(ctx, newBinaryLoader(g.vipdBinary), unit).load,
		Out:         g.stdout,
		Format:      g.format,
		TTY:         isTerminal(g.stdout),
		Log:         log,
		DryRun:      dryRun,
		RerunHint:   "bootstrap up -f " + g.file,
	})
	return fn(r)
}

// ---- secrets

type secrets struct {
	byEnv map[string]string // env var name -> value (from the environment or a prompt)
}

func (s *secrets) get(env string) string { return s.byEnv[env] }

// resolveSecrets reads the passwords the hosts need from their environment variables and,
// when one is missing and stdin is a terminal, prompts for it (once per variable). Nothing is
// written anywhere.
func resolveSecrets(top *topology.Topology, sshCfg *sshConfig, stdin io.Reader, stderr io.Writer, getenv func(string) string) (*secrets, error) {
	s := &secrets{byEnv: map[string]string{}}
	type need struct{ env, what string }
	var needs []need
	seen := map[string]bool{}
	add := func(env, what string) {
		if env == "" || seen[env] {
			return
		}
		seen[env] = true
		if v := getenv(env); v != "" {
			s.byEnv[env] = v
			return
		}
		needs = append(needs, need{env, what})
	}
	for _, h := range top.Hosts {
		c := top.SSHFor(h)
		agent := os.Getenv("SSH_AUTH_SOCK") != "" && (c.Agent == nil || *c.Agent)
		if !agent && !sshCfg.hasKey(h, c) {
			add(c.PasswordEnv, fmt.Sprintf("SSH password for %s", c.User))
		} else if v := getenv(c.PasswordEnv); v != "" {
			s.byEnv[c.PasswordEnv] = v
		}
		if c.User != "root" {
			switch {
			case getenv(c.SudoPasswordEnv) != "":
				s.byEnv[c.SudoPasswordEnv] = getenv(c.SudoPasswordEnv)
			case getenv(c.PasswordEnv) != "" || seen[c.PasswordEnv]:
				// sudo falls back to the SSH password
			default:
				add(c.SudoPasswordEnv, fmt.Sprintf("sudo password for %s", c.User))
			}
		}
	}
	if len(needs) == 0 {
		return s, nil
	}
	f, ok := stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		// Not a terminal: key/agent auth may still work, and sudo -n for NOPASSWD sudoers.
		return s, nil
	}
	for _, n := range needs {
		fmt.Fprintf(stderr, "%s (or set %s): ", n.what, n.env)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		if len(b) > 0 {
			s.byEnv[n.env] = string(b)
		}
	}
	return s, nil
}

// ---- connections

type connector struct {
	top       *topology.Topology
	sshCfg    *sshConfig
	secrets   *secrets
	acceptNew bool
	log       *slog.Logger
	notice    io.Writer // told of every host key recorded by --accept-new-host-keys
	mu        sync.Mutex
	known     map[string]*sshx.KnownHosts
	clients   []*sshx.Client
}

func (c *connector) knownHosts(path string) *sshx.KnownHosts {
	path = sshx.ExpandHome(path)
	c.mu.Lock()
	defer c.mu.Unlock()
	if k := c.known[path]; k != nil {
		return k
	}
	k := sshx.NewKnownHosts(path, c.acceptNew)
	k.Recorded = func(host, addr, keyType, fp, file string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		fmt.Fprintf(c.notice, "recorded the host key of %s (%s): %s %s in %s\n", host, addr, keyType, fp, file)
	}
	c.known[path] = k
	return k
}

func (c *connector) connect(ctx context.Context, h topology.Host) (phases.Host, error) {
	s := c.top.SSHFor(h)
	pass := c.secrets.get(s.PasswordEnv)
	sudo := c.secrets.get(s.SudoPasswordEnv)
	if sudo == "" {
		sudo = pass
	}
	agent := os.Getenv("SSH_AUTH_SOCK") != "" && (s.Agent == nil || *s.Agent)
	cfg := sshx.Config{
		Host:           h.Name,
		Addr:           s.Address,
		Port:           s.Port,
		User:           s.User,
		IdentityFile:   s.IdentityFile,
		Agent:          agent,
		Password:       pass,
		SudoPassword:   sudo,
		KnownHosts:     c.knownHosts(s.KnownHosts),
		ConnectTimeout: s.ConnectTimeout,
		Patience:       s.ConnectPatience,
		Logger:         c.log,
	}
	if j := s.JumpHost; j != nil {
		cfg.Jump = &sshx.JumpConfig{Addr: j.Address, Port: j.Port, User: j.User, IdentityFile: j.IdentityFile, Agent: agent, Password: c.secrets.get(c.top.SSH.PasswordEnv)}
	}
	if err := c.sshCfg.apply(&cfg, h, s, c.secrets.get(c.top.SSH.PasswordEnv)); err != nil {
		return nil, err
	}
	cl, err := sshx.Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.clients = append(c.clients, cl)
	c.mu.Unlock()
	return cl, nil
}

func (c *connector) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cl := range c.clients {
		cl.Close()
	}
	c.clients = nil
}
