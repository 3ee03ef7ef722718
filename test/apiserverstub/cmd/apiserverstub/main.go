// Command apiserverstub runs the kube-apiserver stand-in of package apiserverstub as a process
// (a lab master that a test can SIGKILL by PID):
//
//	apiserverstub -listen :6443 -cert m1.crt -key m1.key -host m1
//
// SIGUSR1 flips /readyz between ok and 500 (a master that is up but not ready); SIGTERM and
// SIGINT stop it.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vipd-project/vipd/test/apiserverstub"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "apiserverstub:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", ":6443", "address to listen on")
	certFile := flag.String("cert", "", "serving certificate (PEM)")
	keyFile := flag.String("key", "", "serving key (PEM)")
	host, _ := os.Hostname()
	flag.StringVar(&host, "host", host, "name of this master in /version and watch events")
	interval := flag.Duration("watch-interval", 200*time.Millisecond, "time between watch events")
	flag.Parse()
	if *certFile == "" || *keyFile == "" {
		return fmt.Errorf("-cert and -key are required")
	}
	pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("load -cert/-key: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("host", host)
	var unready atomic.Bool
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			v := !unready.Load()
			unready.Store(v)
			log.Info("readiness flipped", "ready", !v)
		}
	}()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	log.Info("serving", "listen", ln.Addr().String())
	return apiserverstub.Serve(ctx, ln, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
		apiserverstub.Options{Host: host, WatchInterval: *interval, Logger: log, Ready: func() bool { return !unready.Load() }})
}
