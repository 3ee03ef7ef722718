package sshx

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError is returned when a host's key is refused: unknown (and new keys are not
// accepted) or changed (always refused). It names the host, the SHA256 fingerprint of the key
// the host offered and, for a changed key, the known_hosts file and line of the old one.
type HostKeyError struct {
	Host        string // name in the topology
	Addr        string // address:port dialled
	KeyType     string
	Fingerprint string // SHA256:... of the offered key
	Changed     bool
	File        string // known_hosts file
	Line        int    // line of the old key (Changed only)
	OldFP       string // fingerprint of the old key (Changed only)
	Revoked     bool
}

func (e *HostKeyError) Error() string {
	switch {
	case e.Revoked:
		return fmt.Sprintf("host %s (%s): host key %s %s is revoked in %s", e.Host, e.Addr, e.KeyType, e.Fingerprint, e.File)
	case e.Changed:
		return fmt.Sprintf("host %s (%s): HOST KEY CHANGED: it offered %s %s but %s:%d has %s; refusing to connect (possible man-in-the-middle). If the host was reinstalled, remove the old key with: ssh-keygen -f %s -R %s",
			e.Host, e.Addr, e.KeyType, e.Fingerprint, e.File, e.Line, e.OldFP, e.File, knownhosts.Normalize(e.Addr))
	default:
		return fmt.Sprintf("host %s (%s): unknown host key %s %s (not in %s); verify the fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub) and rerun with --accept-new-host-keys to record it",
			e.Host, e.Addr, e.KeyType, e.Fingerprint, e.File, keyFileType(e.KeyType))
	}
}

func keyFileType(t string) string {
	switch t {
	case ssh.KeyAlgoED25519:
		return "ed25519"
	case ssh.KeyAlgoRSA:
		return "rsa"
	default:
		return "ecdsa"
	}
}

// KnownHosts verifies host keys against one known_hosts file. One value is shared by every
// connection of a run so that keys accepted in parallel are appended one at a time.
type KnownHosts struct {
	path      string
	acceptNew bool
	// Recorded, when set, is told of every key appended to the file (host, address, key
	// type, SHA256 fingerprint), so the operator sees what was trusted.
	Recorded func(host, addr, keyType, fingerprint, file string)
	mu       sync.Mutex
}

// NewKnownHosts returns a verifier for path. With acceptNew, keys of unknown hosts are
// appended to the file (created with mode 0600 if missing); a changed key is always refused.
func NewKnownHosts(path string, acceptNew bool) *KnownHosts {
	return &KnownHosts{path: path, acceptNew: acceptNew}
}

// Path returns the known_hosts file.
func (k *KnownHosts) Path() string { return k.path }

func (k *KnownHosts) db() (ssh.HostKeyCallback, error) {
	if _, err := os.Stat(k.path); errors.Is(err, os.ErrNotExist) {
		return func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }, nil
	}
	cb, err := knownhosts.New(k.path)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts %s: %w", k.path, err)
	}
	return cb, nil
}

// Algorithms returns the host key algorithms known for addr, so the server is asked for the
// key we have rather than one we do not (which would look like a changed key). Nil: unknown.
func (k *KnownHosts) Algorithms(addr string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	cb, err := k.db()
	if err != nil {
		return nil
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	dummy, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if err := cb(addr, tcpAddr(addr), dummy); !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	for _, w := range ke.Want {
		switch w.Key.Type() {
		case ssh.KeyAlgoRSA:
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algos = append(algos, w.Key.Type())
		}
	}
	return algos
}

func tcpAddr(addr string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return &net.TCPAddr{}
	}
	return a
}

// Callback returns the ssh.HostKeyCallback for one host; the refusal, if any, is also stored
// in *refused so the caller can return it typed (x/crypto wraps it in a string).
func (k *KnownHosts) Callback(host string, refused *error) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := k.check(host, hostname, remote, key)
		if err != nil && refused != nil {
			*refused = err
		}
		return err
	}
}

func (k *KnownHosts) check(host, hostname string, remote net.Addr, key ssh.PublicKey) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	cb, err := k.db()
	if err != nil {
		return err
	}
	err = cb(hostname, remote, key)
	if err == nil {
		return nil
	}
	hke := &HostKeyError{Host: host, Addr: hostname, KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key), File: k.path}
	var revoked *knownhosts.RevokedError
	if errors.As(err, &revoked) {
		hke.Revoked = true
		return hke
	}
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return fmt.Errorf("host %s: check host key: %w", host, err)
	}
	if len(ke.Want) > 0 {
		hke.Changed = true
		old := ke.Want[0]
		for _, w := range ke.Want {
			if w.Key.Type() == key.Type() {
				old = w
			}
		}
		hke.File, hke.Line, hke.OldFP = old.Filename, old.Line, ssh.FingerprintSHA256(old.Key)
		return hke
	}
	if !k.acceptNew {
		return hke
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key)
	if err := appendAtomic(k.path, line+"\n"); err != nil {
		return fmt.Errorf("host %s: record its key in %s: %w", host, k.path, err)
	}
	if k.Recorded != nil {
		k.Recorded(host, hostname, key.Type(), ssh.FingerprintSHA256(key), k.path)
	}
	return nil
}

// appendAtomic rewrites path with line appended: temp file in the same directory, mode 0600,
// fsync, rename. A crash leaves the old or the new file, never half of one. When path is a
// symlink (known_hosts kept in a dotfiles repository), the file it points to is rewritten and
// the link stays a link.
func appendAtomic(path, line string) error {
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	} else if dst, lerr := os.Readlink(path); lerr == nil {
		// A dangling link: create the file it names.
		if !filepath.IsAbs(dst) {
			dst = filepath.Join(filepath.Dir(path), dst)
		}
		path = dst
	}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
		old = append(old, '\n')
	}
	return WriteFileAtomic(path, append(old, line...), 0o600)
}

// WriteFileAtomic writes data to path through a temp file in the same directory and a rename,
// with the given mode (the parent directory is created with mode 0700 if missing).
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
