// Command package builds the Debian packages of vipd and bootstrap with nfpm
// (github.com/goreleaser/nfpm) as a library: `make package` runs it.
//
//	go run ./hack/package -version 1.2.0 -commit 0123abcd [-arch amd64,arm64] [-out bin]
//
// It cross-builds the binaries, has them write their man pages (from the cobra tree:
// `vipd gendocs`) and shell completions, renders vipd.yaml(5) from the config schema and the
// commented example, and writes vipd_VERSION_ARCH.deb and vipd-bootstrap_VERSION_ARCH.deb.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
)

func main() {
	var o options
	flag.StringVar(&o.version, "version", "", "package and binary version (hack/version.sh)")
	flag.StringVar(&o.commit, "commit", "", "commit id stamped into the binaries (hack/version.sh commit)")
	arch := flag.String("arch", "amd64,arm64", "Debian architectures to build, comma-separated")
	flag.StringVar(&o.out, "out", "bin", "directory for the .deb files")
	flag.StringVar(&o.root, "root", ".", "repository root (deploy/, cmd/)")
	only := flag.String("packages", "vipd,vipd-bootstrap", "packages to build, comma-separated")
	flag.Parse()
	if o.version == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: package -version VERSION [-commit C] [-arch amd64,arm64] [-out DIR]")
		os.Exit(2)
	}
	o.arches = strings.Split(*arch, ",")
	for _, p := range strings.Split(*only, ",") {
		switch p {
		case "vipd":
			o.cmds = append(o.cmds, "vipd")
		case "vipd-bootstrap":
			o.cmds = append(o.cmds, "bootstrap")
		default:
			fmt.Fprintf(os.Stderr, "package: -packages: unknown package %q (vipd, vipd-bootstrap)\n", p)
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	files, err := build(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "package:", err)
		os.Exit(1)
	}
	for _, f := range files {
		fmt.Println(f)
	}
}
