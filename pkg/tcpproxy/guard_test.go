package tcpproxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// closedWithin reports how long c took to be closed by the proxy (a read
// error or EOF), failing the test when it is still open after limit.
func closedWithin(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection still open %s later", limit)
		}
		return time.Since(start)
	}
}

// syncBuffer is a log sink the proxy's goroutines may write concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLoggedProxy is startProxy with the proxy's log captured.
func startLoggedProxy(t *testing.T, cfg Config) (*running, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	p, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
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
	return r, logs
}

// TestFirstByteTimeout: a client that never sends its first byte is closed
// after proxy.first_byte_timeout (its backend connection with it), counted
// and logged; a client that spoke and then stays quiet longer than the
// timeout (a watch) is left alone.
func TestFirstByteTimeout(t *testing.T) {
	be := startBackend(t, "x", echo)
	cfg := testConfig(be.addr())
	cfg.FirstByteTimeout = time.Second
	r, logs := startLoggedProxy(t, cfg)

	talker := dial(t, r.addr())
	defer talker.Close()
	if err := roundTrip(talker, "hello"); err != nil {
		t.Fatal(err)
	}
	mute := dial(t, r.addr())
	defer mute.Close()
	waitFor(t, 5*time.Second, "2 sessions", func() bool { return r.p.Stats().Frontend.CurrentSessions == 2 })

	el := closedWithin(t, mute, 15*time.Second)
	if el < 700*time.Millisecond {
		t.Fatalf("silent client closed after %s, first_byte_timeout 1s", el)
	}
	waitFor(t, 5*time.Second, "the silent session to end", func() bool { return r.p.Stats().Frontend.CurrentSessions == 1 })
	if n := r.p.Stats().Frontend.TimedOut["first_byte_timeout"]; n != 1 {
		t.Fatalf("first_byte_timeout count %d, want 1", n)
	}
	if !strings.Contains(logs.String(), "reason=first_byte_timeout") {
		t.Fatalf("no log line for the closed connection:\n%s", logs.String())
	}

	// The client that spoke first, quiet for 2 x the timeout: still served.
	time.Sleep(2 * time.Second)
	if err := roundTrip(talker, "still here"); err != nil {
		t.Fatalf("a quiet client that had spoken was cut: %v", err)
	}
	if st := r.p.Stats().Frontend; st.TimedOut["first_byte_timeout"] != 1 || st.CurrentSessions != 1 {
		t.Fatalf("frontend %+v", st)
	}
}

