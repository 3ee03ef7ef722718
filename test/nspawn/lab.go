package nspawn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// HostSpec names one simulated host and its role (lb, master or worker).
type HostSpec struct {
	Name string
	Role string
}

// Repo is one flat apt repository served by the lab at http://<operator>:<port>/<Name>/
// ("deb [signed-by=...] URL /", like pkgs.k8s.io), signed with the lab's key, whose
// ASCII-armored public key is at URL + "Release.key".
type Repo struct {
	Name string
	Debs []string // paths of .deb files copied into the repository
}

// Options describe a lab.
type Options struct {
	// Prefix names namespaces, cgroups and machines; default "vn" + 5 random hex chars.
	Prefix string
	Hosts  []HostSpec
	// Subnet is the lab's /24; default 10.77.0.0/24. Host i gets .11+i, the operator .2,
	// and .100 is left free for the VIP.
	Subnet string
	// CacheDir holds the rootfs and downloaded packages; default DefaultCacheDir.
	CacheDir string
	// Repos are served by the lab's HTTP server; Files too, at /files/<name>.
	Repos []Repo
	Files map[string][]byte
	// Log receives lab events; default discards.
	Log *slog.Logger
	// KeepDir keeps the lab directory (logs, overlay upper layers) after Close.
	KeepDir bool
	// K8s turns on the real-Kubernetes mode: the hosts boot the root filesystem with
	// KubernetesNodePackages and get the lab-only workarounds of k8s_lab.go (cgroup v1
	// controllers, capabilities, /dev/kmsg, the runc wrapper, sysctl views, the images of
	// this build imported into containerd when it starts). The packages are the caller's
	// to serve (Repos).
	K8s *K8sBuild
	// K8sNoImages (with K8s): the lab does not import the images; bootstrap must (an image
	// bundle, packages.imageBundle), as on an air-gapped host.
	K8sNoImages bool
}

// Host is one booted simulated host.
type Host struct {
	Name  string
	Role  string
	Addr  netip.Addr
	NetNS string // network namespace name (/run/netns/<NetNS>)
	// HostKeyPub is the host's SSH public key line ("ssh-ed25519 AAAA...").
	HostKeyPub string

	dir      string // lab dir/hosts/<name>
	merged   string
	cgroups  []string
	cmd      *exec.Cmd
	done     chan struct{}
	mounted  bool
	initPID  int
	logFile  *os.File
	machName string
}

// Lab is a running set of simulated hosts. Create it with Start, end it with Close.
type Lab struct {
	Prefix       string
	Dir          string
	Subnet       netip.Prefix
	BridgeNS     string
	OperatorNS   string
	OperatorAddr netip.Addr
	// VIP is a free address of the subnet with its prefix, e.g. "10.77.0.100/24".
	VIP string
	// HTTPBase is the lab HTTP server's URL ("http://10.77.0.2:8080/"), reachable from the
	// operator namespace and every host.
	HTTPBase string
	Hosts    []*Host
	// SSH material: the client private key (authorized for root on every host), a
	// known_hosts file with every host's key (by address), and the ops user's password.
	SSHKey      string
	SSHPubKey   string
	KnownHosts  string
	OpsUser     string
	OpsPassword string

	log     *slog.Logger
	opts    Options
	lower   string
	mu      sync.Mutex
	netns   []string // created namespaces, deleted in reverse order
	srv     *http.Server
	gpgHome string
	closed  bool
}

