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

// day2Commands are the commands that change a running cluster: remove, upgrade, upgrade-lb.
func (g *globalOpts) day2Commands() []*cobra.Command {
	var yes bool
	var ro phases.RemoveOptions
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
				return r.Remove(cmd.Context(), args[0], ro)
			})
		},
	}
	remove.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation on a terminal")
	remove.Flags().BoolVar(&ro.HostGone, "host-gone", false, "the host is dead or unreachable for good: do not drain its node or run kubeadm reset on it")

	var uo phases.UpgradeOptions
	var dryRun bool
	upgrade := &cobra.Command{
		Use:   "upgrade --to VERSION",
		Short: "Upgrade Kubernetes one minor version (or a patch): kubeadm upgrade apply/node master by master, then the workers, each drained; a master's backend drained on every vipd meanwhile",
		Long: `Upgrade the cluster to --to the kubeadm way: the first master with kubeadm upgrade plan and
apply, the other masters with kubeadm upgrade node, one at a time, then the workers in batches
of --worker-batch; kubeadm, kubelet and kubectl are re-pinned (apt-mark hold) to the target
on each. Before a master's control plane restarts, its backend is drained on every lb
(vipd backend drain --wait) and it is enabled again once its /readyz answers; each node is
drained (kubectl drain) before its kubelet restarts and uncordoned once Ready at the target.
Hosts already at the target are skipped: rerun it after an interruption and it finishes.
Then set cluster.kubernetesVersion in the file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if uo.To == "" {
				return usageErr(errors.New("--to VERSION is required (e.g. --to 1.34.2)"))
			}
			if err := phases.CheckVersionArg(uo.To); err != nil {
				return usageErr(err)
			}
			return g.withRunner(cmd.Context(), dryRun, func(r *phases.Runner) error {
				if err := r.Upgrade(cmd.Context(), uo); err != nil {
					return err
				}
				if dryRun {
					fmt.Fprintln(g.stdout, "Plan done: run without --dry-run to apply it.")
				}
				return nil
			})
		},
	}
	upgrade.Flags().StringVar(&uo.To, "to", "", "target Kubernetes version (one minor up at most, kubeadm's rule), e.g. 1.34.2")
	upgrade.Flags().StringVar(&uo.Only, "only", "", "upgrade only this host (masters before workers, the first master first)")
	upgrade.Flags().IntVar(&uo.WorkerBatch, "worker-batch", 1, "workers upgraded at the same time")
	upgrade.Flags().BoolVar(&dryRun, "dry-run", false, "probe the hosts and print the plan; change nothing")

	var lbDryRun bool
	upgradeLB := &cobra.Command{
		Use:   "upgrade-lb",
		Short: "Replace vipd on the lb hosts one at a time, the VIP holder last through vipd maintenance mode",
		Long: `Install the vipd given by --vipd-binary (and the unit and configuration of the file) on the lb
hosts one at a time: those without the VIP first, the VIP holder last. The holder is first put
in maintenance (vipd maintenance on --wait): it hands the VIP to a peer, which holds it before
the holder lets go; then it is replaced and restarted, and taken out of maintenance. An lb
already up to date is skipped: rerun it after an interruption and it finishes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withRunner(cmd.Context(), lbDryRun, func(r *phases.Runner) error {
				if err := r.UpgradeLB(cmd.Context()); err != nil {
					return err
				}
				if lbDryRun {
					fmt.Fprintln(g.stdout, "Plan done: run without --dry-run to apply it.")
				}
				return nil
			})
		},
	}
	upgradeLB.Flags().BoolVar(&lbDryRun, "dry-run", false, "probe the lb hosts and print the plan; change nothing")
	return []*cobra.Command{remove, upgrade, upgradeLB}
}
