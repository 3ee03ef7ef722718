package main

import (
	"time"

	"github.com/spf13/cobra"
)

func newMaintenanceCmd() *cobra.Command {
	var f ctlFlags
	c := &cobra.Command{
		Use:   "maintenance",
		Short: "Take this LB host out of the VIP election (on) and back in (off)",
		Long: `maintenance on hands the VIP to the peer without a failed request and keeps this host
BACKUP until "vipd maintenance off", whatever its priority, even if the peer goes silent (the
operator took the host out; vipd status on the peer shows who holds the VIP). As master it
advertises priority 0 but keeps the VIP and keeps accepting until the peer is heard as MASTER,
then removes the VIP: the VIP is never on no host. If no peer takes over within three
master-down intervals, maintenance is refused (exit 1) and this host stays MASTER: it is
the only one that can serve.

maintenance off lets this host take part in the election again: with preempt and the highest
priority it takes the VIP back at once.

Maintenance is kept across restarts (state_file): upgrading vipd on a host in maintenance does
not make it take the VIP back when it starts. Only root and members of group vipd may use it
(checked with the socket's peer credentials); each change is logged with who asked.

Exit status: 0 done, 1 failed or refused, 2 usage error.`,
		Args: cobra.NoArgs,
		RunE: needSub,
	}
	f.add(c)
	var wait time.Duration
	on := &cobra.Command{
		Use:   "on",
		Short: "Hand the VIP to the peer and stay BACKUP",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.timeout = max(f.timeout, wait)
			_, err := ctlChange(cmd, &f, "/maintenance/on", nil)
			return err
		},
	}
	on.Flags().DurationVar(&wait, "wait", 10*time.Second, "how long to wait for the handover to be done")
	off := &cobra.Command{
		Use:   "off",
		Short: "Take part in the VIP election again",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := ctlChange(cmd, &f, "/maintenance/off", nil)
			return err
		},
	}
	c.AddCommand(on, off)
	return c
}
