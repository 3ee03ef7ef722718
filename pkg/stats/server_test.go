package stats

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func newTestServer(t *testing.T, cfg Config, snap func() Snapshot) *Server {
	t.Helper()
	srv, err := New(cfg, SourceFunc(snap), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return srv
}

func get(t *testing.T, h http.Handler, path string, mod ...func(*http.Request)) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for _, m := range mod {
		m(req)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestJSONFieldNames(t *testing.T) {
	srv := newTestServer(t, Config{}, fakeSnapshot)
	for _, path := range []string{"/stats.json", "/stats?format=json"} {
		rec := get(t, srv.Handler(), path)
		if rec.Code != 200 {
			t.Fatalf("%s: status %d", path, rec.Code)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", path, ct)
		}
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("%s: decode: %v", path, err)
		}
		vrrp := m["vrrp"].(map[string]any)
		if vrrp["state"] != "MASTER" || vrrp["holds_vip"] != true || vrrp["effective_priority"] != 100.0 ||
			vrrp["advert_interval_seconds"] != 1.0 || vrrp["vrid"] != 51.0 {
			t.Errorf("%s: vrrp = %v", path, vrrp)
		}
		if d := vrrp["drops"].(map[string]any); d["ttl"] != 3.0 {
			t.Errorf("%s: vrrp.drops = %v", path, d)
		}
		if tr := vrrp["transitions"].([]any); len(tr) != 2 || tr[1].(map[string]any)["to"] != "MASTER" {
			t.Errorf("%s: vrrp.transitions = %v", path, tr)
		}
		bes := m["backends"].([]any)
		if len(bes) != 3 {
			t.Fatalf("%s: %d backends", path, len(bes))
		}
		b1 := bes[1].(map[string]any)
		if b1["addr"] != "192.168.10.139:6443" || b1["up"] != false || b1["conn_errors"] != 4.0 ||
			b1["last_latency_seconds"] != 0.0008 || b1["check_failures"] != 57.0 {
			t.Errorf("%s: backends[1] = %v", path, b1)
		}
		if _, err := time.Parse(time.RFC3339, b1["since"].(string)); err != nil {
			t.Errorf("%s: backends[1].since: %v", path, err)
		}
		fe := m["frontend"].(map[string]any)
		if fe["current_conns"] != 42.0 || fe["listening"] != true || fe["max_conns"] != 20000.0 {
			t.Errorf("%s: frontend = %v", path, fe)
		}
		cl := m["cluster"].(map[string]any)
		alarms := cl["alarms"].([]any)
		if len(alarms) != 2 || alarms[0].(map[string]any)["kind"] != "split_brain" {
			t.Errorf("%s: cluster.alarms = %v", path, alarms)
		}
		mem := cl["members"].([]any)[1].(map[string]any)
		if mem["name"] != "lb2" || mem["vrrp_state"] != "MASTER" || mem["backends"].(map[string]any)["192.168.10.139:6443"] != true {
			t.Errorf("%s: cluster.members[1] = %v", path, mem)
		}
	}
}

func TestJSONRoundTripAndEmpty(t *testing.T) {
	srv := newTestServer(t, Config{}, fakeSnapshot)
	var got Snapshot
	if err := json.Unmarshal(get(t, srv.Handler(), "/stats.json").Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := fakeSnapshot()
	if got.Backends[1].LastLatency != want.Backends[1].LastLatency || got.VRRP.AdvertInterval != want.VRRP.AdvertInterval ||
		!got.Backends[0].Since.Equal(want.Backends[0].Since) || got.Cluster.Alarms[1].Kind != want.Cluster.Alarms[1].Kind {
		t.Errorf("round trip differs: %+v", got)
	}

	// A node without proxy or cluster: no frontend/cluster keys, [] not null.
	empty := newTestServer(t, Config{}, func() Snapshot { return Snapshot{Node: "lb9"} })
	body := get(t, empty.Handler(), "/stats.json").Body.String()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["frontend"]; ok {
		t.Errorf("frontend present without proxy: %s", body)
	}
	if _, ok := m["cluster"]; ok {
		t.Errorf("cluster present without gossip: %s", body)
	}
	if b, ok := m["backends"].([]any); !ok || len(b) != 0 {
		t.Errorf("backends = %v, want []", m["backends"])
	}
	if strings.Contains(body, "null") || strings.Contains(body, "0001-01-01") {
		t.Errorf("null or zero time in JSON: %s", body)
	}
	if m["time"] == nil {
		t.Errorf("time not filled")
	}

	// The same holds for anyone who marshals a Snapshot (the control
	// socket), and the caller's value is not changed.
	in := Snapshot{Cluster: &ClusterView{Enabled: true}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "null") || !strings.Contains(string(b), `"members":[]`) {
		t.Errorf("json.Marshal(Snapshot) = %s", b)
	}
	if in.Cluster.Members != nil || in.Backends != nil {
		t.Errorf("MarshalJSON changed its argument")
	}
}

func TestDurationJSON(t *testing.T) {
	var d Duration
	for in, want := range map[string]time.Duration{`1.5`: 1500 * time.Millisecond, `"250ms"`: 250 * time.Millisecond, `0`: 0} {
		if err := json.Unmarshal([]byte(in), &d); err != nil || d.Std() != want {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v", in, d, err, want)
		}
	}
	for _, bad := range []string{`"soon"`, `true`, `1e300`} {
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("Unmarshal(%s) accepted", bad)
		}
	}
}

func TestHTMLShowsStateAndEscapes(t *testing.T) {
	srv := newTestServer(t, Config{Refresh: 7 * time.Second}, fakeSnapshot)
	rec := get(t, srv.Handler(), "/stats")
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	body := rec.Body.String()
	for _, want := range []string{
		`id="vrrp-state">MASTER<`,
		`<h1 id="node">lb1</h1>`,
		`192.168.10.100/24`,
		`this host (lb1)`,
		`data-backend="192.168.10.138:6443" data-status="UP"`,
		`data-backend="192.168.10.139:6443" data-status="DOWN"`,
		`for 3m12s`,          // since when
		`2.3 ms`,             // latency
		`connection refused`, // last result
		`5.00 MiB`,           // frontend bytes in
		`3.00 GiB`,           // frontend bytes out
		`2 / 3`,              // backends up
		`split brain`,        // alarm banner
		`IP protocol 112`,
		`id="cluster"`,
		`data-member="lb2"`,
		`content="7"`, // meta refresh
		`2h03m`,       // uptime
		`master down timer expired`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>alert") {
		t.Errorf("hostile backend name not escaped")
	}
	if !strings.Contains(body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;:6443") {
		t.Errorf("escaped hostile backend name missing")
	}
	if strings.Count(body, "<script>") != 1 {
		t.Errorf("want exactly the page's own script, got %d", strings.Count(body, "<script>"))
	}
	if strings.Contains(body, "ZgotmplZ") {
		t.Errorf("template produced ZgotmplZ (unsafe value filtered)")
	}
}

func TestHTMLBackupHolderAndNoCluster(t *testing.T) {
	snap := fakeSnapshot()
	snap.VRRP.State = StateBackup
	snap.VRRP.HoldsVIP = false
	snap.VRRP.MasterAddr = "192.168.10.143"
	snap.VRRP.EffectivePriority = 50
	snap.VRRP.Faults = []string{"0/3 backends UP (min 1)"}
	withCluster := newTestServer(t, Config{}, func() Snapshot { return snap })
	body := get(t, withCluster.Handler(), "/stats").Body.String()
	for _, want := range []string{`id="vrrp-state">BACKUP<`, `lb2 (192.168.10.143)`, `50 (configured 100)`, `0/3 backends UP`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	snap.Cluster = nil
	snap.Frontend = nil
	bare := newTestServer(t, Config{}, func() Snapshot { return snap })
	body = get(t, bare.Handler(), "/stats").Body.String()
	if strings.Contains(body, `id="cluster"`) || strings.Contains(body, `id="frontend"`) || strings.Contains(body, `id="alarms"`) {
		t.Errorf("cluster/frontend/alarms shown without data")
	}
	if !strings.Contains(body, `>192.168.10.143<`) {
		t.Errorf("master address not shown as holder")
	}
}

func TestBasicAuth(t *testing.T) {
	srv := newTestServer(t, Config{BasicAuth: &BasicAuth{Username: "admin", Password: "s3cret"}}, fakeSnapshot)
	h := srv.Handler()
	for _, path := range []string{"/stats", "/stats.json", "/stats?format=json"} {
		if rec := get(t, h, path); rec.Code != 401 || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s without auth: %d %q", path, rec.Code, rec.Header().Get("WWW-Authenticate"))
		}
		if rec := get(t, h, path, func(r *http.Request) { r.SetBasicAuth("admin", "wrong") }); rec.Code != 401 {
			t.Errorf("%s wrong password: %d", path, rec.Code)
		}
		if rec := get(t, h, path, func(r *http.Request) { r.SetBasicAuth("root", "s3cret") }); rec.Code != 401 {
			t.Errorf("%s wrong user: %d", path, rec.Code)
		}
		if rec := get(t, h, path, func(r *http.Request) { r.SetBasicAuth("admin", "s3cret") }); rec.Code != 200 {
			t.Errorf("%s right credentials: %d", path, rec.Code)
		}
	}
	// /metrics and /healthz stay open for Prometheus and probes.
	for _, path := range []string{"/metrics", "/healthz"} {
		if rec := get(t, h, path); rec.Code != 200 {
			t.Errorf("%s with auth configured: %d", path, rec.Code)
		}
	}
	if _, err := New(Config{BasicAuth: &BasicAuth{Username: "admin"}}, SourceFunc(fakeSnapshot), nil); err == nil ||
		!strings.Contains(err.Error(), "password") {
		t.Errorf("empty password accepted: %v", err)
	}
}

func TestHealthz(t *testing.T) {
	var healthErr error
	srv := newTestServer(t, Config{Healthz: func() error { return healthErr }}, fakeSnapshot)
	rec := get(t, srv.Handler(), "/healthz")
	if rec.Code != 200 || rec.Body.String() != "ok\n" {
		t.Errorf("healthy: %d %q", rec.Code, rec.Body.String())
	}
	healthErr = errors.New("vrrp loop stalled for 12s")
	rec = get(t, srv.Handler(), "/healthz")
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "vrrp loop stalled for 12s") {
		t.Errorf("unhealthy: %d %q", rec.Code, rec.Body.String())
	}
}

