package tcpproxy

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// TestIdleConnectionsHoldNoGoroutine: an established connection with no
// byte moving costs no goroutine (its sockets wait in the event loop), so
// 10,000 idle watches do not cost 20,000 goroutine stacks.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	be := startBackend(t, "x", nameThenEcho)
	r := startProxy(t, testConfig(be.addr()), nil)
	settle()
	base := runtime.NumGoroutine()
	const n = 40
	var conns []*net.TCPConn
	for i := 0; i < n; i++ {
		_, c, err := hello(t, r.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := roundTrip(c, "ping"); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitFor(t, 5*time.Second, "sessions established", func() bool { return r.p.Stats().Frontend.CurrentSessions == n })
	// The backend runs one goroutine per connection; the proxy should add
	// none (a little slack for runtime helpers).
	var g int
	deadline := time.Now().Add(5 * time.Second)
	for {
		settle()
		g = runtime.NumGoroutine() - base - n
		if g <= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if g > 4 {
		t.Fatalf("%d idle proxied connections: %d goroutines in the proxy beyond the backend's, want none", n, g)
	}
	// Still working after idling.
	for _, c := range conns {
		if err := roundTrip(c, "again"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d idle connections: %d goroutines beyond the backend's", n, g)
}

// TestSlowReaderGetsEveryByteInOrder: a backend writing many small messages
// to a client that does not read for a while fills the client's socket
// buffer (the proxy's write would block mid-message); once the client
// reads, every byte arrives, in order.
func TestSlowReaderGetsEveryByteInOrder(t *testing.T) {
	const total = 12 << 20
	payload := make([]byte, total)
	for i := range payload {
		payload[i] = byte(i*7 + i>>11)
	}
	be := startBackend(t, "x", func(_ *backend, c *net.TCPConn) {
		for off := 0; off < total; {
			n := min(1000+off%3000, total-off) // small, uneven messages
			if _, err := c.Write(payload[off : off+n]); err != nil {
				return
			}
			off += n
			if off%(64<<10) < n {
				time.Sleep(50 * time.Microsecond) // keep the proxy's reads short
			}
		}
		_ = c.CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	})
	r := startProxy(t, testConfig(be.addr()), nil)
	c := dial(t, r.addr())
	defer c.Close()
	time.Sleep(300 * time.Millisecond) // let the buffers fill
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", len(got), err)
	}
	if !bytes.Equal(got, payload) {
		i := 0
		for i < len(got) && i < len(payload) && got[i] == payload[i] {
			i++
		}
		t.Fatalf("got %d bytes, want %d; first difference at %d", len(got), total, i)
	}
}
