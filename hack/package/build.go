package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"

	"github.com/vipd-project/vipd/deploy"
	"github.com/vipd-project/vipd/pkg/vipdpkg"
)

type options struct {
	version, commit, out, root string
	arches                     []string
	cmds                       []string // "vipd", "bootstrap": the commands whose packages to build
}

// build writes the packages and returns their paths.
func build(ctx context.Context, o options) ([]string, error) {
	tmp, err := os.MkdirTemp("", "vipd-package-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if o.commit == "" {
		o.commit = "unknown"
	}
	date := time.Now().UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
		}
		date = time.Unix(sec, 0).UTC()
	}
	env := append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(date.Unix(), 10))

	// Binaries for every architecture, and for this machine (to run gendocs and completion).
	arches := append([]string(nil), o.arches...)
	if !contains(arches, runtime.GOARCH) {
		arches = append(arches, runtime.GOARCH)
	}
	ldflags := fmt.Sprintf("-s -w -X github.com/vipd-project/vipd/pkg/cli.version=%s -X github.com/vipd-project/vipd/pkg/cli.commit=%s", o.version, o.commit)
	for _, arch := range arches {
		for _, cmd := range o.cmds {
			// PIE (as Debian's hardening flags): address space randomisation; no library is
			// needed, only the loader of libc6.
			c := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildmode=pie", "-ldflags", ldflags, "-o", filepath.Join(tmp, arch, cmd), "./cmd/"+cmd)
			c.Dir = o.root
			c.Env = append(env, "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
			if out, err := c.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("go build cmd/%s for %s: %w\n%s", cmd, arch, err, out)
			}
		}
	}

	// Man pages and completions, from the binaries' own cobra trees.
	host := filepath.Join(tmp, runtime.GOARCH)
	gen := map[string][]byte{}
	for _, cmd := range o.cmds {
		mandir := filepath.Join(tmp, "man", cmd)
		if _, err := run(ctx, env, filepath.Join(host, cmd), "gendocs", mandir); err != nil {
			return nil, err
		}
		for _, sh := range []string{"bash", "zsh"} {
			b, err := run(ctx, env, filepath.Join(host, cmd), "completion", sh)
			if err != nil {
				return nil, err
			}
			gen[cmd+"."+sh] = b
		}
	}
	yaml5, err := yamlManPage(deploy.File("vipd.yaml"), o.version, date)
	if err != nil {
		return nil, fmt.Errorf("vipd.yaml(5): %w", err)
	}
	man := map[string]map[string][]byte{} // command -> destination -> gzipped page
	for _, cmd := range o.cmds {
		man[cmd] = map[string][]byte{}
		pages, _ := filepath.Glob(filepath.Join(tmp, "man", cmd, "*.[158]"))
		for _, p := range pages {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			if man[cmd][manPath(filepath.Base(p))], err = vipdpkg.Gzip(b); err != nil {
				return nil, err
			}
		}
	}
	if man["vipd"] != nil {
		if man["vipd"][manPath("vipd.yaml.5")], err = vipdpkg.Gzip(yaml5); err != nil {
			return nil, err
		}
	}
	cl, err := changelog(ctx, o, date)
	if err != nil {
		return nil, err
	}

	var outs []string
	for _, arch := range o.arches {
		bin := filepath.Join(tmp, arch)
		if contains(o.cmds, "vipd") {
			exe, err := os.ReadFile(filepath.Join(bin, "vipd"))
			if err != nil {
				return nil, err
			}
			extra := map[string][]byte{
				"/usr/share/bash-completion/completions/vipd": gen["vipd.bash"],
				"/usr/share/zsh/vendor-completions/_vipd":     gen["vipd.zsh"],
			}
			for dst, b := range man["vipd"] {
				extra[dst] = b
			}
			p, err := vipdpkg.Build(vipdpkg.Spec{Version: o.version, Arch: arch, Binary: exe, Changelog: cl, Date: date, Extra: extra}, o.out)
			if err != nil {
				return nil, err
			}
			outs = append(outs, p)
		}
		if contains(o.cmds, "bootstrap") {
			p, err := buildBootstrap(o, arch, filepath.Join(bin, "bootstrap"), cl, gen, man["bootstrap"], date)
			if err != nil {
				return nil, err
			}
			outs = append(outs, p)
		}
	}
	return outs, nil
}

