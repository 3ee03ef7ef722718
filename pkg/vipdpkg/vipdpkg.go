// Package vipdpkg defines the vipd Debian package: what it installs where, its control
// fields and its maintainer scripts. It is the one definition: `make package` (hack/package)
// builds the released .debs with it, adding man pages and completions, and bootstrap builds
// the package it installs on the lb hosts with it from the vipd binary it was given, so
// `dpkg -l vipd` tells the version there and an upgrade is a package upgrade.
//
// The files themselves (unit, example configuration, scripts, copyright) live in deploy/
// and are embedded from there (package deploy).
package vipdpkg

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"

	"github.com/vipd-project/vipd/deploy"
	"github.com/vipd-project/vipd/pkg/config"
)

// Paths the package installs on a host.
const (
	BinaryPath = "/usr/sbin/vipd"
	UnitPath   = "/lib/systemd/system/vipd.service"
	ConfigPath = "/etc/vipd/vipd.yaml" // a conffile: the example, refused by vipd until edited
	Name       = "vipd"
)

// Maintainer and Homepage are the control fields of every package built from this tree.
const (
	Maintainer = "vipd maintainers <vipd-maintainers@users.noreply.github.com>"
	Homepage   = "https://github.com/vipd-project/vipd"
)

// Spec is one build of the vipd package.
type Spec struct {
	Version string // Debian version (hack/version.sh)
	Arch    string // Debian architecture: amd64, arm64
	Binary  []byte // the vipd executable for Arch
	// Unit replaces deploy/vipd.service (bootstrap --deploy-dir); nil: the embedded one.
	Unit []byte
	// Changelog is the gzipped Debian changelog; nil: one entry "Build of vipd VERSION." dated Date.
	Changelog []byte
	Date      time.Time // file times and changelog date (SOURCE_DATE_EPOCH); zero: now
	// Extra files (man pages, shell completions): destination path -> gzipped or plain content.
	Extra map[string][]byte
}

// Unit returns the unit as the package installs it: src (deploy/vipd.service when nil) with
// the package's binary path and without the manual-install comment.
func Unit(src []byte) []byte {
	if src == nil {
		src = deploy.File("vipd.service")
	}
	var out []string
	for _, l := range strings.Split(string(src), "\n") {
		if strings.HasPrefix(l, "# Install:") || strings.HasPrefix(l, "#          ") {
			continue
		}
		out = append(out, strings.ReplaceAll(l, "/usr/local/bin/vipd", BinaryPath))
	}
	return []byte(strings.Join(out, "\n"))
}

// Example returns the conffile the package ships: deploy/vipd.yaml under the marker line
// that makes vipd refuse it until an admin (or bootstrap) replaced it.
func Example() []byte {
	return append([]byte(config.ExampleMarker+"\n"), deploy.File("vipd.yaml")...)
}

// script renders a maintainer script of deploy/debian.
func script(name string) ([]byte, error) {
	t, err := template.New(name).Parse(string(deploy.File("debian/" + name)))
	if err != nil {
		return nil, fmt.Errorf("deploy/debian/%s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, struct{ Marker string }{config.ExampleMarker}); err != nil {
		return nil, fmt.Errorf("deploy/debian/%s: %w", name, err)
	}
	return b.Bytes(), nil
}

// Build writes the package into dir and returns its path (dir/vipd_VERSION_ARCH.deb).
func Build(s Spec, dir string) (string, error) {
	if s.Version == "" || s.Arch == "" || len(s.Binary) == 0 {
		return "", fmt.Errorf("vipd package: version, architecture and binary are required")
	}
	if s.Date.IsZero() {
		s.Date = time.Now().UTC()
	}
	tmp, err := os.MkdirTemp("", "vipdpkg-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	n := 0
	put := func(b []byte, mode os.FileMode) string {
		n++
		p := filepath.Join(tmp, fmt.Sprint(n))
		if err == nil {
			err = os.WriteFile(p, b, mode)
		}
		return p
	}
	if s.Changelog == nil {
		s.Changelog, err = Changelog(s.Version, []string{"Build of vipd " + s.Version + "."}, s.Date)
		if err != nil {
			return "", err
		}
	}
	file := func(b []byte, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: put(b, mode), Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode}}
	}
	cs := files.Contents{
		file(s.Binary, BinaryPath, 0o755),
		file(Unit(s.Unit), UnitPath, 0o644),
		// 0644 in the package (the example holds no secret); postinst makes it root:vipd 0640.
		{Source: put(Example(), 0o644), Destination: ConfigPath, Type: files.TypeConfigNoReplace,
			FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		file(s.Changelog, "/usr/share/doc/vipd/changelog.gz", 0o644),
		file(deploy.File("debian/copyright"), "/usr/share/doc/vipd/copyright", 0o644),
	}
	for dst, b := range s.Extra {
		cs = append(cs, file(b, dst, 0o644))
	}
	var scripts [3]string
	for i, name := range []string{"vipd.postinst", "vipd.prerm", "vipd.postrm"} {
		b, serr := script(name)
		if serr != nil {
			return "", serr
		}
		scripts[i] = put(b, 0o755)
	}
	if err != nil {
		return "", err
	}
	info := &nfpm.Info{
		Name: Name, Arch: s.Arch, Platform: "linux", Version: s.Version, VersionSchema: "none",
		Section: "net", Priority: "optional", Maintainer: Maintainer, Homepage: Homepage, License: "Apache-2.0",
		MTime: s.Date,
		Description: "VRRP virtual IP and TCP load balancer for a Kubernetes API\n" +
			"vipd runs on the load-balancer hosts of a self-hosted Kubernetes control\n" +
			"plane: it elects which host holds the API virtual IP with VRRP\n" +
			"(wire-compatible with Keepalived), proxies TCP to the healthy\n" +
			"kube-apiservers, and serves a stats page and Prometheus metrics. It\n" +
			"replaces Keepalived and HAProxy in that role, from one YAML file.",
		Overridables: nfpm.Overridables{
			Depends:  []string{"passwd"},
			Contents: cs,
			Scripts:  nfpm.Scripts{PostInstall: scripts[0], PreRemove: scripts[1], PostRemove: scripts[2]},
		},
	}
	return WriteDeb(info, dir)
}

// WriteDeb validates info and writes its .deb into dir under Debian's file name.
func WriteDeb(info *nfpm.Info, dir string) (string, error) {
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return "", fmt.Errorf("%s %s: %w", info.Name, info.Arch, err)
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
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
		return "", fmt.Errorf("%s %s: %w", info.Name, info.Arch, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return name, os.Rename(name+".tmp", name)
}

// Changelog is a gzipped Debian changelog (native package: /usr/share/doc/PKG/changelog.gz)
// with one entry for version listing notes.
func Changelog(version string, notes []string, date time.Time) ([]byte, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "vipd (%s) unstable; urgency=medium\n\n", version)
	for _, n := range notes {
		b.WriteString(wrap("  * ", "    ", n, 80))
	}
	fmt.Fprintf(&b, "\n -- %s  %s\n", Maintainer, date.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	return Gzip([]byte(b.String()))
}

// Gzip compresses like gzip -9n (no name, no time: reproducible, as lintian wants).
func Gzip(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
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
