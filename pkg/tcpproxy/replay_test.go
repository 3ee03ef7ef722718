package tcpproxy

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// dyingBackend reads the client's first bytes and dies without answering
// (its connection is reset): a master SIGKILLed after accepting.
func dyingBackend(_ *backend, c *net.TCPConn) {
	buf := make([]byte, 4096)
	_, _ = c.Read(buf)
	_ = c.SetLinger(0)
}

// answerFirst answers "name:" and the first n bytes it read.
func answerFirst(n int) func(b *backend, c *net.TCPConn) {
	return func(b *backend, c *net.TCPConn) {
		buf := make([]byte, n)
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		_, _ = c.Write(append([]byte(b.name+":"), buf...))
		_ = c.CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	}
}

// TestFirstFlightReplayed: a backend that dies after accepting, before
// answering, costs a TLS client nothing: its ClientHello is replayed to the
// next backend, which answers it.
func TestFirstFlightReplayed(t *testing.T) {
	dying := startBackend(t, "dying", dyingBackend)
	good := startBackend(t, "good", answerFirst(300))
	h := newFakeHealth()
	r := startProxy(t, testConfig(dying.addr(), good.addr()), h)
	hello := append([]byte{0x16, 0x03, 0x01, 0x01, 0x27}, bytes.Repeat([]byte{0xab}, 295)...) // a TLS handshake record
	// Round robin: every other connection goes to the dying backend first.
	for i := 0; i < 6; i++ {
		c := dial(t, r.addr())
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len("good:")+len(hello))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("connection %d: %v (the client's first flight was not replayed)", i, err)
		}
		if !bytes.Equal(got, append([]byte("good:"), hello...)) {
			t.Fatalf("connection %d: answer %q", i, got)
		}
		_ = c.Close()
	}
	if n := h.failuresOf(dying.addr()); n < 3 {
		t.Errorf("the dying backend was reported failing %d times, want 3 (one per replay)", n)
	}
	waitFor(t, 5*time.Second, "sessions to end", func() bool { return r.p.Stats().Frontend.CurrentSessions == 0 })
	st := r.p.Stats()
	if st.Frontend.Retries < 3 {
		t.Errorf("retries %d, want >= 3 (each replay counts)", st.Frontend.Retries)
	}
}

// TestPlaintextFirstFlightNotReplayed: a first flight that is not a TLS
// handshake may be a request the dead backend had started: the client is
// reset rather than the request run twice.
func TestPlaintextFirstFlightNotReplayed(t *testing.T) {
	dying := startBackend(t, "dying", dyingBackend)
	good := startBackend(t, "good", answerFirst(len("POST /x HTTP/1.1\r\n")))
	r := startProxy(t, testConfig(dying.addr(), good.addr()), newFakeHealth())
	failed := 0
	for i := 0; i < 4; i++ {
		c := dial(t, r.addr())
		if _, err := io.WriteString(c, "POST /x HTTP/1.1\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		switch {
		case strings.HasPrefix(string(b), "good:"):
		case err != nil || len(b) == 0:
			failed++
		default:
			t.Fatalf("answer %q", b)
		}
		_ = c.Close()
	}
	if failed != 2 {
		t.Fatalf("%d of 4 connections failed, want 2 (those sent to the dying backend: not replayed)", failed)
	}
}
