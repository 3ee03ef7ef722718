package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// control_socket pointing at a file that is not a socket (a typo naming the config, a
// directory) must leave that file alone: the old code removed whatever was there.
func TestControlSocketNeverDeletesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "vipd.yaml")
	if err := os.WriteFile(file, []byte("precious\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if ln, err := listenControl(file); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		if ln != nil {
			ln.Close()
		}
		t.Fatalf("listenControl on a regular file: %v, want a refusal", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "precious\n" {
		t.Fatalf("the file was touched: %q %v", b, err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := listenControl(sub); err == nil {
		t.Fatal("a directory must be refused")
	}
	if _, err := os.Stat(sub); err != nil {
		t.Fatalf("directory removed: %v", err)
	}

	// A stale socket (no one listening) is replaced; a live one is not taken over.
	sock := filepath.Join(dir, "vipd.sock")
	ln, err := listenControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := listenControl(sock); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a live socket must not be taken over: %v", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = listenControl(sock)
	if err != nil {
		t.Fatalf("a stale socket must be replaced: %v", err)
	}
	ln.Close()
}
