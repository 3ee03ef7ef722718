// Command vipd keeps a Kubernetes control plane reachable from one YAML file: it elects which
// load-balancer host holds the virtual IP (VRRP, wire-compatible with Keepalived), announces it
// with gratuitous ARP, proxies TCP to the healthy kube-apiservers, and serves /stats, /metrics
// and /healthz. See deploy/vipd.yaml for every setting.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/vipd-project/vipd/pkg/cli"
	"github.com/vipd-project/vipd/pkg/config"
	"github.com/vipd-project/vipd/pkg/logx"
)

// version is this build's version for logs, /stats and the cluster gossip (set once from the
// link-time stamp, see pkg/cli).
var version = cli.Version().Version

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		// Under systemd these lines reach the journal as errors (logx.Printf's prefix).
		if cli.IsUsage(err) {
			logx.Printf(stderr, os.Getenv, slog.LevelError, "vipd: %v", err)
			logx.Printf(stderr, os.Getenv, slog.LevelError, "Run 'vipd --help' for usage.")
			return cli.ExitUsage
		}
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil {
				logx.Printf(stderr, os.Getenv, slog.LevelError, "%v", ee.err)
			}
			return ee.code
		}
		logx.Printf(stderr, os.Getenv, slog.LevelError, "vipd: %v", err)
		return 1
	}
	return 0
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "vipd",
		Short: "VRRP virtual IP and TCP load balancer for a self-hosted Kubernetes API",
		Long: `vipd keeps a Kubernetes control plane reachable from one YAML file (vipd.yaml(5)): it
elects which load-balancer host holds the virtual IP (VRRP, wire-compatible with Keepalived),
announces it with gratuitous ARP, proxies TCP to the healthy kube-apiservers, and serves
/stats, /metrics and /healthz. systemd runs "vipd run"; "vipd check" validates a file.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newRunCmd(), newCheckCmd(), newStatusCmd(), newReleaseCmd(), newImportCmd(), newBackendCmd(), newMaintenanceCmd())
	cli.AddVersion(root, cli.Version())
	cli.AddDocs(root, "8", manExitStatus, manFiles)
	cli.StrictUsage(root)
	return root
}

// Sections of vipd(8) beyond what the cobra tree says.
var (
	manExitStatus = cli.ManSection{Title: "EXIT STATUS", Text: `0: success; also vipd without a command, which prints this help (as bootstrap does), and --help, --version.

1: failure: an invalid configuration (check, run; the message names file:line: field), the daemon could not start, or it stopped with an error; vipd backend and vipd maintenance: the change failed or was refused, or the daemon is not answering (the message names the backend).

2: usage error: an unknown command or flag, wrong arguments.

3: vipd status: the daemon is not answering on its control socket or stats URL.

4: vipd status: an alarm is raised (a cluster alarm, or this host is in FAULT).

5: vipd status: the VIP is held by no host or by two (from gossip when cluster.enabled; without it a host sees only itself and the master it hears).`}
	manFiles = cli.ManSection{Title: "FILES", Text: `/etc/vipd/vipd.yaml: the configuration, described in vipd.yaml(5). The package installs an example that vipd refuses until it is edited for the host and its first line is deleted.

/run/vipd/vipd.sock: the control socket that vipd status, vipd backend and vipd maintenance use.

/var/lib/vipd/state.json: state_file, what vipd backend and vipd maintenance set at run time, kept across restarts.

/lib/systemd/system/vipd.service: the unit; logs go to the journal (journalctl -u vipd, with priorities: journalctl -p warning -u vipd).`}
)

func newCheckCmd() *cobra.Command {
	var (
		path        string
		noHostCheck bool
	)
	c := &cobra.Command{
		Use:   "check",
		Short: "Validate a configuration file and exit non-zero on error (like haproxy -c)",
		Long: `Validate a configuration file exactly as "vipd run" and a reload will: the same
function, the same messages ("file:line: field: problem"). On this host it also checks what
depends on the machine: the interface exists, the secret files exist, are not readable by every
user and can be read by user vipd. --no-host-checks skips those, to check a file meant for
another machine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err == nil && !noHostCheck {
				// LoadOnHost's checks, and (as root) that user vipd can read the files.
				err = cfg.CheckHostAs()
			}
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			for _, w := range cfg.Warnings {
				logx.Printf(cmd.ErrOrStderr(), os.Getenv, slog.LevelWarn, "warning: %s", w)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: configuration is valid\n", path)
			return nil
		},
	}
	c.Flags().StringVarP(&path, "config", "c", config.DefaultPath, "configuration file")
	c.Flags().BoolVar(&noHostCheck, "no-host-checks", false, "skip the checks that depend on this machine (interface, secret files): for a file meant for another host")
	return c
}
