package nspawn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// makeSSHMaterial creates the client key, one host key per host, known_hosts and the
// ops password.
func (l *Lab) makeSSHMaterial(ctx context.Context) error {
	sshDir := filepath.Join(l.Dir, "ssh")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", sshDir, err)
	}
	l.SSHKey = filepath.Join(sshDir, "id_ed25519")
	l.SSHPubKey = l.SSHKey + ".pub"
	if err := run(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vipd-lab-operator", "-f", l.SSHKey); err != nil {
		return err
	}
	var kh strings.Builder
	for _, h := range l.Hosts {
		kd := filepath.Join(h.dir, "keys")
		if err := os.MkdirAll(kd, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", kd, err)
		}
		key := filepath.Join(kd, "ssh_host_ed25519_key")
		if err := run(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@"+h.Name, "-f", key); err != nil {
			return err
		}
		pub, err := os.ReadFile(key + ".pub")
		if err != nil {
			return fmt.Errorf("read host key of %s: %w", h.Name, err)
		}
		f := strings.Fields(string(pub))
		if len(f) < 2 {
			return fmt.Errorf("host key of %s: malformed %q", h.Name, pub)
		}
		h.HostKeyPub = f[0] + " " + f[1]
		fmt.Fprintf(&kh, "%s %s\n", h.Addr, h.HostKeyPub)
	}
	l.KnownHosts = filepath.Join(sshDir, "known_hosts")
	if err := os.WriteFile(l.KnownHosts, []byte(kh.String()), 0o600); err != nil {
		return fmt.Errorf("write known_hosts: %w", err)
	}
	b := make([]byte, 9)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return fmt.Errorf("random password: %w", err)
	}
	l.OpsPassword = "lab-" + hex.EncodeToString(b)
	return nil
}

// opsShadowHash returns a sha512-crypt hash of the ops password.
func (l *Lab) opsShadowHash(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "openssl", "passwd", "-6", "-stdin")
	cmd.Stdin = strings.NewReader(l.OpsPassword + "\n")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hash ops password with openssl: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// makeRepos creates the lab's GPG key and one signed flat repository per Options.Repos,
// plus Options.Files, under Dir/www.
func (l *Lab) makeRepos(ctx context.Context) error {
	www := filepath.Join(l.Dir, "www")
	if err := os.MkdirAll(filepath.Join(www, "files"), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", www, err)
	}
	for name, data := range l.opts.Files {
		if strings.Contains(name, "/") {
			return fmt.Errorf("file name %q: no slashes", name)
		}
		if err := os.WriteFile(filepath.Join(www, "files", name), data, 0o644); err != nil {
			return fmt.Errorf("write file %s: %w", name, err)
		}
	}
	if len(l.opts.Repos) == 0 {
		return nil
	}
	l.gpgHome = filepath.Join(l.Dir, "gnupg")
	if err := os.MkdirAll(l.gpgHome, 0o700); err != nil {
		return fmt.Errorf("create gnupg home: %w", err)
	}
	gpg := func(args ...string) error {
		return run(ctx, "gpg", append([]string{"--homedir", l.gpgHome, "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
	}
	if err := gpg("--quick-gen-key", "vipd lab repository <lab@vipd.invalid>", "ed25519", "sign", "2d"); err != nil {
		return fmt.Errorf("generate lab repository key: %w", err)
	}
	for _, r := range l.opts.Repos {
		if r.Name == "" || r.Name == "files" || strings.ContainsAny(r.Name, "/ ") {
			return fmt.Errorf("repo name %q: invalid", r.Name)
		}
		dir := filepath.Join(www, r.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create repo %s: %w", r.Name, err)
		}
		for _, deb := range r.Debs {
			if err := copyFile(deb, filepath.Join(dir, filepath.Base(deb))); err != nil {
				return fmt.Errorf("repo %s: %w", r.Name, err)
			}
		}
		pk := exec.CommandContext(ctx, "apt-ftparchive", "packages", ".")
		pk.Dir = dir
		out, err := pk.Output()
		if err != nil {
			return fmt.Errorf("apt-ftparchive packages for repo %s (install apt-utils): %w", r.Name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "Packages"), out, 0o644); err != nil {
			return fmt.Errorf("write Packages: %w", err)
		}
		if err := run(ctx, "gzip", "-k", "-f", filepath.Join(dir, "Packages")); err != nil {
			return err
		}
		rel := exec.CommandContext(ctx, "apt-ftparchive",
			"-o", "APT::FTPArchive::Release::Origin=vipd-lab",
			"-o", "APT::FTPArchive::Release::Label=vipd-lab-"+r.Name,
			"release", ".")
		rel.Dir = dir
		out, err = rel.Output()
		if err != nil {
			return fmt.Errorf("apt-ftparchive release for repo %s: %w", r.Name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "Release"), out, 0o644); err != nil {
			return fmt.Errorf("write Release: %w", err)
		}
		if err := gpg("--armor", "--detach-sign", "-o", filepath.Join(dir, "Release.gpg"), filepath.Join(dir, "Release")); err != nil {
			return err
		}
		if err := gpg("--clearsign", "-o", filepath.Join(dir, "InRelease"), filepath.Join(dir, "Release")); err != nil {
			return err
		}
		if err := gpg("--armor", "--export", "-o", filepath.Join(dir, "Release.key")); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// DebianDebs downloads the named packages from this machine's apt sources (apt-get
// download, on the root host) into CacheDir/debs once, and returns their paths. The lab
// uses it for the real containerd and runc.
func DebianDebs(ctx context.Context, cacheDir string, pkgs ...string) ([]string, error) {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir
	}
	dir := filepath.Join(cacheDir, "debs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cacheDir, ".debs.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	var paths []string
	for _, p := range pkgs {
		m, _ := filepath.Glob(filepath.Join(dir, p+"_*.deb"))
		if len(m) == 0 {
			cmd := exec.CommandContext(ctx, "apt-get", "download", p)
			cmd.Dir = dir
			if _, err := cmd.CombinedOutput(); err != nil {
				// A fresh machine may have no package lists yet.
				if out, err := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); err != nil {
					return nil, fmt.Errorf("apt-get update: %w: %s", err, tail(out))
				}
				cmd = exec.CommandContext(ctx, "apt-get", "download", p)
				cmd.Dir = dir
				if out, err := cmd.CombinedOutput(); err != nil {
					return nil, fmt.Errorf("apt-get download %s: %w: %s", p, err, tail(out))
				}
			}
			m, _ = filepath.Glob(filepath.Join(dir, p+"_*.deb"))
			if len(m) == 0 {
				return nil, fmt.Errorf("apt-get download %s: no %s_*.deb in %s", p, p, dir)
			}
		}
		paths = append(paths, m[len(m)-1])
	}
	return paths, nil
}
