package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"

	"github.com/vipd-project/vipd/pkg/config"
)

type options struct {
	version, commit, out, root string
	arches                     []string
	cmds                       []string // "vipd", "bootstrap": the commands whose packages to build
}

const (
	maintainer = "vipd maintainers <vipd-maintainers@users.noreply.github.com>"
	homepage   = "https://github.com/vipd-project/vipd"
)

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
	example, err := os.ReadFile(filepath.Join(o.root, "deploy/vipd.yaml"))
	if err != nil {
		return nil, err
	}
	yaml5, err := yamlManPage(example, o.version, date)
	if err != nil {
		return nil, fmt.Errorf("vipd.yaml(5): %w", err)
	}
	if err := os.MkdirAll(filepath.Join(tmp, "man", "vipd"), 0o755); err != nil {
		return nil, err
	}
	if err := writeGz(filepath.Join(tmp, "man", "vipd", "vipd.yaml.5.gz"), yaml5); err != nil {
		return nil, err
	}
	for _, cmd := range o.cmds {
		pages, _ := filepath.Glob(filepath.Join(tmp, "man", cmd, "*.[158]"))
		for _, p := range pages {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			if err := writeGz(p+".gz", b); err != nil {
				return nil, err
			}
		}
	}

	// The unit, the conffile, the maintainer scripts, the changelog.
	unit, err := os.ReadFile(filepath.Join(o.root, "deploy/vipd.service"))
	if err != nil {
		return nil, err
	}
	put := func(name string, b []byte, mode os.FileMode) (string, error) {
		p := filepath.Join(tmp, "files", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		return p, os.WriteFile(p, b, mode)
	}
	var staged = map[string]string{}
	stage := func(name string, b []byte, mode os.FileMode) {
		if err != nil {
			return
		}
		staged[name], err = put(name, b, mode)
	}
	stage("vipd.service", packagedUnit(unit), 0o644)
	stage("vipd.yaml", append([]byte(config.ExampleMarker+"\n"), example...), 0o644)
	for name, b := range gen {
		stage(name, b, 0o644)
	}
	for _, s := range []string{"vipd.postinst", "vipd.prerm", "vipd.postrm"} {
		var b []byte
		if b, err = renderScript(filepath.Join(o.root, "deploy/debian", s)); err == nil {
			stage(s, b, 0o755)
		}
	}
	cl, cerr := changelog(ctx, o, date)
	if cerr != nil {
		return nil, cerr
	}
	stage("changelog.gz", cl, 0o644)
	if err != nil {
		return nil, err
	}
	copyright := filepath.Join(o.root, "deploy/debian/copyright")

	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	var outs []string
	for _, arch := range o.arches {
		bin := filepath.Join(tmp, arch)
		var infos []*nfpm.Info
		if contains(o.cmds, "vipd") {
			infos = append(infos, vipdInfo(o, arch, bin, staged, filepath.Join(tmp, "man", "vipd"), copyright))
		}
		if contains(o.cmds, "bootstrap") {
			infos = append(infos, bootstrapInfo(o, arch, bin, staged, filepath.Join(tmp, "man", "bootstrap"), copyright))
		}
		for _, info := range infos {
			info.MTime = date
			p, err := writeDeb(info, o.out)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", info.Name, arch, err)
			}
			outs = append(outs, p)
		}
	}
	return outs, nil
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

// writeGz compresses like gzip -9n (no name, no time: reproducible, as lintian wants).
func writeGz(path string, b []byte) error {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(b); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// packagedUnit is deploy/vipd.service with the package's binary path and without the
// manual-install comment.
func packagedUnit(unit []byte) []byte {
	var out []string
	for _, l := range strings.Split(string(unit), "\n") {
		if strings.HasPrefix(l, "# Install:") || strings.HasPrefix(l, "#          ") {
			continue
		}
		out = append(out, strings.ReplaceAll(l, "/usr/local/bin/vipd", "/usr/sbin/vipd"))
	}
	return []byte(strings.Join(out, "\n"))
}

func renderScript(path string) ([]byte, error) {
	t, err := template.ParseFiles(path)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, struct{ Marker string }{config.ExampleMarker}); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b.Bytes(), nil
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
	var b strings.Builder
	fmt.Fprintf(&b, "vipd (%s) unstable; urgency=medium\n\n", o.version)
	for _, n := range notes {
		b.WriteString(wrap("  * ", "    ", n, 80))
	}
	fmt.Fprintf(&b, "\n -- %s  %s\n", maintainer, date.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write([]byte(b.String())); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// wrap breaks text into lines of at most width characters, the first starting with first,
// the others with cont.
func wrap(first, cont, text string, width int) string {
	var b strings.Builder
	line := first
	for _, w := range strings.Fields(text) {
		if len(line)+len(w) > width && strings.TrimSpace(line) != strings.TrimSpace(first) && line != cont {
			b.WriteString(strings.TrimRight(line, " ") + "\n")
			line = cont
		}
		line += w + " "
	}
	b.WriteString(strings.TrimRight(line, " ") + "\n")
	return b.String()
}

func manContents(dir, section string) files.Contents {
	var cs files.Contents
	pages, _ := filepath.Glob(filepath.Join(dir, "*."+section+".gz"))
	for _, p := range pages {
		cs = append(cs, &files.Content{Source: p, Destination: "/usr/share/man/man" + section + "/" + filepath.Base(p),
			FileInfo: &files.ContentFileInfo{Mode: 0o644}})
	}
	return cs
}

func file(src, dst string, mode os.FileMode) *files.Content {
	return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode}}
}

