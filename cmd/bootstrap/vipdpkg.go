package main

import (
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vipd-project/vipd/pkg/phases"
	"github.com/vipd-project/vipd/pkg/vipdpkg"
)

// packager builds the vipd Debian package the lb hosts get, once per architecture, from the
// vipd executable bootstrap was given (pkg/vipdpkg: the same definition as `make package`).
type packager struct {
	ctx   context.Context
	bin   *binaryLoader
	unit  []byte // --deploy-dir's vipd.service; nil: deploy/vipd.service built in
	mu    sync.Mutex
	cache map[string]*phases.VipdPackage
}

func newPackager(ctx context.Context, bin *binaryLoader, unit []byte) *packager {
	return &packager{ctx: ctx, bin: bin, unit: unit, cache: map[string]*phases.VipdPackage{}}
}

func (p *packager) load(arch string) (*phases.VipdPackage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pkg := p.cache[arch]; pkg != nil {
		return pkg, nil
	}
	path, bin, err := p.bin.load(arch)
	if err != nil {
		return nil, err
	}
	version, err := binaryVersion(p.ctx, path, arch, bin)
	if err != nil {
		return nil, err
	}
	pkg := &phases.VipdPackage{Version: version, Arch: arch, Binary: bin, Unit: vipdpkg.Unit(p.unit)}
	var once sync.Once
	var deb []byte
	var buildErr error
	pkg.Deb = func() ([]byte, error) {
		once.Do(func() {
			deb, buildErr = buildDeb(vipdpkg.Spec{Version: version, Arch: arch, Binary: bin, Unit: p.unit})
		})
		if buildErr != nil {
			return nil, fmt.Errorf("from %s: %w", path, buildErr)
		}
		return deb, nil
	}
	p.cache[arch] = pkg
	return pkg, nil
}

// buildDeb builds the package in a temporary directory and returns its bytes.
func buildDeb(spec vipdpkg.Spec) ([]byte, error) {
	dir, err := os.MkdirTemp("", "bootstrap-vipd-package-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path, err := vipdpkg.Build(spec, dir)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

// debVersion is what dpkg accepts as a version (Debian policy 5.6.12, without an epoch).
var debVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~-]*$`)

// binaryVersion returns the version of the vipd executable at path, for the package: what
// `vipd version` answers (hack/version.sh's, stamped by the Makefile) when it can run here,
// else the version the Go toolchain recorded in it. A build without a version (plain
// `go build`: "dev") gets 0.0.0~dev.SHA, SHA from its content: below every released
// version, and a different build is a different version.
func binaryVersion(ctx context.Context, path, arch string, bin []byte) (string, error) {
	var v string
	if arch == runtime.GOARCH && runtime.GOOS == "linux" {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, path, "version").Output()
		if err != nil {
			return "", fmt.Errorf("%s version: %w", path, err)
		}
		// "vipd 1.2.0 (commit 0123abcd, go1.26.8, linux/amd64)"
		if f := strings.Fields(string(out)); len(f) >= 2 && f[0] == "vipd" {
			v = f[1]
		}
	} else if bi, err := buildinfo.ReadFile(path); err == nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = strings.TrimPrefix(bi.Main.Version, "v")
	}
	if v == "dev" {
		sum := sha256.Sum256(bin)
		v = "0.0.0~dev." + hex.EncodeToString(sum[:6])
	}
	if v == "" || !debVersion.MatchString(v) {
		return "", fmt.Errorf("%s: cannot tell its version for the vipd package (got %q): build it with `make build` (GOARCH=%s), which stamps the version from git tags", path, v, arch)
	}
	return v, nil
}

// ---- vipd binary

type binaryLoader struct {
	path  string
	mu    sync.Mutex
	cache map[string][]byte
}

func newBinaryLoader(path string) *binaryLoader {
	if path == "" {
		if exe, err := os.Executable(); err == nil {
			path = filepath.Join(filepath.Dir(exe), "vipd")
		} else {
			path = "vipd"
		}
	}
	return &binaryLoader{path: path, cache: map[string][]byte{}}
}

var elfArch = map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64", elf.EM_ARM: "arm", elf.EM_386: "386", elf.EM_PPC64: "ppc64le", elf.EM_S390: "s390x", elf.EM_RISCV: "riscv64"}

// resolve returns the path of the vipd executable for arch: PATH with {arch} replaced, else
// PATH-linux-ARCH when it exists, else PATH itself.
func (b *binaryLoader) resolve(arch string) string {
	p := b.path
	if strings.Contains(p, "{arch}") {
		p = strings.ReplaceAll(p, "{arch}", arch)
	} else if _, err := os.Stat(p + "-linux-" + arch); err == nil {
		p = p + "-linux-" + arch
	}
	return p
}

// load returns the path and content of the vipd executable for arch, checked to be an ELF
// executable for that architecture.
func (b *binaryLoader) load(arch string) (string, []byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.resolve(arch)
	if d, ok := b.cache[arch]; ok {
		return p, d, nil
	}
	f, err := elf.Open(p)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w (build vipd for linux/%s and pass --vipd-binary)", p, err, arch)
	}
	got := elfArch[f.Machine]
	f.Close()
	if got != arch {
		return "", nil, fmt.Errorf("%s is built for %s, the host is %s: build it with GOOS=linux GOARCH=%s, or pass --vipd-binary 'vipd-{arch}'", p, got, arch, arch)
	}
	d, err := os.ReadFile(p)
	if err != nil {
		return "", nil, err
	}
	b.cache[arch] = d
	return p, d, nil
}
