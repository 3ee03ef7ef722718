package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vipd-project/vipd/pkg/cli"
	"github.com/vipd-project/vipd/pkg/stats"
)

func newBackendCmd() *cobra.Command {
	var f ctlFlags
	c := &cobra.Command{
		Use:   "backend",
		Short: "Show and change the proxy's backends at run time (drain, disable, enable, weight)",
		Long: `Change the running daemon's backends over its control socket, without editing vipd.yaml:

  drain    no new connections; open ones go on and are closed when the grace is over
           (--grace, default proxy.drain_grace). HAProxy's "set server ... state drain".
  disable  no new connections, and the open ones are closed now (MAINT). HAProxy's
           "state maint" plus "shutdown sessions server": for a backend that must stop
           serving at once; use drain to let requests finish.
  enable   back to READY: new connections again while its health checks pass.
  weight   its share of new connections (0-256, default 1; 0 takes none, like drain
           without closing anything).

BACKEND is the backend exactly as written in vipd.yaml ("192.168.10.138:6443"), or its host
part when only one backend has it. Health checks go on in every state. Each change is logged
with who asked (uid, pid, user), shown on /stats, /stats.json and /metrics
(haproxy_server_status{state="DRAIN"|"MAINT"}, haproxy_server_weight), kept by a reload
(SIGHUP) for the backends still in the file, and kept across restarts in state_file.
Only root and members of group vipd may change anything (checked with the socket's peer
credentials); list is open to whoever can open the socket.

Exit status: 0 done, 1 failed (the message names the backend), 2 usage error.`,
		Args: cobra.NoArgs,
		RunE: needSub,
	}
	f.add(c)

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the backends with their health, administrative state, weight and open connections",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bs, raw, err := fetchBackends(cmd.Context(), &f)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if asJSON {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			printBackends(cmd.OutOrStdout(), bs)
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON (the backends of /stats.json)")

	var (
		grace time.Duration
		wait  bool
	)
	drain := &cobra.Command{
		Use:   "drain BACKEND",
		Short: "Send no new connections to BACKEND; open ones finish, or are closed after --grace",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			form := url.Values{"backend": {args[0]}}
			if cmd.Flags().Changed("grace") {
				form.Set("grace", grace.String())
			}
			res, err := ctlChange(cmd, &f, "/backends/drain", form)
			if err != nil || !wait {
				return err
			}
			return waitDrained(cmd, &f, res)
		},
	}
	drain.Flags().DurationVar(&grace, "grace", 0, "close the connections still open after this long (default: proxy.drain_grace; 0: at once)")
	drain.Flags().BoolVar(&wait, "wait", false, "return only when no connection to BACKEND is open any more")

	simple := func(verb, short string) *cobra.Command {
		return &cobra.Command{
			Use:   verb + " BACKEND",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				_, err := ctlChange(cmd, &f, "/backends/"+verb, url.Values{"backend": {args[0]}})
				return err
			},
		}
	}
	weight := &cobra.Command{
		Use:   "weight BACKEND N",
		Short: "Set BACKEND's weight (0-256) for roundrobin and leastconn",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := strconv.Atoi(args[1]); err != nil {
				return &cli.UsageError{Err: fmt.Errorf("weight %q is not an integer (0-256)", args[1])}
			}
			_, err := ctlChange(cmd, &f, "/backends/weight", url.Values{"backend": {args[0]}, "weight": {args[1]}})
			return err
		},
	}
	c.AddCommand(list, drain,
		simple("disable", "Send no new connections to BACKEND and close its open ones now (MAINT)"),
		simple("enable", "Let BACKEND take new connections again (READY)"),
		weight)
	return c
}

func fetchBackends(ctx context.Context, f *ctlFlags) ([]stats.BackendView, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	raw, err := ctlDo(ctx, f.socketPath(), http.MethodGet, "/backends", nil)
	if err != nil {
		return nil, nil, err
	}
	var bs []stats.BackendView
	if err := json.Unmarshal(raw, &bs); err != nil {
		return nil, nil, fmt.Errorf("decode the backends: %w", err)
	}
	return bs, raw, nil
}

func printBackends(w io.Writer, bs []stats.BackendView) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tSTATUS\tHEALTH\tADMIN\tWEIGHT\tACTIVE\tTOTAL")
	for _, b := range bs {
		health := "DOWN"
		if b.Up {
			health = "UP"
		}
		admin := b.Admin
		if !b.DrainEnds.IsZero() {
			admin += " until " + b.DrainEnds.Local().Format(time.TimeOnly)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\n", b.Addr, b.StatusText(), health, admin, b.Weight, b.CurrentConns, b.TotalConns)
	}
	tw.Flush()
}

// waitDrained polls the backend until no connection to it is open; the drain's grace bounds it.
func waitDrained(cmd *cobra.Command, f *ctlFlags, res ctlResult) error {
	deadline := time.Now().Add(f.timeout)
	if !res.DrainEnds.IsZero() {
		deadline = res.DrainEnds.Add(f.timeout)
	}
	for {
		bs, _, err := fetchBackends(cmd.Context(), f)
		if err != nil {
			return &exitError{code: 1, err: fmt.Errorf("%s: waiting for the drain: %w", res.Backend, err)}
		}
		open := int64(-1)
		for _, b := range bs {
			if b.Addr == res.Backend {
				open = b.CurrentConns
			}
		}
		if open <= 0 {
			fmt.Fprintf(cmd.OutOrStdout(), "%s: no open connections\n", res.Backend)
			return nil
		}
		if time.Now().After(deadline) {
			return &exitError{code: 1, err: fmt.Errorf("%s: %d connections still open after the drain's grace", res.Backend, open)}
		}
		select {
		case <-cmd.Context().Done():
			return &exitError{code: 1, err: cmd.Context().Err()}
		case <-time.After(200 * time.Millisecond):
		}
	}
}
