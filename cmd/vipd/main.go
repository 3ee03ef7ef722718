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
		Use:           "vipd",
		Short:         "VRRP virtual IP and TCP load balancer for a self-hosted Kubernetes API",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newRunCmd(), newCheckCmd(), newStatusCmd())
	cli.AddVersion(root, cli.Version())
	cli.StrictUsage(root)
	return root
}

func newCheckCmd() *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "check",
		Short: "Validate a configuration file and exit non-zero on error (like haproxy -c)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
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
	return c
}
