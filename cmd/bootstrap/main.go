// Command bootstrap builds a kubeadm HA Kubernetes cluster over SSH from one topology file:
// vipd on the load balancers (VIP + API proxy), containerd and pinned Kubernetes packages on
// the nodes, kubeadm init on the first master, then the other masters one at a time and the
// workers in parallel. Every phase probes the hosts first, so a rerun continues where a
// failure stopped and changes nothing on a finished cluster.
//
//	bootstrap up -f topology.yaml [--only PHASE[,PHASE]] [--dry-run] [--accept-new-host-keys]
//	bootstrap status|drill|reset -f topology.yaml
//	bootstrap kubeconfig -f topology.yaml -o FILE
//
// Exit codes: 0 ok, 1 a phase failed on a host (status: a host unreachable, a probe failed or
// a host half-done), 2 bad topology or usage, 3 host key refused, SSH/sudo authentication
// failed, or a host unreachable for longer than ssh.connectPatience.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/vipd-project/vipd/pkg/cli"
)

// manExitStatus is the EXIT STATUS section of bootstrap(1).
var manExitStatus = cli.ManSection{Title: "EXIT STATUS", Text: `0: success; also bootstrap without a command, which prints this help (as vipd does), and --help, --version. status: every host reachable and nothing half-done.

1: a phase failed on a host (the report names the phase and the host); status: a host unreachable, a probe failed, or a host half-done; drill: a step failed.

2: usage error: an unknown command or flag, wrong arguments, a bad --output value, a bad topology file (file:line: field: problem) or ~/.ssh/config.

3: SSH refused: an unknown or changed host key (of the host or of its jump host), SSH or sudo authentication refused, or a host unreachable for longer than ssh.connectPatience. up --dry-run goes on past such hosts and exits 3 if any, naming them all.`}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
