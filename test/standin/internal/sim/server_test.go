package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newTestServer(t *testing.T) (*Client, *httptest.Server) {
	t.Helper()
	dir := t.TempDir()
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ca.crt"), ca.CertPEM, 0o644)
	os.WriteFile(filepath.Join(dir, "ca.key"), ca.KeyPEM, 0o600)
	st, err := OpenStore(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Store: st, Self: "127.0.0.1", CACert: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key"),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	hs := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(hs.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go srv.Replicate(ctx, 50*time.Millisecond) // no peers: synced at once
	return NewClient(hs.URL, TLSConfig(nil, nil, nil), 5*time.Second), hs
}

func TestServerNodesTokensCertsApply(t *testing.T) {
	c, hs := newTestServer(t)
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var s string
		if err := c.Do(ctx, http.MethodGet, "/readyz", nil, &s); err == nil && s == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz never ok")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.Do(ctx, http.MethodPost, "/standin/nodes", Node{Name: "m1", Role: "control-plane", Address: "10.0.0.1"}, nil); err != nil {
		t.Fatal(err)
	}
	var nl struct {
		Items []struct {
			Metadata struct{ Name string }
			Status   struct {
				Conditions []struct{ Type, Status string }
			}
		}
	}
	if err := c.Do(ctx, http.MethodGet, "/api/v1/nodes", nil, &nl); err != nil || len(nl.Items) != 1 || nl.Items[0].Status.Conditions[0].Status != "False" {
		t.Fatalf("node list before CNI: %+v %v (want m1 NotReady)", nl, err)
	}
	// A watch streams the node, then its change to Ready once Calico is applied.
	req, _ := http.NewRequest(http.MethodGet, hs.URL+"/api/v1/nodes?watch=true", nil)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := bufio.NewScanner(resp.Body)
	var results []string
	if err := c.Do(ctx, http.MethodPost, "/standin/apply", []Object{{Kind: "DaemonSet", Group: "apps", Namespace: "kube-system", Name: "calico-node", Hash: "x"}}, &results); err != nil || results[0] != "created" {
		t.Fatalf("apply: %v %v", results, err)
	}
	if err := c.Do(ctx, http.MethodPost, "/standin/apply", []Object{{Kind: "DaemonSet", Group: "apps", Namespace: "kube-system", Name: "calico-node", Hash: "x"}}, &results); err != nil || results[0] != "unchanged" {
		t.Fatalf("second apply: %v %v", results, err)
	}
	var types []string
	for len(types) < 2 && events.Scan() {
		var e struct{ Type string }
		if err := json.Unmarshal(events.Bytes(), &e); err != nil {
			t.Fatalf("watch event %q: %v", events.Text(), err)
		}
		types = append(types, e.Type)
	}
	if strings.Join(types, ",") != "ADDED,MODIFIED" {
		t.Errorf("watch events %v, want ADDED then MODIFIED", types)
	}
	// Tokens and the certificate key.
	if err := c.Do(ctx, http.MethodPost, "/standin/tokens", Token{ID: "abcdef", Secret: "0123456789abcdef", Expires: time.Now().Add(time.Hour)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, http.MethodPost, "/standin/tokens/validate", Token{ID: "abcdef", Secret: "0123456789abcdef"}, nil); err != nil {
		t.Errorf("valid token refused: %v", err)
	}
	if err := c.Do(ctx, http.MethodPost, "/standin/tokens/validate", Token{ID: "abcdef", Secret: "wrongwrongwrong0"}, nil); err == nil {
		t.Error("wrong token secret accepted")
	}
	if err := c.Do(ctx, http.MethodPost, "/standin/certs", Entry{Value: "nokey"}, nil); err == nil || !strings.Contains(err.Error(), "kubeadm-certs") {
		t.Errorf("certs without an uploaded key: %v", err)
	}
	if err := c.Do(ctx, http.MethodPut, "/standin/certkey", Entry{Value: "k1", Expires: time.Now().Add(time.Hour)}, nil); err != nil {
		t.Fatal(err)
	}
	var certs map[string]string
	if err := c.Do(ctx, http.MethodPost, "/standin/certs", Entry{Value: "k1"}, &certs); err != nil || !strings.Contains(certs["caKey"], "PRIVATE KEY") {
		t.Errorf("certs with the key: %v %v", certs != nil, err)
	}
	if err := c.Do(ctx, http.MethodDelete, "/api/v1/nodes/m1", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, http.MethodGet, "/api/v1/nodes/m1", nil, nil); err == nil {
		t.Error("deleted node still served")
	}
}
