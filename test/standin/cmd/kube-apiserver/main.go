// Command kube-apiserver is a STAND-IN for the real kube-apiserver, for the vipd lab only
// (test/nspawn): a TLS server on --secure-port answering /readyz, /healthz, /livez ("ok"),
// /version, the node list (GET /api/v1/nodes, also as a watch stream with ?watch=true),
// kube-system pods, and the stand-in API the stand-in kubeadm/kubelet/kubectl use
// (/standin/...). Cluster state (nodes, tokens, certificate key, applied objects) lives in
// --standin-state (under /var/lib/etcd) and is replicated between all masters' apiservers
// like etcd would: last-writer-wins per entry, pushed on every write and pulled every 2 s.
// There is no authentication or authorization. The stand-in kubelet runs it when the
// static pod manifest /etc/kubernetes/manifests/kube-apiserver.yaml exists.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vipd-project/vipd/test/standin/internal/sim"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("standin", "kube-apiserver")
	opts := map[string]string{
		"--advertise-address":    "",
		"--secure-port":          "6443",
		"--tls-cert-file":        sim.PKIDir + "/apiserver.crt",
		"--tls-private-key-file": sim.PKIDir + "/apiserver.key",
		"--client-ca-file":       sim.PKIDir + "/ca.crt",
		"--standin-ca-key-file":  sim.PKIDir + "/ca.key",
		"--standin-state":        sim.StateFile,
		"--standin-peers":        "",
		"--standin-version":      sim.Version,
	}
	for _, a := range os.Args[1:] {
		if a == "--version" || a == "version" {
			fmt.Printf("Kubernetes %s %s\n", sim.Version, sim.StandinTag)
			return
		}
		k, v, _ := strings.Cut(a, "=")
		if _, ok := opts[k]; ok {
			opts[k] = v
		} // other real kube-apiserver flags are accepted and ignored
	}
	cert, err := tls.LoadX509KeyPair(opts["--tls-cert-file"], opts["--tls-private-key-file"])
	if err != nil {
		log.Error("load serving certificate", "err", err)
		os.Exit(1)
	}
	store, err := sim.OpenStore(opts["--standin-state"])
	if err != nil {
		log.Error("open state", "err", err)
		os.Exit(1)
	}
	var peers []string
	for _, p := range strings.Split(opts["--standin-peers"], ",") {
		if p = strings.TrimSpace(p); p != "" {
			peers = append(peers, p)
		}
	}
	srv := &sim.Server{Store: store, Self: opts["--advertise-address"], Peers: peers,
		CACert: opts["--client-ca-file"], CAKey: opts["--standin-ca-key-file"], Log: log, Version: opts["--standin-version"]}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	addr := net.JoinHostPort("", opts["--secure-port"])
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("listen", "addr", addr, "err", err)
		os.Exit(1)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go srv.Replicate(ctx, 2*time.Second)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	log.Info("serving", "addr", addr, "peers", peers)
	if err := hs.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}
