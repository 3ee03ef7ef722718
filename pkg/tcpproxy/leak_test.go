package tcpproxy

import (
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestNoLeak: clients that connect and send nothing, half-close, or reset
// leave no goroutine and no file descriptor behind.
func TestNoLeak(t *testing.T) {
	be := startBackend(t, "x", nameThenEcho)
	r := startProxy(t, testConfig(be.addr()), newFakeHealth())
	// A proxy whose backends are all dead (clients are reset), and one at
	// its connection cap (clients are closed at once).
	dead := startProxy(t, testConfig(deadAddr(t), deadAddr(t)), newFakeHealth())
	capCfg := testConfig(be.addr())
	capCfg.MaxConns = 1
	capped := startProxy(t, capCfg, nil)
	_, holder, err := hello(t, capped.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	// Warm up (runtime pools, first-use goroutines), then take the baseline.
	for i := 0; i < 3; i++ {
		_, c, err := hello(t, r.addr())
		if err != nil {
			t.Fatal(err)
		}
		_ = roundTrip(c, "warm")
		_ = c.Close()
	}
	waitFor(t, 5*time.Second, "warm-up sessions to end", func() bool { return r.p.Stats().Frontend.CurrentSessions == 0 })
	settle()
	baseG := runtime.NumGoroutine()
	baseFD, _ := fdCount(t)

	const n = 20
	var wg sync.WaitGroup
	kinds := map[string]func(c *net.TCPConn){
		"silent-close": func(c *net.TCPConn) { _ = c.Close() },
		"silent-reset": func(c *net.TCPConn) { _ = c.SetLinger(0); _ = c.Close() },
		"half-close": func(c *net.TCPConn) {
			_, _ = io.WriteString(c, "bye")
			_ = c.CloseWrite()
			_, _ = io.Copy(io.Discard, c) // banner + echo, then EOF
			_ = c.Close()
		},
		"reset-after-data": func(c *net.TCPConn) {
			_ = roundTrip(c, "data")
			_ = c.SetLinger(0)
			_ = c.Close()
		},
		"silent-then-close-later": func(c *net.TCPConn) {
			time.Sleep(50 * time.Millisecond)
			_ = c.Close()
		},
	}
	for name, fn := range kinds {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.DialTimeout("tcp", r.addr(), 5*time.Second)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				fn(c.(*net.TCPConn))
			}()
		}
	}
	for _, target := range []*running{dead, capped} {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.DialTimeout("tcp", target.addr(), 5*time.Second)
				if err != nil {
					return // a reset can reach the dial
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.Copy(io.Discard, c)
				_ = c.Close()
			}()
		}
	}
	wg.Wait()
	waitFor(t, 10*time.Second, "dead and capped proxies to settle", func() bool {
		d, c := dead.p.Stats().Frontend, capped.p.Stats().Frontend
		return d.CurrentSessions == 0 && d.ConnErrors == n && c.RefusedByCap == n && c.CurrentSessions == 1
	})
	total := uint64(3 + n*len(kinds))
	waitFor(t, 10*time.Second, "all sessions to end", func() bool {
		st := r.p.Stats().Frontend
		return st.CurrentSessions == 0 && st.TotalSessions == total
	})
	var g, fds int
	deadline := time.Now().Add(10 * time.Second)
	for {
		settle()
		g = runtime.NumGoroutine()
		fds, _ = fdCount(t)
		if g <= baseG && fds <= baseFD {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("leak: goroutines %d (baseline %d), fds %d (baseline %d)\n%s", g, baseG, fds, baseFD, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d clients (%d kinds, plus %d reset for lack of a backend and %d refused by the cap): goroutines %d (baseline %d), fds %d (baseline %d)", total-3, len(kinds), n, n, g, baseG, fds, baseFD)
}

// TestSpliceUsed checks that forwarding goes through splice(2) and that an
// idle connection holds no pipe: Go's splice path takes a pipe from a pool
// while bytes move; a plain read/write copy holds none.
func TestSpliceUsed(t *testing.T) {
	// Baseline: pipes inherited from the test harness, after the GC has
	// freed the runtime's cached splice pipes of earlier tests.
	basePipes := func() int {
		settle()
		_, p0 := fdCount(t)
		for i := 0; i < 50; i++ {
			settle()
			_, p := fdCount(t)
			if p == p0 {
				break
			}
			p0 = p
		}
		return p0
	}
	pipes0 := basePipes()
	const total = 64 << 20
	be := startBackend(t, "x", func(_ *backend, c *net.TCPConn) {
		buf := make([]byte, 32<<10)
		for sent := 0; sent < total; sent += len(buf) {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
		_, _ = io.Copy(io.Discard, c) // then idle until the client closes
	})
	r := startProxy(t, testConfig(be.addr()), nil)
	c := dial(t, r.addr())
	defer c.Close()
	if _, err := io.CopyN(io.Discard, c, 4<<20); err != nil {
		t.Fatal(err)
	}
	_, during := fdCount(t)
	// The test's own sockets copy with read/write (io.Discard, []byte), so
	// only the proxy's splice adds pipes.
	if during < pipes0+2 {
		t.Fatalf("%d pipe fds during a proxied transfer (baseline %d), want >= baseline+2 (splice)", during, pipes0)
	}
	if _, err := io.CopyN(io.Discard, c, total-(4<<20)); err != nil {
		t.Fatal(err)
	}
	// Idle now, connection still open: no pipe held.
	idle := basePipes()
	if idle > pipes0 {
		t.Fatalf("%d pipe fds with an idle open connection (baseline %d): pipes held while idle", idle, pipes0)
	}
	if err := roundTrip(c, ""); err != nil {
		t.Fatal(err)
	}
	t.Logf("pipe fds: baseline %d, during transfer %d, idle connection %d", pipes0, during, idle)
}
