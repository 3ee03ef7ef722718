package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vipd-project/vipd/pkg/config"
	"github.com/vipd-project/vipd/pkg/stats"
)

func newStatusCmd() *cobra.Command {
	var (
		socket, cfgPath, url string
		asJSON               bool
		timeout              time.Duration
	)
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the running daemon's VRRP state, backends and LB tier",
		Long: "Asks the running vipd over its control socket (control_socket in the config, default\n" +
			"/run/vipd/vipd.sock) or, with --url, over the stats port (http://HOST:8404).\n\n" + statusExitText,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if socket == "" && url == "" {
				socket = "/run/vipd/vipd.sock"
				if cfg, err := config.Load(cfgPath); err == nil {
					socket = cfg.ControlSocket
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			body, err := fetchStatus(ctx, socket, url)
			if err != nil {
				return &exitError{code: 3, err: err}
			}
			var s stats.Snapshot
			if err := json.Unmarshal(body, &s); err != nil {
				return &exitError{code: 3, err: fmt.Errorf("decode status: %w", err)}
			}
			if asJSON {
				if _, err := cmd.OutOrStdout().Write(body); err != nil {
					return err
				}
			} else {
				printStatus(cmd.OutOrStdout(), &s)
			}
			if code, why := statusCode(&s); code != 0 {
				if asJSON {
					return &exitError{code: code} // stdout stays one JSON document, also merged with stderr
				}
				return &exitError{code: code, err: errors.New(why)}
			}
			return nil
		},
	}
	c.Flags().StringVar(&socket, "socket", "", "control socket of the daemon (default: control_socket from the config)")
	c.Flags().StringVarP(&cfgPath, "config", "c", config.DefaultPath, "configuration file (to find the control socket)")
	c.Flags().StringVar(&url, "url", "", "ask the stats port instead, e.g. http://127.0.0.1:8404")
	c.Flags().BoolVar(&asJSON, "json", false, "print the raw JSON (same as /stats.json)")
	c.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the daemon")
	return c
}

func fetchStatus(ctx context.Context, socket, url string) ([]byte, error) {
	client := &http.Client{}
	target := strings.TrimRight(url, "/") + "/stats.json"
	if url == "" {
		client.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}}
		target = "http://vipd/stats.json"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		where := socket
		if url != "" {
			where = url
		}
		return nil, fmt.Errorf("vipd is not answering on %s: %w (is it running? systemctl status vipd)", where, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read status: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

func printStatus(w io.Writer, s *stats.Snapshot) {
	v := s.VRRP
	holder := v.MasterAddr
	if v.HoldsVIP {
		holder = "this host"
	}
	if holder == "" {
		holder = "unknown"
	}
	fmt.Fprintf(w, "node %s (vipd %s)\n", s.Node, s.Version)
	fmt.Fprintf(w, "vrrp: %s  priority %d (configured %d)  vrid %d on %s\n", v.State, v.EffectivePriority, v.Priority, v.VRID, v.Interface)
	fmt.Fprintf(w, "vip:  %s held by %s\n", strings.Join(v.VIPs, ", "), holder)
	for _, f := range v.Faults {
		fmt.Fprintf(w, "fault: %s\n", f)
	}
	if v.Maintenance {
		fmt.Fprintln(w, "maintenance: on (stays BACKUP until `vipd maintenance off`)")
	}
	if len(v.Drops) > 0 {
		keys := make([]string, 0, len(v.Drops))
		for k := range v.Drops {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s=%d", k, v.Drops[k])
		}
		fmt.Fprintf(w, "dropped adverts: %s\n", strings.Join(parts, " "))
	}
	if s.Frontend != nil {
		fmt.Fprintf(w, "proxy: %s  %d active, %d total connections\n", s.Frontend.Listen, s.Frontend.CurrentConns, s.Frontend.TotalConns)
	}
	if len(s.Backends) > 0 {
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "BACKEND\tSTATUS\tSINCE\tACTIVE\tLAST CHECK")
		for _, b := range s.Backends {
			st := "DOWN"
			if b.Up {
				st = "UP"
			}
			if b.Status != "" {
				st = b.Status
			}
			since := ""
			if !b.Since.IsZero() {
				since = b.Since.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", b.Addr, st, since, b.CurrentConns, b.LastResult)
		}
		tw.Flush()
	}
	if s.Cluster != nil {
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "LB PEER\tADDRESS\tALIVE\tSTATE\tPRIORITY\tVIP")
		for _, m := range s.Cluster.Members {
			vip := ""
			if m.HoldsVIP {
				vip = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%d\t%s\n", m.Name, m.Addr, m.Alive, m.VRRPState, m.Priority, vip)
		}
		tw.Flush()
		for _, a := range s.Cluster.Alarms {
			fmt.Fprintf(w, "ALARM %s: %s\n", a.Kind, a.Message)
		}
	}
}
