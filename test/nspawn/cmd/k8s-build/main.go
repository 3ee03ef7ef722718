// Command k8s-build builds (once) the real Kubernetes of the lab's real-Kubernetes mode and
// caches it under /var/cache/vipd-lab/k8s/<version>: kubelet, kubeadm, kubectl and
// kubernetes-cni .debs named and versioned like pkgs.k8s.io's, and the control-plane
// images (apiserver, controller-manager, scheduler, kube-proxy, etcd, CoreDNS, pause) as
// docker-archive tarballs. Everything is built from the Go module proxy, niced; the first
// run takes about 30 minutes on 2 busy cores, a rerun nothing. `make k8s-lab` runs it. Root only
// (the node root filesystem is built with debootstrap).
//
//	k8s-build [-version 1.33.6] [-cache /var/cache/vipd-lab]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vipd-project/vipd/test/nspawn"
)

func main() {
	version := flag.String("version", nspawn.KubernetesVersion, "Kubernetes version (1.<minor>.<patch>)")
	cache := flag.String("cache", nspawn.DefaultCacheDir, "cache directory")
	nice := flag.Int("nice", 19, "niceness of the go commands")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if os.Geteuid() != 0 {
		log.Error("k8s-build needs root (debootstrap of the node root filesystem, /var/cache)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	b, err := nspawn.EnsureK8s(ctx, nspawn.K8sBuildOptions{Version: *version, CacheDir: *cache, Log: log, Nice: *nice})
	if err != nil {
		log.Error("k8s build failed (rerun resumes from the caches)", "err", err)
		os.Exit(1)
	}
	fmt.Printf("real Kubernetes %s ready in %s (%s)\n", b.Version, b.Dir, time.Since(start).Round(time.Second))
	for _, d := range b.Debs {
		fmt.Println("  package", d)
	}
	for _, i := range b.Images {
		fmt.Println("  image  ", i)
	}
}