// Start builds (or reuses) the rootfs, creates the network, the repository and the SSH
// material, and boots every host until systemd reports running (or degraded). On error
// everything made so far is undone.
func Start(ctx context.Context, opts Options) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("nspawn lab needs root")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Prefix == "" {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		opts.Prefix = "vn" + hex.EncodeToString(b)[:5]
	}
	if len(opts.Prefix) > 8 {
		return nil, fmt.Errorf("prefix %q: at most 8 characters (interface names are limited to 15)", opts.Prefix)
	}
	if opts.Subnet == "" {
		opts.Subnet = "10.77.0.0/24"
	}
	subnet, err := netip.ParsePrefix(opts.Subnet)
	if err != nil || !subnet.Addr().Is4() || subnet.Bits() > 24 {
		return nil, fmt.Errorf("subnet %q: want an IPv4 prefix of /24 or larger", opts.Subnet)
	}
	subnet = subnet.Masked()
	if len(opts.Hosts) == 0 || len(opts.Hosts) > 80 {
		return nil, fmt.Errorf("hosts: want 1..80, got %d", len(opts.Hosts))
	}
	seen := map[string]bool{}
	for _, h := range opts.Hosts {
		if h.Name == "" || seen[h.Name] || strings.ContainsAny(h.Name, "/ \t") {
			return nil, fmt.Errorf("host name %q: empty, duplicate or invalid", h.Name)
		}
		seen[h.Name] = true
	}
	if opts.CacheDir == "" {
		opts.CacheDir = DefaultCacheDir
	}
	var extra []string
	if opts.K8s != nil {
		extra = KubernetesNodePackages
	}
	lower, err := EnsureRootfs(ctx, opts.Log, opts.CacheDir, extra...)
	if err != nil {
		return nil, err
	}
	reapStale(opts.Log)
	dir, err := os.MkdirTemp("/var/tmp", "vipd-lab-"+opts.Prefix+"-")
	if err != nil {
		return nil, fmt.Errorf("create lab dir: %w", err)
	}
	l := &Lab{
		Prefix:       opts.Prefix,
		Dir:          dir,
		Subnet:       subnet,
		BridgeNS:     opts.Prefix + "-br",
		OperatorNS:   opts.Prefix + "-op",
		OperatorAddr: nthAddr(subnet, 2),
		VIP:          netip.PrefixFrom(nthAddr(subnet, 100), subnet.Bits()).String(),
		OpsUser:      "ops",
		log:          opts.Log,
		opts:         opts,
		lower:        lower,
	}
	for i, h := range opts.Hosts {
		l.Hosts = append(l.Hosts, &Host{
			Name:     h.Name,
			Role:     h.Role,
			Addr:     nthAddr(subnet, 11+i),
			NetNS:    fmt.Sprintf("%s-h%d", opts.Prefix, i+1),
			dir:      filepath.Join(dir, "hosts", h.Name),
			machName: opts.Prefix + "-" + h.Name,
		})
	}
	if err := l.start(ctx); err != nil {
		if cerr := l.Close(); cerr != nil {
			opts.Log.Warn("lab cleanup after failed start", "err", cerr)
		}
		return nil, err
	}
	return l, nil
}

func (l *Lab) start(ctx context.Context) error {
	t0 := time.Now()
	if err := l.makeSSHMaterial(ctx); err != nil {
		return err
	}
	if err := l.makeRepos(ctx); err != nil {
		return err
	}
	if err := l.makeNetwork(ctx); err != nil {
		return err
	}
	if err := l.serveHTTP(); err != nil {
		return err
	}
	t1 := time.Now()
	errs := make(chan error, len(l.Hosts))
	for _, h := range l.Hosts {
		go func(h *Host) { errs <- l.bootHost(ctx, h) }(h)
	}
	var firstErr error
	for range l.Hosts {
		if err := <-errs; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return firstErr
	}
	l.log.Info("lab up", "hosts", len(l.Hosts), "prepare", t1.Sub(t0).Round(time.Millisecond),
		"boot", time.Since(t1).Round(time.Millisecond))
	return nil
}

// Host returns the host with this name, or nil.
func (l *Lab) Host(name string) *Host {
	for _, h := range l.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// HostsByRole returns the hosts of a role in lab order.
func (l *Lab) HostsByRole(role string) []*Host {
	var out []*Host
	for _, h := range l.Hosts {
		if h.Role == role {
			out = append(out, h)
		}
	}
	return out
}

// RepoURL returns the flat apt repository URL of a repo served by the lab.
func (l *Lab) RepoURL(name string) string { return l.HTTPBase + name + "/" }

// RepoKeyURL returns the URL of the ASCII-armored key that signs the repositories.
func (l *Lab) RepoKeyURL(name string) string { return l.HTTPBase + name + "/Release.key" }

// FileURL returns the URL of a file given in Options.Files.
func (l *Lab) FileURL(name string) string { return l.HTTPBase + "files/" + name }

// Close stops every host (SIGTERM to its nspawn process, by PID), unmounts, removes
// cgroups, namespaces and (unless KeepDir) the lab directory. It is safe after a partial
// Start and safe to call twice.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, h := range l.Hosts {
		wg.Add(1)
		go func(h *Host) {
			defer wg.Done()
			if err := l.stopHost(h); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}(h)
	}
	wg.Wait()
	if l.srv != nil {
		_ = l.srv.Close()
	}
	if l.gpgHome != "" {
		_ = exec.Command("gpgconf", "--homedir", l.gpgHome, "--kill", "all").Run()
	}
	for i := len(l.netns) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "delete", l.netns[i]).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("delete netns %s: %w: %s", l.netns[i], err, tail(out)))
		}
	}
	if !l.opts.KeepDir && l.Dir != "" {
		if err := os.RemoveAll(l.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove lab dir: %w", err))
		}
	}
	return errors.Join(errs...)
}

// nthAddr returns the n-th address of a subnet.
func nthAddr(p netip.Prefix, n int) netip.Addr {
	b := p.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// run runs a command on the root host, returning its combined output in the error.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tail(out))
	}
	return nil
}

// DialContext dials from inside the operator namespace (for HTTP clients in tests).
func (l *Lab) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetNS(l.OperatorNS, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// HTTPClient returns a client whose connections start in the operator namespace.
func (l *Lab) HTTPClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: l.DialContext, DisableKeepAlives: true}}
}