func vipdInfo(o options, arch, bin string, staged map[string]string, man, copyright string) *nfpm.Info {
	cs := files.Contents{
		file(filepath.Join(bin, "vipd"), "/usr/sbin/vipd", 0o755),
		file(staged["vipd.service"], "/lib/systemd/system/vipd.service", 0o644),
		// 0644 in the package (the example holds no secret); postinst makes it root:vipd 0640.
		{Source: staged["vipd.yaml"], Destination: "/etc/vipd/vipd.yaml", Type: files.TypeConfigNoReplace,
			FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		file(staged["changelog.gz"], "/usr/share/doc/vipd/changelog.gz", 0o644),
		file(staged["vipd.bash"], "/usr/share/bash-completion/completions/vipd", 0o644),
		file(staged["vipd.zsh"], "/usr/share/zsh/vendor-completions/_vipd", 0o644),
		file(copyright, "/usr/share/doc/vipd/copyright", 0o644),
	}
	cs = append(cs, manContents(man, "8")...)
	cs = append(cs, manContents(man, "5")...)
	return &nfpm.Info{
		Name: "vipd", Arch: arch, Platform: "linux", Version: o.version, VersionSchema: "none",
		Section: "net", Priority: "optional", Maintainer: maintainer, Homepage: homepage, License: "Apache-2.0",
		Description: "VRRP virtual IP and TCP load balancer for a Kubernetes API\n" +
			"vipd runs on the load-balancer hosts of a self-hosted Kubernetes control\n" +
			"plane: it elects which host holds the API virtual IP with VRRP\n" +
			"(wire-compatible with Keepalived), proxies TCP to the healthy\n" +
			"kube-apiservers, and serves a stats page and Prometheus metrics. It\n" +
			"replaces Keepalived and HAProxy in that role, from one YAML file.",
		Overridables: nfpm.Overridables{
			Depends:  []string{"passwd"},
			Contents: cs,
			Scripts: nfpm.Scripts{PostInstall: staged["vipd.postinst"], PreRemove: staged["vipd.prerm"],
				PostRemove: staged["vipd.postrm"]},
		},
	}
}

func bootstrapInfo(o options, arch, bin string, staged map[string]string, man, copyright string) *nfpm.Info {
	cs := files.Contents{
		file(filepath.Join(bin, "bootstrap"), "/usr/bin/bootstrap", 0o755),
		file(staged["bootstrap.bash"], "/usr/share/bash-completion/completions/bootstrap", 0o644),
		file(staged["bootstrap.zsh"], "/usr/share/zsh/vendor-completions/_bootstrap", 0o644),
		file(copyright, "/usr/share/doc/vipd-bootstrap/copyright", 0o644),
		file(staged["changelog.gz"], "/usr/share/doc/vipd-bootstrap/changelog.gz", 0o644),
	}
	cs = append(cs, manContents(man, "1")...)
	return &nfpm.Info{
		Name: "vipd-bootstrap", Arch: arch, Platform: "linux", Version: o.version, VersionSchema: "none",
		Section: "admin", Priority: "optional", Maintainer: maintainer, Homepage: homepage, License: "Apache-2.0",
		Description: "build a kubeadm HA Kubernetes cluster with vipd over SSH\n" +
			"bootstrap reads one topology file and, over SSH, installs vipd on the\n" +
			"load balancers, containerd and pinned Kubernetes packages on the nodes,\n" +
			"and runs kubeadm on the masters and workers. Every phase probes the\n" +
			"hosts first, so a rerun continues where a failure stopped.",
		Overridables: nfpm.Overridables{Contents: cs},
	}
}

func writeDeb(info *nfpm.Info, dir string) (string, error) {
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return "", err
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	name := filepath.Join(dir, pkg.ConventionalFileName(info))
	f, err := os.Create(name + ".tmp")
	if err != nil {
		return "", err
	}
	defer os.Remove(name + ".tmp")
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return name, os.Rename(name+".tmp", name)
}
