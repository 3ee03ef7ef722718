package tcpproxy

import (
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// blackhole returns a loopback address whose SYNs go unanswered (like a
// master whose link is cut): a listening socket with backlog 0 that never
// accepts, its queue filled by connections made here.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(sa.(*unix.SockaddrInet4).Port)
	// Fill the accept queue until a connect times out.
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	t.Skip("could not make a blackhole backend (accept queue never filled)")
	return ""
}

// TestBlackholedBackend: a backend that silently drops SYNs costs the
// client ConnectTimeout, not a failure.
func TestBlackholedBackend(t *testing.T) {
	live := startBackend(t, "live", nameThenEcho)
	hole := blackhole(t)
	h := newFakeHealth()
	cfg := testConfig(hole, live.addr())
	cfg.ConnectTimeout = 300 * time.Millisecond
	r := startProxy(t, cfg, h)
	var worst time.Duration
	for i := 0; i < 6; i++ {
		start := time.Now()
		name, c, err := hello(t, r.addr())
		if err != nil || name != "live" {
			t.Fatalf("client %d: %q %v", i, name, err)
		}
		_ = c.Close()
		worst = max(worst, time.Since(start))
	}
	if h.failuresOf(hole) == 0 {
		t.Fatal("connect timeout not reported as a passive failure")
	}
	if worst < 250*time.Millisecond || worst > 2*time.Second {
		t.Fatalf("worst connection time %s, want about the 300ms connect timeout", worst)
	}
	t.Logf("6 clients, 1 of 2 backends blackholed: 0 failed, worst %s (connect timeout 300ms)", worst)
}
