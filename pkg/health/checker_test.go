package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type apiStandIn struct {
	srv    *httptest.Server
	mu     sync.Mutex
	status int
	auth   []string
}

func newAPIStandIn(t *testing.T) *apiStandIn {
	a := &apiStandIn{status: 200}
	a.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.auth = append(a.auth, r.Header.Get("Authorization"))
		st := a.status
		a.mu.Unlock()
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(st)
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *apiStandIn) addr() string { return a.srv.Listener.Addr().String() }

func (a *apiStandIn) set(code int) {
	a.mu.Lock()
	a.status = code
	a.mu.Unlock()
}

func (a *apiStandIn) lastAuth() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.auth) == 0 {
		return "<none>"
	}
	return a.auth[len(a.auth)-1]
}

func check(t *testing.T, cfg Config, addr string) error {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c, err := NewChecker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Check(ctx, addr)
}

func writeCA(t *testing.T, srv *httptest.Server) string {
	p := filepath.Join(t.TempDir(), "ca.crt")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHTTPSCheck(t *testing.T) {
	api := newAPIStandIn(t)
	cfg := DefaultConfig()
	cfg.Type = TypeHTTPS
	cfg.CAFile = writeCA(t, api.srv)
	cfg.ServerName = "example.com" // httptest's certificate names

	if err := check(t, cfg, api.addr()); err != nil {
		t.Fatalf("200 with CA: %v", err)
	}
	api.set(500)
	if err := check(t, cfg, api.addr()); err == nil || !strings.Contains(err.Error(), "status 500") {
		t.Fatalf("500: %v", err)
	}
	api.set(401)
	if err := check(t, cfg, api.addr()); err == nil || !strings.Contains(err.Error(), "status 401") {
		t.Fatalf("401 without auth_errors_are_up: %v", err)
	}
	cfg.AuthErrorsAreUp = true
	if err := check(t, cfg, api.addr()); err != nil {
		t.Fatalf("401 with auth_errors_are_up: %v", err)
	}
	api.set(403)
	if err := check(t, cfg, api.addr()); err != nil {
		t.Fatalf("403 with auth_errors_are_up: %v", err)
	}
	api.set(500)
	if err := check(t, cfg, api.addr()); err == nil {
		t.Fatal("500 UP with auth_errors_are_up")
	}
	api.set(200)

	// Path
	cfg.Path = "/livez"
	if err := check(t, cfg, api.addr()); err == nil || !strings.Contains(err.Error(), "status 404") {
		t.Fatalf("wrong path: %v", err)
	}
	cfg.Path = "/readyz"
	cfg.AuthErrorsAreUp = false

	// Verification fails without the CA, passes with insecure_skip_verify.
	noCA := cfg
	noCA.CAFile = ""
	if err := check(t, noCA, api.addr()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("unknown CA accepted: %v", err)
	}
	noCA.InsecureSkipVerify = true
	if err := check(t, noCA, api.addr()); err != nil {
		t.Fatalf("insecure_skip_verify: %v", err)
	}

	// Bearer token read from file and sent; never in error texts.
	tokFile := filepath.Join(t.TempDir(), "token")
	const secret = "s3cr3t-token-value"
	if err := os.WriteFile(tokFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.BearerTokenFile = tokFile
	if err := check(t, cfg, api.addr()); err != nil {
		t.Fatal(err)
	}
	if got := api.lastAuth(); got != "Bearer "+secret {
		t.Fatalf("Authorization header %q", got)
	}
	api.set(401)
	err := check(t, cfg, api.addr())
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("401 error %v (must fail and not contain the token)", err)
	}
	// Missing token file: NewChecker fails naming the field.
	cfg.BearerTokenFile = filepath.Join(t.TempDir(), "missing")
	if _, err := NewChecker(cfg); err == nil || !strings.Contains(err.Error(), "health.bearer_token_file") {
		t.Fatalf("missing token file: %v", err)
	}
	bad := DefaultConfig()
	bad.Type = TypeHTTPS
	bad.CAFile = filepath.Join(t.TempDir(), "nope.crt")
	if _, err := NewChecker(bad); err == nil || !strings.Contains(err.Error(), "health.tls.ca_file") {
		t.Fatalf("missing CA file: %v", err)
	}
}

func TestHTTPSCheckClientCert(t *testing.T) {
	// The stand-in requires a client certificate; reuse the server's own
	// key pair as the client's (httptest's cert has ExtKeyUsage any).
	api := &apiStandIn{status: 200}
	api.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			w.WriteHeader(401)
			return
		}
		w.WriteHeader(200)
	}))
	api.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	api.srv.StartTLS()
	t.Cleanup(api.srv.Close)
	cert := api.srv.TLS.Certificates[0]
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	keyDER := marshalKey(t, cert.PrivateKey)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)

	cfg := DefaultConfig()
	cfg.Type = TypeHTTPS
	cfg.InsecureSkipVerify = true
	if err := check(t, cfg, api.addr()); err == nil {
		t.Fatal("no client cert: want 401 failure")
	}
	cfg.CertFile, cfg.KeyFile = certFile, keyFile
	if err := check(t, cfg, api.addr()); err != nil {
		t.Fatalf("with client cert: %v", err)
	}
}

func TestTCPCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	addr := ln.Addr().String()
	cfg := DefaultConfig()
	if err := check(t, cfg, addr); err != nil {
		t.Fatalf("listening port: %v", err)
	}
	_ = ln.Close()
	err = check(t, cfg, addr)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("closed port: %v", err)
	}
	// health.port overrides the backend's port.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	cfg.Port = ln2.Addr().(*net.TCPAddr).Port
	if err := check(t, cfg, addr); err != nil {
		t.Fatalf("check port override: %v", err)
	}
}

// TestMonitorRealChecks runs the Monitor with the real clock and a real TCP
// checker: a backend that stops listening goes DOWN within fall checks.
func TestMonitorRealChecks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	addr := ln.Addr().String()
	cfg := DefaultConfig()
	cfg.Interval = 50 * time.Millisecond
	cfg.FastInterval = 20 * time.Millisecond
	m, err := New([]string{addr}, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan Event, 10)
	m.Subscribe(func(ev Event) { ch <- ev })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	wait := func(want State) Event {
		select {
		case ev := <-ch:
			if ev.To != want {
				t.Fatalf("event %+v, want %s", ev, want)
			}
			return ev
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event", want)
		}
		return Event{}
	}
	up := wait(StateUp)
	_ = ln.Close()
	down := wait(StateDown)
	t.Logf("DOWN %s after UP (interval 50ms, fast 20ms, fall 3)", down.At.Sub(up.At))
	s := m.Status()[0]
	if s.LastLatency <= 0 || s.Checks < 4 {
		t.Fatalf("status %+v", s)
	}
}

func marshalKey(t *testing.T, k any) []byte {
	t.Helper()
	b, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
