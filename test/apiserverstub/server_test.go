package apiserverstub

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestStandIn(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	conf, err := ca.TLSConfig("m1", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ready := true
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, conf, Options{Host: "m1", WatchInterval: 20 * time.Millisecond,
			Ready: func() bool { return ready }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	base := "https://" + ln.Addr().String()
	get := func(path string) (int, string) {
		t.Helper()
		r, err := c.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	for _, p := range []string{"/readyz", "/healthz", "/livez"} {
		if code, body := get(p); code != 200 || body != "ok" {
			t.Errorf("GET %s: %d %q, want 200 ok", p, code, body)
		}
	}
	ready = false
	if code, _ := get("/readyz"); code != 500 {
		t.Errorf("GET /readyz while not ready: %d, want 500", code)
	}
	code, body := get("/version")
	var v Version
	if err := json.Unmarshal([]byte(body), &v); code != 200 || err != nil || v.Host != "m1" {
		t.Errorf("GET /version: %d %q (%v), want host m1", code, body, err)
	}
	if code, _ := get("/api/v1/namespaces/default/pods"); code != 404 {
		t.Errorf("GET pods without watch: %d, want 404", code)
	}

	r, err := c.Get(base + "/api/v1/namespaces/default/pods?watch=1")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if len(r.TransferEncoding) == 0 || r.TransferEncoding[0] != "chunked" {
		t.Errorf("watch transfer encoding %v, want chunked", r.TransferEncoding)
	}
	sc := bufio.NewScanner(r.Body)
	start := time.Now()
	for i := int64(1); i <= 5; i++ {
		if !sc.Scan() {
			t.Fatalf("watch ended after %d events: %v", i-1, sc.Err())
		}
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Seq != i || ev.Host != "m1" {
			t.Fatalf("event %d: %q (%v)", i, sc.Text(), err)
		}
	}
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Errorf("5 events at 20ms came in %v: not paced", d)
	}
}

func TestProber(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	conf, err := ca.TLSConfig("m1", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, conf, Options{Host: "m1"}) }()
	var d net.Dialer
	p := StartProber(d.DialContext, &tls.Config{RootCAs: ca.Pool()}, ln.Addr().String(), 10*time.Millisecond, time.Second)
	defer p.Stop()
	start := time.Now()
	// At least 10 requests done while serving (a loaded machine managed 8 in 300 ms once).
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if total, _, _, _ := Summary(p.Between(start, time.Now())); total >= 12 {
			break
		}
	}
	down := time.Now()
	cancel() // the server goes away: requests fail from now on
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p.WaitDone(time.Now().Add(200 * time.Millisecond))
	var before []Result // finished while the server was up
	for _, r := range p.Between(start, down) {
		if r.End.Before(down) {
			before = append(before, r)
		}
	}
	total, failed, byHost, errs := Summary(before)
	if total < 10 || failed > 0 || byHost["m1"] != total {
		t.Errorf("while serving: %d requests, %d failed %q, by host %v", total, failed, errs, byHost)
	}
	if _, failed, _, _ := Summary(p.Between(down.Add(50*time.Millisecond), time.Now())); failed == 0 {
		t.Errorf("no request failed after the server stopped")
	}
	if _, ok := p.FirstOKAfter(down.Add(50 * time.Millisecond)); ok {
		t.Errorf("a request succeeded after the server stopped")
	}
	if g := p.LongestGap(start); g < 150*time.Millisecond {
		t.Errorf("longest gap %v after the server stopped 200ms ago, want >= 150ms", g)
	}
}
