// Command vipd-lab starts the simulated-host lab of test/nspawn (2 LBs, 3 masters,
// 1 worker by default: Debian 12 under systemd-nspawn, stand-in Kubernetes packages) for
// `make demo`, runs one command inside the lab's operator network namespace, and tears the
// lab down when the command ends (or on SIGINT/SIGTERM). Root only. With --k8s the hosts
// run real Kubernetes (`make k8s-lab`'s build) instead of the stand-ins.
//
//	vipd-lab [--k8s] [--lbs 2 --masters 3 --workers 1] -- sh -c 'bootstrap up -f "$TOPOLOGY" && bootstrap status -f "$TOPOLOGY"'
//
// The command gets TOPOLOGY (the generated topology.yaml), LAB_DIR, LAB_VIP and the ops
// password variables bootstrap reads (BOOTSTRAP_SSH_PASSWORD, BOOTSTRAP_SUDO_PASSWORD).
// Without a command it prints them and waits for SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/vipd-project/vipd/test/nspawn"
)

func main() {
	os.Exit(run())
}

func run() int {
	lbs := flag.Int("lbs", 2, "load-balancer hosts")
	masters := flag.Int("masters", 3, "master hosts")
	workers := flag.Int("workers", 1, "worker hosts")
	k8s := flag.Bool("k8s", false, "real Kubernetes (test/nspawn's real-Kubernetes mode) instead of the stand-ins: the build cached by `make k8s-lab`, built first when missing (~30 min); the command's PATH gets its kubectl")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if os.Geteuid() != 0 {
		log.Error("vipd-lab needs root (network namespaces, systemd-nspawn)")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var k8sBuild *nspawn.K8sBuild
	if *k8s {
		var cached bool
		if k8sBuild, cached = nspawn.CachedK8s(nspawn.K8sBuildOptions{}); !cached {
			log.Info("no cached real Kubernetes build: building it now (make k8s-lab; ~30 min on 2 busy cores, once)")
			var err error
			if k8sBuild, err = nspawn.EnsureK8s(ctx, nspawn.K8sBuildOptions{Log: log}); err != nil {
				log.Error("build real Kubernetes", "err", err)
				return 1
			}
		}
	}
	t0 := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	c, err := nspawn.StartCluster(sctx, nspawn.ClusterOptions{LBs: *lbs, Masters: *masters, Workers: *workers, Log: log, K8s: k8sBuild})
	cancel()
	if err != nil {
		log.Error("start lab", "err", err)
		return 1
	}
	defer func() {
		if err := c.Close(); err != nil {
			log.Error("lab cleanup", "err", err)
		}
	}()
	log.Info("lab ready", "elapsed", time.Since(t0).Round(time.Millisecond), "topology", c.Topology, "vip", c.VIP, "operator_netns", c.OperatorNS)
	if flag.NArg() == 0 {
		fmt.Printf("TOPOLOGY=%s\nLAB_DIR=%s\nLAB_VIP=%s\n# run bootstrap with: ip netns exec %s env BOOTSTRAP_SSH_PASSWORD=... bootstrap up -f $TOPOLOGY\n# ops password: %s\n# Ctrl-C tears the lab down.\n",
			c.Topology, c.Dir, c.VIP, c.OperatorNS, c.OpsPassword)
		<-ctx.Done()
		return 0
	}
	cmd := c.OperatorCommand(ctx, flag.Arg(0), flag.Args()[1:]...)
	cmd.Env = append(cmd.Env, "LAB_DIR="+c.Dir, "LAB_VIP="+c.VIP)
	if k8sBuild != nil {
		cmd.Env = append(cmd.Env, "PATH="+k8sBuild.Bin+":"+os.Getenv("PATH"))
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		log.Error("run command", "err", err)
		return 1
	}
	return 0
}
