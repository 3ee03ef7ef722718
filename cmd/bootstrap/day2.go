package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vipd-project/vipd/pkg/phases"
)

// day2Commands are the commands that change a running cluster: remove (and, below, upgrade
// and upgrade-lb).
func (g *globalOpts) day2Commands() []*cobra.Command {
	var yes bool
	remove := &cobra.Command{
		Use:   "remove HOST",
		Short: "Take a master or worker out of the cluster: drain, its backend out of every vipd, kubeadm reset, its etcd member and node removed",
		Long: `Take a master or worker of the file out of the cluster. A master is refused when the etcd
members left could not form a quorum. Its backend is drained on every lb (vipd backend drain)
and removed from vipd.yaml with a reload; the node is drained (kubectl drain), kubeadm reset
runs on the host, its etcd member and node object are removed. Rerun it after an interruption:
it finishes. Then delete the host from the file (until then, ` + "`bootstrap up`" + ` joins it again).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f, ok := g.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) && !yes {
				fmt.Fprintf(g.stderr, "This removes %s from the cluster of %s and resets it. Type yes to go on: ", args[0], g.file)
				line, _ := bufio.NewReader(g.stdin).ReadString('\n')
				if strings.TrimSpace(line) != "yes" {
					return usageErr(errors.New("remove cancelled"))
				}
			}
			return g.withRunner(cmd.Context(), false, func(r *phases.Runner) error {
				if _, ok := r.Topology().Host(args[0]); !ok {
					return usageErr(fmt.Errorf("%s is not a host of %s", args[0], g.file))
				}
				return r.Remove(cmd.Context(), args[0])
			})
		},
	}
	remove.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation on a terminal")
	return []*cobra.Command{remove}
}
