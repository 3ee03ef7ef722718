package tcpproxy

import (
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func sockInt(t *testing.T, rc syscall.RawConn, level, opt int) int {
	t.Helper()
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// TestKeepAliveBothSides: TCP keepalive is on for the client and the
// backend socket of a session, with the configured timings.
func TestKeepAliveBothSides(t *testing.T) {
	be := startBackend(t, "x", nameThenEcho)
	cfg := testConfig(be.addr())
	cfg.KeepAlive = 30 * time.Second
	r := startProxy(t, cfg, nil)
	_, c, err := hello(t, r.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r.p.mu.Lock()
	var s *session
	for _, x := range r.p.sessions {
		s = x
	}
	r.p.mu.Unlock()
	if s == nil {
		t.Fatal("no session")
	}
	for side, rc := range map[string]syscall.RawConn{"client": s.clientRC, "backend": s.serverRC} {
		if v := sockInt(t, rc, unix.SOL_SOCKET, unix.SO_KEEPALIVE); v != 1 {
			t.Errorf("%s: SO_KEEPALIVE %d", side, v)
		}
		if v := sockInt(t, rc, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE); v != 30 {
			t.Errorf("%s: TCP_KEEPIDLE %d, want 30", side, v)
		}
		if v := sockInt(t, rc, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL); v != 10 {
			t.Errorf("%s: TCP_KEEPINTVL %d, want 10", side, v)
		}
		if v := sockInt(t, rc, unix.IPPROTO_TCP, unix.TCP_KEEPCNT); v != 3 {
			t.Errorf("%s: TCP_KEEPCNT %d, want 3", side, v)
		}
	}
}
