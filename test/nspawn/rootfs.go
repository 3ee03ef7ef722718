package nspawn

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DefaultCacheDir holds the cached root filesystems (outside any repository).
const DefaultCacheDir = "/var/cache/vipd-lab"

// rootfsPackages are installed by debootstrap on top of the minbase variant.
var rootfsPackages = []string{
	"systemd", "systemd-sysv", "dbus", "openssh-server", "sudo", "libnss-myhostname",
	"iproute2", "iputils-ping", "curl", "ca-certificates", "gnupg", "apt-transport-https",
	"procps", "kmod",
}

// rootfsRecipe changes whenever the customisation below changes, so the cache key follows.
const rootfsRecipe = "v3"

// KubernetesNodePackages are the Debian packages a real Kubernetes node has besides the
// base set (what pkgs.k8s.io's kubelet depends on; containerd and runc come from the lab
// repository through bootstrap). Real-Kubernetes labs (Options.Kubernetes) boot a root
// filesystem that has them, cached under its own key.
var KubernetesNodePackages = []string{"iptables", "conntrack", "socat", "ethtool", "ebtables"}

// RootfsKey names the cached root filesystem: the suite plus a hash of the package list
// (the base set plus extra) and the customisation recipe. Without extra packages the key
// is the one the stand-in labs have always used.
func RootfsKey(extra ...string) string {
	pkgs := strings.Join(rootfsPackages, ",")
	if len(extra) > 0 {
		pkgs += "+" + strings.Join(extra, ",")
	}
	h := sha256.Sum256([]byte(rootfsRecipe + "\n" + pkgs))
	return "bookworm-" + hex.EncodeToString(h[:6])
}

