package tcpproxy

import (
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// TestConnectingCostsNoGoroutine: clients whose backend connection is
// still being opened (a backend that drops SYNs, as in a storm towards a
// master that just died) cost no goroutine each: the connect completes in
// the event loop. A goroutine per pending connection (its stack and
// dialer) made a 2,000-client storm cost vipd 1.2-1.5 x HAProxy's RSS.
func TestConnectingCostsNoGoroutine(t *testing.T) {
	hole := blackhole(t)
	cfg := testConfig(hole)
	cfg.ConnectTimeout = 5 * time.Second
	cfg.Retries = 0
	r := startProxy(t, cfg, newFakeHealth())
	settle()
	before := runtime.NumGoroutine()
	const n = 100
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", r.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitFor(t, 3*time.Second, "all clients accepted", func() bool {
		return r.p.Stats().Frontend.TotalSessions >= n || runtime.NumGoroutine()-before >= n
	})
	if g := runtime.NumGoroutine() - before; g > n/10 {
		t.Fatalf("%d goroutines more with %d clients waiting for their backend connection, want none per client", g, n)
	}
	t.Logf("%d clients connecting: %d goroutines more", n, runtime.NumGoroutine()-before)
}

// TestHostNameBackend: a backend given by host name is dialed (resolved)
// and proxied like an IP one.
func TestHostNameBackend(t *testing.T) {
	b := startBackend(t, "named", nameThenEcho)
	_, port, _ := net.SplitHostPort(b.addr())
	pn, _ := strconv.Atoi(port)
	r := startProxy(t, testConfig(net.JoinHostPort("localhost", strconv.Itoa(pn))), newFakeHealth())
	name, c, err := hello(t, r.addr())
	if err != nil || name != "named" {
		t.Fatalf("got %q, %v", name, err)
	}
	defer c.Close()
	if err := roundTrip(c, "ping"); err != nil {
		t.Fatal(err)
	}
}
