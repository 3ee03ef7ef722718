package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vipd-project/vipd/test/standin/internal/sim"
)

func resetCmd(ctx context.Context, args []string) error {
	f, err := parseFlags(args, map[string]bool{"force": true, "f": true, "cri-socket": false, "cleanup-tmp-dir": true,
		"ignore-preflight-errors": false, "cert-dir": false, "dry-run": true, "skip-phases": false, "config": false})
	if err != nil {
		return err
	}
	// "etcd-member-remove": the reset goes on but cannot remove the node's etcd member (the
	// real kubeadm only warns then, e.g. when the cluster is unreachable).
	resetMode := failOnce("reset")
	if resetMode != "" && resetMode != "etcd-member-remove" {
		return exitError{1, "error execution phase preflight: failure injected by " + sim.FailOnceDir + "/reset"}
	}
	fmt.Println("[reset] Reading configuration from the \"kubeadm-config\" ConfigMap in the cluster...")
	fmt.Println("[reset] WARNING: Changes made to this host by 'kubeadm init' or 'kubeadm join' will be reverted.")
	if !f.has("force") && !f.has("f") {
		fmt.Print("[reset] Are you sure you want to proceed? [y/N]: ")
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return exitError{1, "error execution phase preflight: won't proceed; the user didn't answer (Y|y) in order to continue"}
		}
	}
	fmt.Println("[preflight] Running pre-flight checks")
	// Stand-in simplification: the node leaves the cluster (a real reset removes only the
	// etcd member and leaves the Node object).
	if ns, err := sim.ReadNodeState(); err == nil {
		for _, kcPath := range []string{sim.KubeletConf, sim.AdminConf} {
			kc, err := sim.LoadKubeconfig(kcPath)
			if err != nil {
				continue
			}
			c := sim.NewClient(kc.Server, sim.TLSConfig(kc.CAPEM, kc.CertPEM, kc.KeyPEM), 3*time.Second)
			cctx, cancel := context.WithTimeout(ctx, 4*time.Second)
			err = c.Do(cctx, http.MethodDelete, "/api/v1/nodes/"+ns.Name, nil, nil)
			if err == nil || isNotFound(err) {
				if _, serr := os.Stat(sim.ManifestsDir + "/etcd.yaml"); serr == nil {
					if resetMode == "etcd-member-remove" {
						fmt.Fprintf(os.Stderr, "W1126 [reset] Failed to remove etcd member: context deadline exceeded [failure injected by %s/reset], please manually remove this etcd member using etcdctl\n", sim.FailOnceDir)
					} else {
						removeOwnEtcdMember(cctx, c, ns.Name)
					}
				}
				cancel()
				break
			}
			cancel()
			fmt.Fprintf(os.Stderr, "W1126 [reset] Unable to remove node %s from the cluster: %v\n", ns.Name, err)
		}
	}
	fmt.Println("[reset] Stopping the kubelet service")
	_ = exec.Command("systemctl", "stop", "kubelet").Run()
	fmt.Println("[reset] Deleted contents of the etcd data directory: /var/lib/etcd")
	removeContents(sim.EtcdDir)
	fmt.Printf("[reset] Deleting contents of directories: [%s %s %s]\n", sim.ManifestsDir, sim.KubeletDir, sim.PKIDir)
	removeContents(sim.ManifestsDir)
	removeContents(sim.KubeletDir)
	removeContents(sim.PKIDir)
	files := []string{sim.AdminConf, sim.SuperConf, sim.KubeletConf, sim.KubeDir + "/bootstrap-kubelet.conf", sim.KubeDir + "/controller-manager.conf", sim.KubeDir + "/scheduler.conf"}
	fmt.Printf("[reset] Deleting files: %v\n", files)
	for _, p := range files {
		_ = os.Remove(p)
	}
	_ = os.Remove(sim.NodeFile)
	fmt.Println(`
The reset process does not perform cleanup of CNI plugin configuration,
network filtering rules and kubeconfig files.

For information on how to perform this cleanup manually, please see:
    https://k8s.io/docs/reference/setup-tools/kubeadm/kubeadm-reset/`)
	return nil
}

func isNotFound(err error) bool {
	var se *sim.StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

func removeContents(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
