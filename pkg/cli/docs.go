package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// ManSection is a section added to the command's main man page, before SEE ALSO.
type ManSection struct {
	Title string // "EXIT STATUS"
	Text  string // plain text; a blank line starts a new paragraph
}

// AddDocs gives root a hidden `gendocs DIR` command that writes its man pages (one per
// command, in section section, from the cobra tree: flags, descriptions, SEE ALSO) with
// extra sections on the root's page. The Debian packages (hack/package) run it: the pages
// cannot drift from the flags. The date is $SOURCE_DATE_EPOCH's, for reproducible pages.
func AddDocs(root *cobra.Command, section string, extra ...ManSection) {
	root.AddCommand(&cobra.Command{
		Use:    "gendocs DIR",
		Short:  "Write the man pages into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return genMan(root, section, args[0], extra)
		},
	})
}

func genMan(root *cobra.Command, section, dir string, extra []ManSection) error {
	date := time.Now()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		var sec int64
		if _, err := fmt.Sscan(s, &sec); err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
		}
		date = time.Unix(sec, 0).UTC()
	}
	root.DisableAutoGenTag = true
	hdr := &doc.GenManHeader{Section: section, Date: &date, Source: root.Name() + " " + Version().Version,
		Manual: root.Name() + " manual"}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	if err := doc.GenManTree(root, hdr, dir); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	page := filepath.Join(dir, root.Name()+"."+section)
	b, err := os.ReadFile(page)
	if err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	var add strings.Builder
	for _, s := range extra {
		fmt.Fprintf(&add, ".SH %s\n", roffEscape(s.Title))
		for _, para := range strings.Split(strings.TrimSpace(s.Text), "\n\n") {
			fmt.Fprintf(&add, ".PP\n%s\n", roffEscape(strings.TrimSpace(para)))
		}
	}
	out := string(b)
	if i := strings.Index(out, ".SH SEE ALSO"); i >= 0 {
		out = out[:i] + add.String() + "\n" + out[i:]
	} else {
		out += add.String()
	}
	return os.WriteFile(page, []byte(out), 0o644)
}

// roffEscape keeps text literal in roff: backslashes doubled, no line starting a request.
func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			l = `\&` + l
		}
		lines[i] = l
	}
	return strings.Join(lines, "\n")
}
