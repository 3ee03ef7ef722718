package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestGenDocs: the hidden gendocs command writes one page per command, the extra sections on
// the root's page before SEE ALSO, text kept literal (a leading dot is not a roff request),
// and the date from SOURCE_DATE_EPOCH.
func TestGenDocs(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1780000000") // May 2026
	root := tree()
	AddDocs(root, "8", ManSection{Title: "EXIT STATUS", Text: "0: ok.\n\n.2: usage \\ error."})
	dir := t.TempDir()
	root.SetArgs([]string{"gendocs", dir})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"tool.8", "tool-sub.8", "tool-version.8"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("page %s: %v", p, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "tool.8"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	exit, see := strings.Index(page, ".SH EXIT STATUS\n.PP\n0: ok.\n.PP\n\\&.2: usage \\e error.\n"), strings.Index(page, ".SH SEE ALSO")
	if exit < 0 || see < 0 || exit > see {
		t.Errorf("EXIT STATUS missing or after SEE ALSO:\n%s", page)
	}
	if !strings.Contains(page, `"May 2026"`) || strings.Contains(page, "gendocs") {
		t.Errorf("date not from SOURCE_DATE_EPOCH, or the hidden command listed:\n%s", page)
	}
	var hidden *cobra.Command
	for _, c := range root.Commands() {
		if c.Name() == "gendocs" {
			hidden = c
		}
	}
	if hidden == nil || !hidden.Hidden {
		t.Errorf("gendocs is not a hidden command")
	}
}
