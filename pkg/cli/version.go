package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Set at build time by the Makefile (hack/version.sh):
//
//	-ldflags "-X github.com/vipd-project/vipd/pkg/cli.version=1.2.0 -X github.com/vipd-project/vipd/pkg/cli.commit=0123abcd"
//
// These two link-time strings are the only package-level variables: the linker can set
// nothing else. Left empty (go build, go install), Version falls back on the module
// version and VCS stamp that the Go toolchain records in the binary.
var (
	version string
	commit  string
)

// Build describes the running binary.
type Build struct {
	Version   string // "1.2.0", "1.2.0+3.g0123abcd" after a tag, "0.0.0~git20261204205700.0123abcd" before any
	Commit    string // abbreviated commit id, with "-dirty" if the tree had changes; "unknown" if not recorded
	GoVersion string // "go1.26.8"
	Platform  string // "linux/amd64"
}

// Version returns the build of the running binary.
func Version() Build {
	return resolve(version, commit, debug.ReadBuildInfo)
}

func resolve(ldVersion, ldCommit string, read func() (*debug.BuildInfo, bool)) Build {
	b := Build{Version: ldVersion, Commit: ldCommit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := read(); ok {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = strings.TrimPrefix(bi.Main.Version, "v")
		}
		if b.Commit == "" {
			var rev, modified string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value
				}
			}
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if rev != "" && modified == "true" {
				rev += "-dirty"
			}
			b.Commit = rev
		}
		if bi.GoVersion != "" {
			b.GoVersion = bi.GoVersion
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

// String is the version line: "1.2.0 (commit 0123abcd, go1.26.8, linux/amd64)".
func (b Build) String() string {
	return fmt.Sprintf("%s (commit %s, %s, %s)", b.Version, b.Commit, b.GoVersion, b.Platform)
}

// AddVersion makes root answer both `NAME --version` and `NAME version` with
// "NAME VERSION (commit C, GOVERSION, OS/ARCH)" on stdout.
func AddVersion(root *cobra.Command, b Build) {
	root.Version = b.String()
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", root.Name(), b)
			return err
		},
	})
}