func TestRoutesAndMethods(t *testing.T) {
	srv := newTestServer(t, Config{}, fakeSnapshot)
	h := srv.Handler()
	if rec := get(t, h, "/"); rec.Code != http.StatusFound || rec.Header().Get("Location") != "/stats" {
		t.Errorf("/: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if rec := get(t, h, "/nope"); rec.Code != 404 {
		t.Errorf("/nope: %d", rec.Code)
	}
	req := httptest.NewRequest(http.MethodPost, "/stats", strings.NewReader("x"))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 405 {
		t.Errorf("POST /stats: %d", rec.Code)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Listen: "8404"}, "stats.listen"},
		{Config{Refresh: 10 * time.Millisecond}, "stats.refresh"},
		{Config{BasicAuth: &BasicAuth{Password: "x"}}, "username"},
	} {
		if _, err := New(c.cfg, SourceFunc(fakeSnapshot), nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want error naming %s", c.cfg, err, c.want)
		}
	}
	if _, err := New(Config{}, nil, nil); err == nil {
		t.Errorf("nil source accepted")
	}
}

func TestRunServesAndShutsDown(t *testing.T) {
	baseline := runtime.NumGoroutine()
	srv := newTestServer(t, Config{Listen: "127.0.0.1:0"}, fakeSnapshot)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() { errc <- srv.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	})
	select {
	case <-srv.Ready():
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready after 10s")
	}
	addr := srv.Addr().String()
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok\n" {
		t.Errorf("healthz over TCP: %d %q", resp.StatusCode, b)
	}

	// A second server on the same address fails with a clear error.
	dup := newTestServer(t, Config{Listen: addr}, fakeSnapshot)
	err = dup.Run(context.Background())
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) || err.Error() != "stats.listen "+addr+": address already in use" {
		t.Errorf("duplicate bind error = %v", err)
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("still accepting on %s after shutdown", addr)
	}
	// The server's goroutines are gone.
	client.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > baseline {
		t.Errorf("%d goroutines after shutdown, %d before Run", n, baseline)
	}
}

func TestPageCSPMatchesInlineCode(t *testing.T) {
	srv := newTestServer(t, Config{}, fakeSnapshot)
	rec := get(t, srv.Handler(), "/stats")
	csp := rec.Header().Get("Content-Security-Policy")
	body := rec.Body.String()
	if strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP allows any inline code: %s", csp)
	}
	for _, tag := range [][2]string{{"<style>", "</style>"}, {"<script>", "</script>"}} {
		i, j := strings.Index(body, tag[0]), strings.Index(body, tag[1])
		if i < 0 || j < i {
			t.Fatalf("page lacks %s", tag[0])
		}
		sum := sha256.Sum256([]byte(body[i+len(tag[0]) : j]))
		want := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		if !strings.Contains(csp, want) {
			t.Errorf("served %s hashes to %s, not in CSP %q", tag[0], want, csp)
		}
	}
}
