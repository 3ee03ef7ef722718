package tcpproxy

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vipd-project/vipd/pkg/health"
)

// TestMasterKilledNoFailedConnections wires a real health.Monitor (TCP
// checks) to the proxy: a steady stream of new connections continues while
// one backend dies; no client fails, the backend goes DOWN, and the
// serving callback follows min_healthy_backends.
func TestMasterKilledNoFailedConnections(t *testing.T) {
	m1 := startBackend(t, "m1", nameThenEcho)
	m2 := startBackend(t, "m2", nameThenEcho)
	m3 := startBackend(t, "m3", nameThenEcho)
	backends := []string{m1.addr(), m2.addr(), m3.addr()}

	hcfg := health.Config{Type: health.TypeTCP, Interval: 100 * time.Millisecond, FastInterval: 50 * time.Millisecond,
		Timeout: time.Second, Rise: 2, Fall: 3, Jitter: 0.1}
	mon, err := health.New(backends, hcfg, health.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	monDone := make(chan struct{})
	go func() { defer close(monDone); _ = mon.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-monDone })

	cfg := testConfig(backends...)
	cfg.MinHealthy = 3
	p, err := New(cfg, Options{Health: mon})
	if err != nil {
		t.Fatal(err)
	}
	var serving atomic.Value
	p.OnServingChange(func(ok bool, reason string) { serving.Store(reason) })
	r := &running{p: p, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-r.done })
	<-p.Ready()
	waitFor(t, 5*time.Second, "3 backends UP", func() bool { return mon.UpCount() == 3 })
	waitFor(t, 5*time.Second, "serving", func() bool { s, _ := serving.Load().(string); return s == "3 of 3 backends UP" })

	var failed, ok int
	killed := time.Time{}
	var downAt time.Duration
	for i := 0; i < 300; i++ {
		if i == 50 {
			m2.close() // the master dies: listener and connections gone
			killed = time.Now()
		}
		name, c, err := hello(t, r.addr())
		if err != nil {
			failed++
		} else {
			ok++
			_ = c.Close()
			if !killed.IsZero() && name == "m2" {
				t.Fatalf("connection %d served by the dead backend", i)
			}
		}
		if !killed.IsZero() && downAt == 0 && !mon.IsUp(m2.addr()) {
			downAt = time.Since(killed)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if failed != 0 {
		t.Fatalf("%d of %d connections failed while a backend died", failed, ok+failed)
	}
	if mon.IsUp(m2.addr()) {
		t.Fatal("dead backend still UP")
	}
	s, _ := serving.Load().(string)
	if s != "2 of 3 backends UP, need 3 (proxy.min_healthy_backends)" {
		t.Fatalf("serving reason %q", s)
	}
	st := p.Stats()
	t.Logf("300 connections, m2 killed after 50: 0 failed, %d retries, DOWN after %s", st.Frontend.Retries, downAt)
}
