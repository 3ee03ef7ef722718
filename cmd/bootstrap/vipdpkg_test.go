//go:build !race

// Building a .deb compresses the vipd binary (tens of MB): minutes under the race detector
// on a busy machine, so this file runs without it (go test ./cmd/bootstrap); the e2e tests
// (TestBootstrap) install such packages on real hosts.

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The package bootstrap builds carries the vipd binary's own version (what `vipd version`
// says, stamped by make build from git tags), or 0.0.0~dev.SHA for an unstamped build, and
// dpkg-deb reads it as the vipd package.
func TestPackagerVersionFromBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds vipd")
	}
	dir := t.TempDir()
	build := func(name string, ldflags ...string) string {
		p := filepath.Join(dir, name)
		args := append([]string{"build", "-o", p}, ldflags...)
		if out, err := exec.Command("go", append(args, "../vipd")...).CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		return p
	}
	stamped := build("vipd-stamped", "-ldflags", "-X github.com/vipd-project/vipd/pkg/cli.version=1.4.0+3.g0123abcd")
	plain := build("vipd-plain")
	for _, c := range []struct{ bin, want string }{{stamped, "1.4.0+3.g0123abcd"}, {plain, "0.0.0~dev."}} {
		p := newPackager(context.Background(), newBinaryLoader(c.bin), nil)
		pkg, err := p.load(runtime.GOARCH)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(pkg.Version, c.want) || pkg.FileName() != "vipd_"+pkg.Version+"_"+runtime.GOARCH+".deb" {
			t.Errorf("%s: version %q, file %s; want %s", c.bin, pkg.Version, pkg.FileName(), c.want)
		}
		if _, err := exec.LookPath("dpkg-deb"); err != nil {
			continue
		}
		b, err := pkg.Deb()
		if err != nil {
			t.Fatal(err)
		}
		deb := filepath.Join(dir, pkg.FileName())
		if err := os.WriteFile(deb, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("dpkg-deb", "-f", deb, "Package", "Version", "Architecture").CombinedOutput()
		if want := "Package: vipd\nVersion: " + pkg.Version + "\nArchitecture: " + runtime.GOARCH + "\n"; err != nil || string(out) != want {
			t.Errorf("dpkg-deb -f: %v\n%s\nwant\n%s", err, out, want)
		}
		list, _ := exec.Command("dpkg-deb", "-c", deb).CombinedOutput()
		for _, f := range []string{"./usr/sbin/vipd", "./lib/systemd/system/vipd.service", "./etc/vipd/vipd.yaml"} {
			if !strings.Contains(string(list), f+"\n") {
				t.Errorf("package lacks %s:\n%s", f, list)
			}
		}
		if conf, _ := exec.Command("dpkg-deb", "-I", deb, "conffiles").CombinedOutput(); strings.TrimSpace(string(conf)) != "/etc/vipd/vipd.yaml" {
			t.Errorf("conffiles: %q", conf)
		}
	}
}