// manPath is where a man page (NAME.SECTION) goes, gzipped.
func manPath(page string) string {
	return "/usr/share/man/man" + page[len(page)-1:] + "/" + page + ".gz"
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func run(ctx context.Context, env []string, argv ...string) ([]byte, error) {
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Env = env
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, stderr.String())
	}
	return out, nil
}

// changelog is the Debian changelog (native package: /usr/share/doc/PKG/changelog.gz) with
// one entry for this version listing the commits since the last tag (the last 20 without one).
func changelog(ctx context.Context, o options, date time.Time) ([]byte, error) {
	rng := []string{"-n", "20"}
	if tag, err := exec.CommandContext(ctx, "git", "-C", o.root, "describe", "--tags", "--abbrev=0", "--match", "v[0-9]*").Output(); err == nil {
		rng = []string{strings.TrimSpace(string(tag)) + "..HEAD"}
	}
	var notes []string
	if out, err := exec.CommandContext(ctx, "git", append([]string{"-C", o.root, "log", "--no-merges", "--format=%s"}, rng...)...).Output(); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" {
				notes = append(notes, l)
			}
		}
	}
	if len(notes) == 0 {
		notes = []string{"Build of commit " + o.commit + "."}
	}
	return vipdpkg.Changelog(o.version, notes, date)
}

// buildBootstrap writes the vipd-bootstrap package (an operator's workstation tool).
func buildBootstrap(o options, arch, exe string, changelog []byte, gen map[string][]byte, man map[string][]byte, date time.Time) (string, error) {
	stage, err := os.MkdirTemp("", "vipd-bootstrap-package-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	content := map[string][]byte{
		"/usr/share/bash-completion/completions/bootstrap": gen["bootstrap.bash"],
		"/usr/share/zsh/vendor-completions/_bootstrap":     gen["bootstrap.zsh"],
		"/usr/share/doc/vipd-bootstrap/copyright":          deploy.File("debian/copyright"),
		"/usr/share/doc/vipd-bootstrap/changelog.gz":       changelog,
	}
	for dst, b := range man {
		content[dst] = b
	}
	cs := files.Contents{{Source: exe, Destination: "/usr/bin/bootstrap", FileInfo: &files.ContentFileInfo{Mode: 0o755}}}
	for dst, b := range content {
		src := filepath.Join(stage, strings.ReplaceAll(strings.TrimPrefix(dst, "/"), "/", "_"))
		if err := os.WriteFile(src, b, 0o644); err != nil {
			return "", err
		}
		cs = append(cs, &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: 0o644}})
	}
	return vipdpkg.WriteDeb(&nfpm.Info{
		Name: "vipd-bootstrap", Arch: arch, Platform: "linux", Version: o.version, VersionSchema: "none",
		Section: "admin", Priority: "optional", Maintainer: vipdpkg.Maintainer, Homepage: vipdpkg.Homepage, License: "Apache-2.0",
		MTime: date,
		Description: "build a kubeadm HA Kubernetes cluster with vipd over SSH\n" +
			"bootstrap reads one topology file and, over SSH, installs vipd on the\n" +
			"load balancers, containerd and pinned Kubernetes packages on the nodes,\n" +
			"and runs kubeadm on the masters and workers. Every phase probes the\n" +
			"hosts first, so a rerun continues where a failure stopped.",
		Overridables: nfpm.Overridables{Contents: cs},
	}, o.out)
}
