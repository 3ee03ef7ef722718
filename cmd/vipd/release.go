package main

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vipd-project/vipd/pkg/config"
	"github.com/vipd-project/vipd/pkg/vrrp"
)

// newReleaseCmd is `vipd release`: remove the configured VIPs from the interface after the
// daemon died without doing so (the unit's ExecStopPost). A VIP left on a host whose vipd is
// gone still answers ARP: once the peer takes over, the VIP would be on two hosts until vipd
// restarts.
func newReleaseCmd() *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "release",
		Short: "Remove the VIPs from the interface after the daemon stopped (systemd ExecStopPost)",
		Long: `Remove the configured VIPs from vrrp.interface, if they are there. The systemd unit runs it
after the daemon exits, also when it was killed or crashed, so a dead vipd never leaves the VIP
answering ARP beside the peer that took over. Do not run it while vipd runs as MASTER.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			// A daemon that answers on its control socket owns the VIP: leave it alone.
			if cfg.ControlSocket != "" {
				if c, err := net.DialTimeout("unix", cfg.ControlSocket, time.Second); err == nil {
					c.Close()
					return &exitError{code: 1, err: fmt.Errorf("vipd release: a vipd is running (%s answers); stop it first", cfg.ControlSocket)}
				}
			}
			removed, err := vrrp.ReleaseVIPs(cfg.VRRPConfig())
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if len(removed) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "vipd release: removed %s from %s\n", strings.Join(removed, ", "), cfg.VRRPConfig().Interface)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&path, "config", "c", config.DefaultPath, "configuration file")
	return c
}