// TestHalfClosedTimeout: once one side has closed its half, the session is
// closed after proxy.half_closed_timeout of silence (client FIN first, and
// server FIN first); a half-closed session that still carries bytes is not;
// a session with both halves open and quiet is not either.
func TestHalfClosedTimeout(t *testing.T) {
	// The backend echoes; asked "fin", it answers "banner", closes its half
	// and reads on silently. It never closes a connection itself until the
	// test ends (after the client's FIN it holds the connection, silent).
	hold := make(chan struct{})
	be := startBackend(t, "x", func(_ *backend, c *net.TCPConn) {
		defer func() { <-hold }()
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if string(buf[:n]) == "fin" {
				_, _ = io.WriteString(c, "banner")
				_ = c.CloseWrite()
				_, _ = io.Copy(io.Discard, c)
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	})
	t.Cleanup(func() { close(hold) }) // runs before the backend's cleanup
	cfg := testConfig(be.addr())
	cfg.HalfClosedTimeout = time.Second
	r, _ := startLoggedProxy(t, cfg)

	// Both halves open, quiet for 2 x the timeout: left alone.
	quiet := dial(t, r.addr())
	defer quiet.Close()
	if err := roundTrip(quiet, "watch"); err != nil {
		t.Fatal(err)
	}

	// Client FIN first, backend silent.
	clientFin := dial(t, r.addr())
	defer clientFin.Close()
	if err := roundTrip(clientFin, "req"); err != nil {
		t.Fatal(err)
	}
	if err := clientFin.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	finAt := time.Now()

	// Server FIN first, client silent.
	serverFin := dial(t, r.addr())
	defer serverFin.Close()
	if _, err := io.WriteString(serverFin, "fin"); err != nil {
		t.Fatal(err)
	}
	_ = serverFin.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(serverFin); err != nil || string(b) != "banner" {
		t.Fatalf("server FIN: read %q %v", b, err)
	}

	// Not closed early (checked only while it is early enough to tell).
	if n := r.p.Stats().Frontend.TimedOut["half_closed_timeout"]; n != 0 && time.Since(finAt) < 700*time.Millisecond {
		t.Fatalf("%d half-closed sessions closed %s after the FIN, half_closed_timeout 1s", n, time.Since(finAt))
	}

	// Server FIN first, the client keeps sending for 2.5 x the timeout.
	busy := dial(t, r.addr())
	defer busy.Close()
	if _, err := io.WriteString(busy, "fin"); err != nil {
		t.Fatal(err)
	}
	_ = busy.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(busy); err != nil || string(b) != "banner" {
		t.Fatalf("busy: read %q %v", b, err)
	}
	start := time.Now()
	for time.Since(start) < 2500*time.Millisecond {
		if _, err := io.WriteString(busy, "."); err != nil {
			t.Fatalf("a half-closed session still carrying bytes was cut after %s: %v", time.Since(start), err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// By now both silent half-closed sessions are past their timeout.
	waitFor(t, 10*time.Second, "two half-closed sessions closed", func() bool {
		return r.p.Stats().Frontend.TimedOut["half_closed_timeout"] == 2
	})
	// The client that sent its FIN sees the reset on read; the one that got
	// the server's FIN (it read EOF already) on its next write.
	closedWithin(t, clientFin, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := io.WriteString(serverFin, "."); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server FIN: the client can still write 5 s after the session was counted closed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := io.WriteString(busy, "."); err != nil {
		t.Fatalf("busy half-closed session cut: %v", err)
	}
	if err := roundTrip(quiet, "again"); err != nil {
		t.Fatalf("a quiet session with both halves open was cut: %v", err)
	}
	if st := r.p.Stats().Frontend; st.CurrentSessions != 2 || st.TimedOut["half_closed_timeout"] != 2 {
		t.Fatalf("frontend %+v, want 2 sessions left (quiet, busy) and 2 closed", st)
	}
}

// TestMaxConnsPerSource: a client address at proxy.max_conns_per_source
// gets its next connections reset at once, counted and logged once per
// sourceLogEvery; another address is still served; a slot freed is
// usable again.
func TestMaxConnsPerSource(t *testing.T) {
	be := startBackend(t, "x", echo)
	cfg := testConfig(be.addr())
	cfg.MaxConnsPerSource = 2
	r, logs := startLoggedProxy(t, cfg)

	from := func(src string) (*net.TCPConn, error) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", r.addr())
		if err != nil {
			return nil, err
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		return c.(*net.TCPConn), nil
	}
	var held []*net.TCPConn
	for i := 0; i < 2; i++ {
		c, err := from("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := roundTrip(c, "x"); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	const extra = 20
	for i := 0; i < extra; i++ {
		c, err := from("127.0.0.1")
		if err != nil {
			continue // reset before the dial returned: refused too
		}
		if err := roundTrip(c, "x"); err == nil {
			t.Fatalf("connection %d over the per-source cap was served", 3+i)
		}
		_ = c.Close()
	}
	other, err := from("127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := roundTrip(other, "other source"); err != nil {
		t.Fatalf("another source refused: %v", err)
	}
	var st Stats
	waitFor(t, 5*time.Second, "refusals counted", func() bool {
		st = r.p.Stats()
		return st.Frontend.RefusedBySource >= extra
	})
	if f := st.Frontend; f.RefusedBySource != extra || f.CurrentSessions != 3 || f.MaxConnsPerSource != 2 || f.RefusedByCap != 0 {
		t.Fatalf("frontend %+v", f)
	}
	if n := strings.Count(logs.String(), "at its connection cap"); n != 1 {
		t.Fatalf("%d refusals wrote %d log lines, want 1 (rate-limited):\n%s", extra, n, logs.String())
	}
	if !strings.Contains(logs.String(), "source=127.0.0.1") {
		t.Fatalf("the log line does not name the source:\n%s", logs.String())
	}
	// A slot freed is usable again.
	_ = held[0].Close()
	waitFor(t, 5*time.Second, "the slot to be freed", func() bool { return r.p.Stats().Frontend.CurrentSessions == 2 })
	c, err := from("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, "x"); err != nil {
		t.Fatalf("below the per-source cap again: %v", err)
	}
}

func TestGuardConfigValidate(t *testing.T) {
	good := testConfig("10.0.0.1:6443")
	good.FirstByteTimeout, good.HalfClosedTimeout, good.MaxConnsPerSource = 10*time.Second, 2*time.Minute, 1000
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.FirstByteTimeout = 10 * time.Millisecond }, "proxy.first_byte_timeout: must be 0 (never) or 1s-1h, got 10ms"},
		{func(c *Config) { c.FirstByteTimeout = 2 * time.Hour }, "proxy.first_byte_timeout"},
		{func(c *Config) { c.HalfClosedTimeout = -time.Second }, "proxy.half_closed_timeout"},
		{func(c *Config) { c.HalfClosedTimeout = 100 * time.Millisecond }, "proxy.half_closed_timeout: must be 0 (never) or 1s-24h"},
		{func(c *Config) { c.MaxConnsPerSource = -1 }, "proxy.max_conns_per_source: must be 0-1000000"},
	}
	for _, tc := range cases {
		c := good
		tc.mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}

// BenchmarkSweep: one pass of the timeout sweeper over 20,000 established
// sessions none of which is due (it runs once a second with the defaults,
// holding the proxy's lock).
func BenchmarkSweep(b *testing.B) {
	p := &Proxy{sessions: map[uint64]*session{}}
	now := time.Now()
	for i := range 20000 {
		s := &session{since: now}
		s.bytesIn.Store(1)
		s.lastActive.Store(now.UnixNano())
		p.sessions[uint64(i)] = s
	}
	c := Config{FirstByteTimeout: 10 * time.Second, HalfClosedTimeout: 2 * time.Minute}
	b.ResetTimer()
	for range b.N {
		p.sweep(c)
	}
}
