package health

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The TLS client key and the bearer token are secrets: a file every user can read is refused
// with the same rule (and message) as vipd's other secret files, and the content never shows.
func TestSecretFilesRefusedWhenWorldReadable(t *testing.T) {
	dir := t.TempDir()
	const secret = "tok-never-shown"
	tok := filepath.Join(dir, "token")
	key := filepath.Join(dir, "client.key")
	crt := filepath.Join(dir, "client.crt")
	for _, p := range []string{tok, key, crt} {
		if err := os.WriteFile(p, []byte(secret+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := Config{Type: TypeHTTPS, Interval: 2e9, FastInterval: 5e8, Timeout: 1e9, Rise: 2, Fall: 3,
		Path: "/readyz", ExpectStatus: 200, InsecureSkipVerify: true}

	c := base
	c.BearerTokenFile = tok
	_, err := NewChecker(c)
	if err == nil || !strings.Contains(err.Error(), "health.bearer_token_file") || !strings.Contains(err.Error(), "chmod 640") || strings.Contains(err.Error(), secret) {
		t.Fatalf("world-readable bearer token: %v", err)
	}
	c = base
	c.CertFile, c.KeyFile = crt, key
	_, err = NewChecker(c)
	if err == nil || !strings.Contains(err.Error(), "health.tls.key_file") || !strings.Contains(err.Error(), "chmod 640") {
		t.Fatalf("world-readable TLS key: %v", err)
	}
}
