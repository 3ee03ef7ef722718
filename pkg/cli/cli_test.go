package cli

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestResolveVersion(t *testing.T) {
	stamped := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}, true
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	for _, c := range []struct {
		name, v, c string
		read       func() (*debug.BuildInfo, bool)
		want       string
	}{
		{"ldflags win", "1.2.0", "abcdef", stamped, "1.2.0 (commit abcdef, go1.26.8,"},
		{"build info fallback", "", "", stamped, "1.4.0 (commit 0123456789ab-dirty, go1.26.8,"},
		{"nothing recorded", "", "", none, "dev (commit unknown, go"},
	} {
		if got := resolve(c.v, c.c, c.read).String(); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want prefix %q", c.name, got, c.want)
		}
	}
}

func tree() *cobra.Command {
	root := &cobra.Command{Use: "tool", SilenceErrors: true, SilenceUsage: true}
	root.AddCommand(&cobra.Command{Use: "sub", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error { return nil }})
	AddVersion(root, Build{Version: "1.2.0", Commit: "abc", GoVersion: "go1.x", Platform: "linux/arm64"})
	StrictUsage(root)
	return root
}

func TestUsageErrorsAndVersion(t *testing.T) {
	for _, c := range []struct {
		args  []string
		usage bool
		out   string
	}{
		{[]string{"bogus"}, true, ""},
		{[]string{"--bogus"}, true, ""},
		{[]string{"sub", "extra"}, true, ""},
		{[]string{"sub", "--nope"}, true, ""},
		{[]string{"sub"}, false, ""},
		{[]string{"--version"}, false, "tool 1.2.0 (commit abc, go1.x, linux/arm64)\n"},
		{[]string{"version"}, false, "tool 1.2.0 (commit abc, go1.x, linux/arm64)\n"},
	} {
		root := tree()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(c.args)
		err := root.Execute()
		if IsUsage(err) != c.usage || (!c.usage && err != nil) {
			t.Errorf("%v: err %v, want usage error %v", c.args, err, c.usage)
		}
		if c.out != "" && out.String() != c.out {
			t.Errorf("%v: printed %q, want %q", c.args, out.String(), c.out)
		}
	}
}
