package main

import (
	"strings"
	"testing"
)

// BACKEND is the backend as written in vipd.yaml, or its host part when unique; anything else
// is an error naming it and listing the backends.
func TestResolveBackend(t *testing.T) {
	bs := []string{"10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.2:7443", "[fd00::1]:6443"}
	for _, c := range []struct{ in, want, err string }{
		{"10.0.0.1:6443", "10.0.0.1:6443", ""},
		{"10.0.0.1", "10.0.0.1:6443", ""},
		{"fd00::1", "[fd00::1]:6443", ""},
		{"[fd00::1]", "[fd00::1]:6443", ""},
		{"10.0.0.2:7443", "10.0.0.2:7443", ""},
		{"10.0.0.2", "", "matches 2 backends"},
		{"10.0.0.9", "", `backend "10.0.0.9" is not configured`},
		{"", "", "no backend given"},
	} {
		got, err := resolveBackend(c.in, bs)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %q, %v; want an error containing %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// Only uid 0 and group vipd may change state.
func TestPeerAuthorized(t *testing.T) {
	if err := (peer{UID: 0}).authorized(); err != nil {
		t.Fatalf("root refused: %v", err)
	}
	if err := (peer{UID: 65534, GID: 65534, User: "nobody"}).authorized(); err == nil {
		t.Fatal("nobody allowed")
	}
}
