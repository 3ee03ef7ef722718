package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadRefusesWorldReadable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(p, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Read("cluster.key_file", p)
	if err == nil || !strings.Contains(err.Error(), "chmod 640") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("want refusal naming chmod 640 without the secret, got %v", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Read("cluster.key_file", p); err != nil || s != "s3cret" {
		t.Fatalf("got %q %v", s, err)
	}
	if err := os.Chmod(p, 0o660); err != nil {
		t.Fatal(err)
	}
	if err := Check("x", p); err == nil {
		t.Fatal("a group-writable secret must be refused")
	}
	if err := Check("x", t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a directory must be refused: %v", err)
	}
	if err := Check("x", filepath.Join(t.TempDir(), "none")); err == nil || !strings.HasPrefix(err.Error(), "x: ") {
		t.Fatalf("a missing file must be refused, naming the field: %v", err)
	}
}
