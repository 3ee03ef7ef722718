package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
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

// The stand-in's etcd membership: a second member with the same peer URL is refused like
// etcd refuses it ("Peer URLs already exists", kubernetes/kubeadm#2095); removal frees it;
// removals replicate (Merge keeps the newest).
func TestServerEtcdMembers(t *testing.T) {
	c, _ := newTestServer(t)
	ctx := context.Background()
	add := func(name, addr string) error {
		return c.Do(ctx, http.MethodPost, "/standin/etcd/members", Member{Name: name, PeerURL: "https://" + addr + ":2380"}, nil)
	}
	list := func() []Member {
		var ms []Member
		if err := c.Do(ctx, http.MethodGet, "/standin/etcd/members", nil, &ms); err != nil {
			t.Fatal(err)
		}
		return ms
	}
	if err := add("m1", "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if err := add("m2", "10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	err := add("m2", "10.0.0.2")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusConflict || !strings.Contains(se.Body, "Peer URLs already exists") {
		t.Fatalf("second member with m2's peer URL: %v, want 409 Peer URLs already exists", err)
	}
	ms := list()
	if len(ms) != 2 || ms[1].Name != "m2" || ms[1].ID == "" {
		t.Fatalf("members %+v", ms)
	}
	if err := c.Do(ctx, http.MethodDelete, "/standin/etcd/members/"+ms[1].ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, http.MethodDelete, "/standin/etcd/members/"+ms[1].ID, nil, nil); err == nil {
		t.Error("removing a removed member succeeded")
	}
	if err := add("m2", "10.0.0.2"); err != nil {
		t.Fatalf("re-adding m2 after its removal: %v", err)
	}
	if ms := list(); len(ms) != 2 {
		t.Errorf("members after remove and re-add: %+v", ms)
	}
	// A removal seen by a peer that still has the member wins (newest update).
	old := NewState()
	old.Members["a"] = &Member{ID: "a", Name: "m3", Updated: time.Unix(100, 0)}
	newer := NewState()
	newer.Members["a"] = &Member{ID: "a", Name: "m3", Updated: time.Unix(200, 0), Deleted: true}
	if !old.Merge(newer) || len(old.LiveMembers()) != 0 {
		t.Errorf("merge did not apply the newer removal: %+v", old.Members["a"])
	}
}
