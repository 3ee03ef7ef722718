package stats

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// A client guessing the stats password gets one log line per 10 s, not one per guess, and the
// line never holds what it sent.
func TestBasicAuthFailuresLoggedRateLimited(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	srv, err := New(Config{BasicAuth: &BasicAuth{Username: "admin", Password: "s3cret"}}, SourceFunc(fakeSnapshot), log)
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	for i := range 200 {
		guess := "guess" + strings.Repeat("x", i%7)
		if rec := get(t, h, "/stats.json", func(r *http.Request) { r.SetBasicAuth("admin", guess) }); rec.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: status %d", i, rec.Code)
		}
	}
	lines := strings.Count(buf.String(), "basic auth failed")
	if lines != 1 {
		t.Fatalf("200 failed guesses wrote %d log lines, want 1 (rate-limited):\n%s", lines, buf.String())
	}
	if strings.Contains(buf.String(), "guess") || strings.Contains(buf.String(), "s3cret") {
		t.Fatalf("the log holds a password:\n%s", buf.String())
	}
	// The next line, once the interval has passed, counts the failures in between.
	srv.authMu.Lock()
	srv.authLogged = srv.authLogged.Add(-authLogEvery)
	srv.authMu.Unlock()
	get(t, h, "/stats.json", func(r *http.Request) { r.SetBasicAuth("admin", "again") })
	if !strings.Contains(buf.String(), "failures=200") {
		t.Fatalf("second line must count the 199 suppressed failures and this one (200):\n%s", buf.String())
	}
}
