package tcpproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeHealth marks backends UP unless set DOWN, and records passive
// failures.
type fakeHealth struct {
	mu       sync.Mutex
	down     map[string]bool
	failures map[string]int
}

func newFakeHealth() *fakeHealth {
	return &fakeHealth{down: map[string]bool{}, failures: map[string]int{}}
}

func (h *fakeHealth) IsUp(addr string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.down[addr]
}

func (h *fakeHealth) ReportFailure(addr string, _ error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failures[addr]++
}

func (h *fakeHealth) set(addr string, up bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down[addr] = !up
}

func (h *fakeHealth) failuresOf(addr string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failures[addr]
}

// backend is a loopback test server.
type backend struct {
	ln   net.Listener
	name string
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]bool
}

// startBackend serves each connection with handler (which must return
// when the connection breaks).
func startBackend(t *testing.T, name string, handler func(b *backend, c *net.TCPConn)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln, name: name, open: map[net.Conn]bool{}}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.open[c] = true
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer func() {
					b.mu.Lock()
					delete(b.open, c)
					b.mu.Unlock()
					_ = c.Close()
				}()
				handler(b, c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(b.close)
	return b
}

func (b *backend) addr() string { return b.ln.Addr().String() }

func (b *backend) close() {
	_ = b.ln.Close()
	b.mu.Lock()
	for c := range b.open {
		_ = c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// nameThenEcho writes "name\n" then echoes until EOF.
func nameThenEcho(b *backend, c *net.TCPConn) {
	if _, err := io.WriteString(c, b.name+"\n"); err != nil {
		return
	}
	_, _ = io.Copy(c, c)
}

// echo echoes until EOF, then closes.
func echo(_ *backend, c *net.TCPConn) { _, _ = io.Copy(c, c) }

// deadAddr returns a loopback address with nothing listening.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	_ = ln.Close()
	return a
}

type running struct {
	p      *Proxy
	cancel context.CancelFunc
	done   chan error
}

func (r *running) addr() string { return r.p.Addr().String() }

// stop cancels Run and waits for it (bounded).
func (r *running) stop(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(within):
		t.Fatalf("Run did not return within %s", within)
	}
	return time.Since(start)
}

func startProxy(t *testing.T, cfg Config, h Health) *running {
	t.Helper()
	if cfg.Listen == "" || cfg.Listen == DefaultListen {
		cfg.Listen = "127.0.0.1:0"
	}
	var opts Options
	if h != nil {
		opts.Health = h
	}
	p, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{p: p, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	select {
	case <-p.Ready():
	case err := <-r.done:
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("proxy not ready")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("proxy Run did not return at cleanup")
		}
	})
	return r
}

func testConfig(backends ...string) Config {
	c := DefaultConfig()
	c.Listen = "127.0.0.1:0"
	c.Backends = backends
	c.DrainGrace = 2 * time.Second
	return c
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c.(*net.TCPConn)
}

// hello connects and reads the backend's name line.
func hello(t *testing.T, addr string) (string, *net.TCPConn, error) {
	t.Helper()
	c := dial(t, addr)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		_ = c.Close()
		return "", nil, err
	}
	return strings.TrimSpace(line), c, nil
}

func roundTrip(c net.Conn, msg string) error {
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echo mismatch: " + string(buf))
	}
	return nil
}

// waitFor polls cond up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fdCount counts this process's open file descriptors, and the pipes
// among them (fd > 2).
func fdCount(t *testing.T) (all, pipes int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue
		}
		all++
		if strings.HasPrefix(l, "pipe:") && e.Name() != "0" && e.Name() != "1" && e.Name() != "2" {
			pipes++
		}
	}
	return all, pipes
}

// settle runs the GC so that splice pipes cached by the runtime are freed.
func settle() {
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
