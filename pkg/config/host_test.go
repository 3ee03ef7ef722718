package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `vipd check` run by hand as root tells whether user vipd (the unit's user) can read a secret:
// a root-owned 0600 key reads fine for root and fails for the daemon at start.
func TestServiceUserCanRead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	p := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(p, []byte("k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	svc := &account{uid: 54321, gid: 54321, groups: map[uint32]bool{54321: true}, name: "vipd"}
	if err := svc.canRead(p); err == nil || !strings.Contains(err.Error(), "cannot be read by user vipd") || !strings.Contains(err.Error(), "chown root:vipd") {
		t.Fatalf("root:root 0600 must be unreadable for vipd: %v", err)
	}
	if err := os.Chown(p, 0, 54321); err != nil {
		t.Fatal(err)
	}
	if err := svc.canRead(p); err == nil {
		t.Fatal("root:vipd 0600 is not readable by the group")
	}
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := svc.canRead(p); err != nil {
		t.Fatalf("root:vipd 0640: %v", err)
	}
	if err := os.Chown(p, 54321, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := svc.canRead(p); err != nil {
		t.Fatalf("vipd-owned 0600: %v", err)
	}
	var none *account
	if err := none.canRead(p); err != nil {
		t.Fatalf("no service user: the process's own read decides: %v", err)
	}
}
