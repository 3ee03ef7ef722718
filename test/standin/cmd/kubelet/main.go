// Command kubelet is a STAND-IN for the real kubelet, for the vipd lab only (test/nspawn).
// Like the real one it exits (and systemd restarts it) until kubeadm has written
// /var/lib/kubelet/config.yaml. Then it runs the static pod /etc/kubernetes/manifests/
// kube-apiserver.yaml as a child process (the stand-in kube-apiserver binary, restarted
// when it exits, stopped when the manifest goes away) and posts a node heartbeat every
// 10 s to the server of /etc/kubernetes/kubelet.conf. Simplification: the apiserver is a
// child in kubelet.service's cgroup, so `systemctl stop kubelet` on a master takes its
// apiserver down too (a real static pod's containers would keep running under containerd).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vipd-project/vipd/test/standin/internal/sim"
)

const apiserverBin = "/usr/libexec/standin/kube-apiserver"

func main() {
	for _, a := range os.Args[1:] {
		if a == "--version" || a == "version" {
			fmt.Printf("Kubernetes %s %s\n", sim.Version, sim.StandinTag)
			return
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("standin", "kubelet")
	if _, err := os.Stat(sim.KubeletConfig); err != nil {
		log.Error("failed to load kubelet config file, path: " + sim.KubeletConfig + ", error: open " + sim.KubeletConfig + ": no such file or directory")
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var child *exec.Cmd
	var childDone chan struct{}
	var childArgs string
	stopChild := func() {
		if child == nil {
			return
		}
		_ = child.Process.Signal(syscall.SIGTERM)
		select {
		case <-childDone:
		case <-time.After(5 * time.Second):
			_ = child.Process.Kill()
			<-childDone
		}
		child = nil
	}
	defer stopChild()
	lastBeat := time.Time{}
	for {
		args, err := sim.ManifestArgs(sim.APIManifest)
		want := strings.Join(args, " ")
		if child != nil {
			select {
			case <-childDone:
				log.Warn("static pod kube-apiserver exited; restarting")
				child = nil
			default:
			}
		}
		if child != nil && (err != nil || want != childArgs) {
			log.Info("static pod kube-apiserver manifest changed or removed; stopping it")
			stopChild()
		}
		if child == nil && err == nil {
			c := exec.Command(apiserverBin, args[1:]...)
			c.Stdout, c.Stderr = os.Stderr, os.Stderr
			if err := c.Start(); err != nil {
				log.Error("start kube-apiserver", "err", err)
			} else {
				child, childArgs, childDone = c, want, make(chan struct{})
				go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(c, childDone)
				log.Info("started static pod kube-apiserver", "pid", c.Process.Pid)
			}
		}
		if time.Since(lastBeat) >= 10*time.Second {
			if err := heartbeat(ctx); err != nil {
				log.Warn("node status update failed", "err", err)
				lastBeat = time.Now().Add(-8 * time.Second) // retry in 2 s
			} else {
				lastBeat = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func heartbeat(ctx context.Context) error {
	ns, err := sim.ReadNodeState()
	if err != nil {
		return nil // not joined yet: nothing to report
	}
	kc, err := sim.LoadKubeconfig(sim.KubeletConf)
	if err != nil {
		return nil
	}
	c := sim.NewClient(kc.Server, sim.TLSConfig(kc.CAPEM, kc.CertPEM, kc.KeyPEM), 3*time.Second)
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return c.Do(cctx, http.MethodPost, "/standin/nodes/"+ns.Name+"/heartbeat", map[string]string{"kubeletVersion": sim.Version}, nil)
}
