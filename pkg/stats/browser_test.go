package stats

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// findChromium returns the browser's path, or skips (fails when CI=true:
// .ci/run installs Debian's chromium package).
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("VIPD_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found and CI=true: install Debian's chromium package")
	}
	t.Skip("chromium not installed")
	return ""
}

func artifactsDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("VIPD_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("artifacts dir: %v", err)
		}
		return d
	}
	return t.TempDir()
}

// runChromium runs headless Chromium with args and returns its stdout. Its
// whole process group is killed if it overruns.
func runChromium(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
		"--user-data-dir=" + t.TempDir(),
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	if cmd.Process != nil {
		// Helpers left behind by the browser, if any, are in its group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("chromium %v: timed out after 90s\nstderr:\n%s", args, tail(stderr.String()))
		}
		t.Fatalf("chromium %v: %v\nstderr:\n%s", args, err, tail(stderr.String()))
	}
	t.Logf("chromium %s took %v", args[0], time.Since(start).Round(time.Millisecond))
	return stdout.String()
}

func tail(s string) string {
	if len(s) > 3000 {
		return "..." + s[len(s)-3000:]
	}
	return s
}

func TestBrowserRendersStatsPage(t *testing.T) {
	bin := findChromium(t)
	srv := newTestServer(t, Config{}, fakeSnapshot)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	url := ts.URL + "/stats"

	dom := runChromium(t, bin, "--dump-dom", url)
	for _, want := range []string{
		`id="vrrp-state">MASTER<`,
		`data-backend="192.168.10.138:6443" data-status="UP"`,
		`data-backend="192.168.10.139:6443" data-status="DOWN"`,
		`this host (lb1)`,
		`data-member="lb2"`,
		`split brain`,
		// The hostile name is text, not an element.
		`&lt;script&gt;alert("x")&lt;/script&gt;:6443`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %q", want)
		}
	}
	// Each backend row shows its status pill.
	if n := strings.Count(dom, `<span class="pill up">UP</span>`); n != 2 {
		t.Errorf("%d UP pills, want 2", n)
	}
	if n := strings.Count(dom, `<span class="pill down">DOWN</span>`); n != 1 {
		t.Errorf("%d DOWN pills, want 1", n)
	}
	if strings.Count(dom, "<script>") != 1 {
		t.Errorf("the DOM has %d script elements, want 1 (the page's own)", strings.Count(dom, "<script>"))
	}

	dir := artifactsDir(t)
	for _, shot := range []struct{ name, size string }{
		{"stats-page-1280x900.png", "1280,900"},
		{"stats-page-narrow-390x844.png", "390,844"},
	} {
		path := filepath.Join(dir, shot.name)
		_ = os.Remove(path)
		runChromium(t, bin, "--screenshot="+path, "--window-size="+shot.size, url)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 10_000 {
			t.Errorf("screenshot %s: not a plausible PNG (%d bytes)", path, len(b))
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(b))
	}
}

// TestBrowserAutoRefresh checks that the page updates itself: the source
// turns MASTER into FAULT after the first request, and the DOM Chromium
// ends up with shows FAULT.
func TestBrowserAutoRefresh(t *testing.T) {
	bin := findChromium(t)
	var calls atomic.Int64
	srv := newTestServer(t, Config{Refresh: time.Second}, func() Snapshot {
		s := fakeSnapshot()
		if calls.Add(1) > 1 {
			s.VRRP.State = StateFault
			s.VRRP.HoldsVIP = false
			s.VRRP.Faults = []string{"link down on ens33 (refreshed)"}
		}
		return s
	})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)

	dom := runChromium(t, bin, "--virtual-time-budget=4000", "--dump-dom", ts.URL+"/stats")
	if !strings.Contains(dom, `id="vrrp-state">FAULT<`) || !strings.Contains(dom, "link down on ens33 (refreshed)") {
		t.Errorf("page did not refresh itself (source called %d times); state badge: %q",
			calls.Load(), snippet(dom, `id="vrrp-state"`))
	}
	if calls.Load() < 2 {
		t.Errorf("source called %d times, want a refresh", calls.Load())
	}
}

func snippet(s, at string) string {
	i := strings.Index(s, at)
	if i < 0 {
		return ""
	}
	return s[i:min(len(s), i+80)]
}

// TestBrowserShowsConnectionLost: when a refresh fails, the page keeps the
// last data and shows the "connection lost" bar.
func TestBrowserShowsConnectionLost(t *testing.T) {
	bin := findChromium(t)
	srv := newTestServer(t, Config{Refresh: time.Second}, fakeSnapshot)
	var n atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stats" && n.Add(1) > 1 {
			http.Error(w, "gone", http.StatusServiceUnavailable)
			return
		}
		srv.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	dom := runChromium(t, bin, "--virtual-time-budget=4000", "--dump-dom", ts.URL+"/stats")
	if !strings.Contains(dom, `<div id="stale">`) {
		t.Errorf("no visible connection-lost bar after a failed refresh: %q", snippet(dom, `id="stale"`))
	}
	if !strings.Contains(dom, `id="vrrp-state">MASTER<`) {
		t.Errorf("last data not kept")
	}
}