// EnsureRootfs returns a directory holding the read-only template root filesystem (the
// base packages plus extra), building it with debootstrap (about a minute) or extracting
// the cached tarball (a few seconds) when needed. It holds an exclusive lock on
// cacheDir/.lock meanwhile, so parallel test binaries build it once.
func EnsureRootfs(ctx context.Context, log *slog.Logger, cacheDir string, extra ...string) (string, error) {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("create rootfs cache %s: %w", cacheDir, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cacheDir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()

	key := RootfsKey(extra...)
	dir := filepath.Join(cacheDir, key)
	tarball := dir + ".tar.zst"
	stamp := filepath.Join(cacheDir, key+".ok")
	if _, err := os.Stat(stamp); err == nil {
		return dir, nil
	}
	_ = os.RemoveAll(dir)
	if _, err := os.Stat(tarball); err == nil {
		start := time.Now()
		tmp := dir + ".tmp"
		_ = os.RemoveAll(tmp)
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return "", fmt.Errorf("create %s: %w", tmp, err)
		}
		cmd := exec.CommandContext(ctx, "tar", "--zstd", "--xattrs", "--xattrs-include=*", "--numeric-owner",
			"-xpf", tarball, "-C", tmp)
		if out, err := cmd.CombinedOutput(); err != nil {
			_ = os.RemoveAll(tmp)
			return "", fmt.Errorf("extract rootfs %s: %w: %s", tarball, err, tail(out))
		}
		if err := os.Rename(tmp, dir); err != nil {
			return "", fmt.Errorf("rename rootfs: %w", err)
		}
		log.Info("rootfs restored from cache", "tarball", tarball, "elapsed", time.Since(start).Round(time.Millisecond))
		return dir, os.WriteFile(stamp, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
	}

	start := time.Now()
	build := dir + ".build"
	_ = os.RemoveAll(build)
	mirror := debianMirror()
	log.Info("building rootfs with debootstrap (first run only)", "dir", dir, "mirror", mirror)
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(append(append([]string{}, rootfsPackages...), extra...), ","), "bookworm", build, mirror)
	logPath := filepath.Join(cacheDir, key+".debootstrap.log")
	lf, err := os.Create(logPath)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", logPath, err)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	err = cmd.Run()
	lf.Close()
	if err != nil {
		_ = os.RemoveAll(build)
		return "", fmt.Errorf("debootstrap bookworm from %s (log %s): %w", mirror, logPath, err)
	}
	if err := customizeRootfs(ctx, build); err != nil {
		_ = os.RemoveAll(build)
		return "", fmt.Errorf("customize rootfs: %w", err)
	}
	tmpTar := tarball + ".tmp"
	tcmd := exec.CommandContext(ctx, "tar", "--zstd", "--xattrs", "--xattrs-include=*", "--numeric-owner",
		"-cpf", tmpTar, "-C", build, ".")
	if out, err := tcmd.CombinedOutput(); err != nil {
		_ = os.Remove(tmpTar)
		_ = os.RemoveAll(build)
		return "", fmt.Errorf("archive rootfs: %w: %s", err, tail(out))
	}
	if err := os.Rename(tmpTar, tarball); err != nil {
		return "", fmt.Errorf("rename rootfs tarball: %w", err)
	}
	if err := os.Rename(build, dir); err != nil {
		return "", fmt.Errorf("rename rootfs: %w", err)
	}
	log.Info("rootfs built", "dir", dir, "tarball", tarball, "elapsed", time.Since(start).Round(time.Second))
	return dir, os.WriteFile(stamp, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}

// customizeRootfs applies DESIGN.md §5's facts to a fresh debootstrap tree.
func customizeRootfs(ctx context.Context, root string) error {
	// --hostname must win; each boot gets its own machine id.
	_ = os.Remove(filepath.Join(root, "etc/hostname"))
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444); err != nil {
		return fmt.Errorf("empty machine-id: %w", err)
	}
	_ = os.Remove(filepath.Join(root, "var/lib/dbus/machine-id"))
	if err := os.Symlink("/etc/machine-id", filepath.Join(root, "var/lib/dbus/machine-id")); err != nil {
		return fmt.Errorf("link dbus machine-id: %w", err)
	}
	// No host keys in the template: every host gets its own, bind-mounted read-only.
	keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return fmt.Errorf("remove template host key: %w", err)
		}
	}
	sshd := "# vipd lab: one ed25519 host key per host (bind-mounted read-only).\n" +
		"HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication yes\nUseDNS no\n"
	if err := os.WriteFile(filepath.Join(root, "etc/ssh/sshd_config.d/10-vipd-lab.conf"), []byte(sshd), 0o644); err != nil {
		return fmt.Errorf("write sshd config: %w", err)
	}
	// Nothing leaves the lab: the OS sources point nowhere; packages come from the lab repo.
	if err := os.WriteFile(filepath.Join(root, "etc/apt/sources.list"),
		[]byte("# vipd lab: no route out; packages come from the lab repository\n"), 0o644); err != nil {
		return fmt.Errorf("empty apt sources: %w", err)
	}
	// The reference inventory's non-root user: password (set per lab) and sudo with password.
	if out, err := exec.CommandContext(ctx, "chroot", root, "useradd", "-m", "-s", "/bin/bash", "-G", "sudo", "ops").CombinedOutput(); err != nil {
		return fmt.Errorf("useradd ops: %w: %s", err, tail(out))
	}
	if err := os.MkdirAll(filepath.Join(root, "root/.ssh"), 0o700); err != nil {
		return fmt.Errorf("create /root/.ssh: %w", err)
	}
	// Units that only cost time or fail in a container.
	for _, u := range []string{"apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
		"fstrim.timer", "getty@tty1.service", "console-getty.service"} {
		_ = os.Symlink("/dev/null", filepath.Join(root, "etc/systemd/system", u))
	}
	_ = exec.CommandContext(ctx, "chroot", root, "apt-get", "clean").Run()
	lists, _ := filepath.Glob(filepath.Join(root, "var/lib/apt/lists/*_*"))
	for _, l := range lists {
		_ = os.Remove(l)
	}
	return nil
}

// debianMirror returns the Debian mirror apt uses on this machine (deb.debian.org if none).
func debianMirror() string {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	files = append([]string{"/etc/apt/sources.list"}, files...)
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			var uri string
			switch {
			case strings.HasPrefix(line, "URIs:"):
				uri = strings.Fields(strings.TrimPrefix(line, "URIs:"))[0]
			case strings.HasPrefix(line, "deb "):
				for _, f := range strings.Fields(line)[1:] {
					if strings.HasPrefix(f, "http") {
						uri = f
						break
					}
				}
			}
			if uri != "" && strings.HasSuffix(strings.TrimSuffix(uri, "/"), "/debian") {
				fh.Close()
				return uri
			}
		}
		fh.Close()
	}
	return "http://deb.debian.org/debian"
}

// lockFile takes an exclusive flock on path, waiting until ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// tail returns the last few lines of command output for error messages.
func tail(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, "\n")
}
