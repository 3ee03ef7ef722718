package main

import (
	"strings"
	"testing"
)

// vipd and bootstrap alike: no command prints the help on stdout and exits 0; vipd(8)'s EXIT
// STATUS says so.
func TestBareCommandPrintsHelp(t *testing.T) {
	code, out, errOut := runCLI(t)
	if code != 0 || !strings.Contains(out, "Usage:") || !strings.Contains(out, "Available Commands:") || errOut != "" {
		t.Errorf("bare vipd: exit %d, stdout %q, stderr %q; want 0 and the help", code, out, errOut)
	}
	if !strings.Contains(manExitStatus.Text, "vipd without a command") {
		t.Error("vipd(8) EXIT STATUS does not say what a bare vipd does")
	}
}
