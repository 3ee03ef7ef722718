package phases

import (
	"context"
	"fmt"
	"strings"

	"github.com/vipd-project/vipd/pkg/sshx"
	"github.com/vipd-project/vipd/pkg/topology"
	"github.com/vipd-project/vipd/pkg/vipdpkg"
)

// VipdPackage is the vipd Debian package the lb phase installs (pkg/vipdpkg builds it).
type VipdPackage struct {
	Version string // Debian version, as `dpkg-query -W vipd` shows it once installed
	Arch    string
	// Deb builds (once) and returns the .deb: only an install needs it, a probe does not.
	Deb func() ([]byte, error)
	// Binary and Unit are the package's /usr/sbin/vipd and vipd.service: the probe compares
	// them with the host's, so a rebuilt vipd under the same version is installed too.
	Binary, Unit []byte
}

// FileName is the package's file name, Debian's convention.
func (p *VipdPackage) FileName() string {
	return fmt.Sprintf("%s_%s_%s.deb", vipdpkg.Name, p.Version, p.Arch)
}

// Where vipd was installed by a bootstrap from before the package: the lb phase removes these
// when it installs the package (the unit under /etc would hide the package's).
const (
	legacyBinaryPath = "/usr/local/bin/vipd"
	legacyUnitPath   = "/etc/systemd/system/vipd.service"
)

// pkgProbeScript prints "pkg VERSION STATUS" (dpkg-query's abbreviated status: "ii" when
// installed and configured; nothing when dpkg knows no vipd) and the legacy files present.
var pkgProbeScript = fmt.Sprintf(`echo "pkg $(dpkg-query -W -f='${Version} ${db:Status-Abbrev}' %s 2>/dev/null)"
for f in %s %s; do [ -e "$f" ] && echo "legacy $f"; done`, vipdpkg.Name, legacyBinaryPath, legacyUnitPath)

// pkgState is what the probe learnt about the vipd package on a host.
type pkgState struct {
	want      *VipdPackage
	installed string   // installed version, "" if none
	status    string   // dpkg-query's abbreviated status ("ii")
	legacy    []string // files of an install from before the package
	stale     bool     // the package must be installed or reinstalled
}

func (p *pkgState) parse(line string) bool {
	fs := strings.Fields(line)
	switch {
	case len(fs) >= 1 && fs[0] == "pkg":
		if len(fs) >= 3 {
			p.installed, p.status = fs[1], fs[2]
		}
	case len(fs) == 2 && fs[0] == "legacy":
		p.legacy = append(p.legacy, fs[1])
	default:
		return false
	}
	return true
}

// todo judges the package against the host's files (path -> "mode owner sha") and returns
// the plan's lines.
func (p *pkgState) todo(have map[string]string) []string {
	var todo []string
	if len(p.legacy) > 0 {
		todo = append(todo, "remove the vipd installed without a package ("+strings.Join(p.legacy, ", ")+")")
	}
	if p.want == nil {
		return todo
	}
	same := func(path string, data []byte) bool {
		f := strings.Fields(have[path])
		return len(f) == 3 && f[2] == sha(data)
	}
	p.stale = len(p.legacy) > 0 || p.status != "ii" || p.installed != p.want.Version ||
		!same(VipdBinaryPath, p.want.Binary) || !same(VipdUnitPath, p.want.Unit)
	if !p.stale {
		return todo
	}
	how := fmt.Sprintf("install the vipd package %s (upload %s, apt-get install it)", p.want.Version, p.want.FileName())
	switch {
	case p.status == "ii" && p.installed != p.want.Version:
		how = fmt.Sprintf("upgrade the vipd package %s -> %s (upload %s, apt-get install it; %s is kept)", p.installed, p.want.Version, p.want.FileName(), VipdConfigPath)
	case p.status == "ii":
		how = fmt.Sprintf("reinstall the vipd package %s (its files differ from %s)", p.want.Version, p.want.FileName())
	}
	return append(todo, how)
}

// install removes a pre-package install and installs the package. The configuration bootstrap
// wrote wins over the package's example (--force-confold: dpkg asks nothing); the package's
// postinst restarts vipd if it runs and its configuration is not the example.
func (p *pkgState) install(ctx context.Context, r *Runner, h topology.Host) error {
	if len(p.legacy) > 0 {
		// The unit under /etc hides the package's; its enablement link would dangle.
		script := fmt.Sprintf("if [ -e %[1]s ]; then systemctl disable vipd >/dev/null 2>&1 || true; fi\nrm -f %[1]s %[2]s\nsystemctl daemon-reload", legacyUnitPath, legacyBinaryPath)
		if _, err := r.change(ctx, h, "lb/remove-legacy", script); err != nil {
			return err
		}
	}
	b, err := p.want.Deb()
	if err != nil {
		return fmt.Errorf("build the vipd package: %w", err)
	}
	deb := "/var/tmp/" + p.want.FileName()
	if err := r.upload(ctx, h, deb, b, 0o644, "root:root"); err != nil {
		return err
	}
	// --reinstall: a rebuilt vipd under the same version; --allow-downgrades: going back to
	// an older build is the operator's choice.
	cmd := "(\n" + aptRun(aptInstall+" --reinstall --allow-downgrades "+sshx.Quote(deb)) + "\n)\nrc=$?\nrm -f " + sshx.Quote(deb) + "\nexit $rc"
	_, err = r.change(ctx, h, "lb/package", cmd)
	return err
}
