package nspawn

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// KubernetesVersion is the version the lab's topologies ask for: the stand-ins claim it and
// the real build (EnsureK8s) is of it.
const KubernetesVersion = "1.33.6"

// CNIPluginsVersion is the containernetworking/plugins release packaged as kubernetes-cni
// (bridge, host-local, loopback, portmap in /opt/cni/bin, where containerd's default
// configuration looks).
const CNIPluginsVersion = "v1.6.2"

// CriToolsVersion is the cri-tools release packaged as cri-tools (crictl), which
// pkgs.k8s.io's kubeadm depends on (v1.33.0 is not served by the module proxy; crictl
// speaks the same CRI v1 API).
const CriToolsVersion = "v1.34.0"

// k8sRecipe changes whenever the images or packages made from the binaries change, so
// they are remade (in seconds) while the binaries stay cached.
const k8sRecipe = "k8s-v3"

// k8sCommands are built from k8s.io/kubernetes at KubernetesVersion.
var k8sCommands = []string{"kubeadm", "kubelet", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"}

// K8sBuild is a real Kubernetes built from the Go module proxy and cached under
// CacheDir/k8s/<version>: the three node packages (plus kubernetes-cni) named and versioned
// like pkgs.k8s.io's, and the control-plane images as docker-archive tarballs named as
// `kubeadm config images list` names them.
type K8sBuild struct {
	Version  string   // "1.33.6"
	Dir      string   // CacheDir/k8s/<version>
	Bin      string   // Dir/bin: the binaries (kubectl for the operator)
	Debs     []string // kubelet, kubeadm, kubectl, kubernetes-cni, cri-tools .deb files
	ImageDir string   // holds Images
	Images   []string // docker-archive tarballs (ctr -n k8s.io images import)
}

// K8sBuildOptions tune EnsureK8s.
type K8sBuildOptions struct {
	Version  string // default KubernetesVersion
	CacheDir string // default DefaultCacheDir
	// Log receives progress (every step, and a line every 30 s while one runs).
	Log *slog.Logger
	// Nice is the niceness of the go commands (default 19: the build must not slow the
	// other users of a shared machine).
	Nice int
}

func (o *K8sBuildOptions) defaults() {
	if o.Version == "" {
		o.Version = KubernetesVersion
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Nice == 0 {
		o.Nice = 19
	}
}

// k8sDirs returns the per-version directory and the stamp that marks it complete.
func k8sDirs(o K8sBuildOptions) (dir, stamp string) {
	dir = filepath.Join(o.CacheDir, "k8s", o.Version)
	return dir, filepath.Join(dir, k8sRecipeKey()+".ok")
}

func k8sRecipeKey() string {
	h := sha256.Sum256([]byte(k8sRecipe + "\n" + strings.Join(k8sCommands, ",") + "\n" + CNIPluginsVersion + "\n" + CriToolsVersion))
	return "artifacts-" + hex.EncodeToString(h[:6])
}

// CachedK8s returns the cached build if a complete one exists (it never builds).
func CachedK8s(o K8sBuildOptions) (*K8sBuild, bool) {
	o.defaults()
	dir, stamp := k8sDirs(o)
	if _, err := os.Stat(stamp); err != nil {
		return nil, false
	}
	b, err := loadK8s(dir, o.Version)
	return b, err == nil
}

func loadK8s(dir, version string) (*K8sBuild, error) {
	b := &K8sBuild{Version: version, Dir: dir, Bin: filepath.Join(dir, "bin"), ImageDir: filepath.Join(dir, "images")}
	var err error
	if b.Debs, err = filepath.Glob(filepath.Join(dir, "debs", "*.deb")); err != nil || len(b.Debs) != 5 {
		return nil, fmt.Errorf("k8s build %s: want 5 .deb files in %s, found %d", dir, filepath.Join(dir, "debs"), len(b.Debs))
	}
	if b.Images, err = filepath.Glob(filepath.Join(b.ImageDir, "*.tar")); err != nil || len(b.Images) == 0 {
		return nil, fmt.Errorf("k8s build %s: no images in %s", dir, b.ImageDir)
	}
	return b, nil
}

// EnsureK8s returns the cached real Kubernetes, building what is missing: about 30 minutes
// on 2 busy cores the first time (the k8s binaries dominate), seconds when only the images or
// packages changed, nothing when complete. Everything comes from the Go module proxy
// (GOPROXY) and Debian (the kube-proxy image's iptables, from the node root filesystem).
// Module and build caches live under CacheDir/k8s/go, so a rerun after a failure resumes.
func EnsureK8s(ctx context.Context, o K8sBuildOptions) (*K8sBuild, error) {
	o.defaults()
	dir, stamp := k8sDirs(o)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(o.CacheDir, "k8s", ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(stamp); err == nil {
		return loadK8s(dir, o.Version)
	}
	start := time.Now()
	rootfs, err := EnsureRootfs(ctx, o.Log, o.CacheDir, KubernetesNodePackages...)
	if err != nil {
		return nil, err
	}
	g, err := newGoEnv(ctx, o)
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "bin")
	if err := g.buildKubernetes(ctx, bin); err != nil {
		return nil, err
	}
	imgs, err := imageList(ctx, bin, o.Version)
	if err != nil {
		return nil, err
	}
	if err := g.buildEtcd(ctx, bin, imgs.etcd); err != nil {
		return nil, err
	}
	if err := g.install(ctx, bin, "coredns", "github.com/coredns/coredns@"+imgs.coredns); err != nil {
		return nil, err
	}
	var cni []string
	for _, p := range []string{"main/bridge", "main/loopback", "ipam/host-local", "meta/portmap"} {
		cni = append(cni, "github.com/containernetworking/plugins/plugins/"+p+"@"+CNIPluginsVersion)
	}
	if err := g.install(ctx, filepath.Join(bin, "cni"), "bridge", cni...); err != nil {
		return nil, err
	}
	if err := g.install(ctx, bin, "crictl", "sigs.k8s.io/cri-tools/cmd/crictl@"+CriToolsVersion); err != nil {
		return nil, err
	}
	if err := g.buildPause(ctx, bin); err != nil {
		return nil, err
	}
	o.Log.Info("k8s build: images and packages")
	if err := makeImages(bin, filepath.Join(dir, "images"), rootfs, imgs); err != nil {
		return nil, err
	}
	if err := makeK8sDebs(ctx, bin, filepath.Join(dir, "debs"), o.Version); err != nil {
		return nil, err
	}
	if err := os.WriteFile(stamp, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", stamp, err)
	}
	o.Log.Info("k8s build: done", "dir", dir, "elapsed", time.Since(start).Round(time.Second))
	return loadK8s(dir, o.Version)
}

// goEnv runs the go tool with the lab's caches and the proxy.
type goEnv struct {
	o     K8sBuildOptions
	root  string // CacheDir/k8s
	proxy string // first HTTP(S) entry of GOPROXY
	env   []string
}

func newGoEnv(ctx context.Context, o K8sBuildOptions) (*goEnv, error) {
	root := filepath.Join(o.CacheDir, "k8s")
	g := &goEnv{o: o, root: root}
	out, err := exec.CommandContext(ctx, "go", "env", "GOPROXY").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOPROXY (is the go tool installed?): %w", err)
	}
	for _, p := range strings.FieldsFunc(strings.TrimSpace(string(out)), func(r rune) bool { return r == ',' || r == '|' }) {
		if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
			g.proxy = strings.TrimSuffix(p, "/")
			break
		}
	}
	if g.proxy == "" {
		return nil, fmt.Errorf("GOPROXY %q has no http(s) proxy: the k8s build needs the Go module proxy", strings.TrimSpace(string(out)))
	}
	g.env = append(os.Environ(),
		"GOMODCACHE="+filepath.Join(root, "go", "mod"), "GOCACHE="+filepath.Join(root, "go", "build"),
		"GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "CGO_ENABLED=0", "GOWORK=off")
	return g, nil
}

// run runs the go tool (niced) in dir, logging its output lines and a line every 30 s.
func (g *goEnv) run(ctx context.Context, dir, step string, args ...string) error {
	start := time.Now()
	g.o.Log.Info("k8s build: "+step, "cmd", "go "+strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "nice", append([]string{"-n", fmt.Sprint(g.o.Nice), "go"}, args...)...)
	cmd.Dir, cmd.Env = dir, g.env
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var last []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			if len(last) == 8 {
				last = last[1:]
			}
			last = append(last, line)
			if !strings.HasPrefix(line, "go: downloading") {
				g.o.Log.Info("k8s build: "+step, "go", line)
			}
		}
	}()
	if err := cmd.Start(); err != nil {
		pw.Close()
		<-done
		return fmt.Errorf("k8s build %s: start go: %w", step, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	var err error
wait:
	for {
		select {
		case err = <-waited:
			break wait
		case <-tick.C:
			g.o.Log.Info("k8s build: "+step+" still running", "elapsed", time.Since(start).Round(time.Second))
		}
	}
	pw.Close()
	<-done
	if err != nil {
		return fmt.Errorf("k8s build %s: go %s: %w: %s", step, strings.Join(args, " "), err, strings.Join(last, "\n"))
	}
	g.o.Log.Info("k8s build: "+step+" done", "elapsed", time.Since(start).Round(time.Second))
	return nil
}

// module writes a wrapper module's go.mod (only when its content changes, so go.sum and
// the resolved versions stay) and returns its directory.
func (g *goEnv) module(name, gomod string) (string, error) {
	dir := filepath.Join(g.root, "src", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	seed := filepath.Join(dir, "go.mod.seed")
	if old, err := os.ReadFile(seed); err == nil && string(old) == gomod {
		return dir, nil
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		_ = os.Remove(filepath.Join(dir, f))
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return "", fmt.Errorf("write %s/go.mod: %w", dir, err)
	}
	return dir, os.WriteFile(seed, []byte(gomod), 0o644)
}

// build compiles packages of a module directory into bin (through a temporary directory:
// a binary in bin is always complete).
func (g *goEnv) build(ctx context.Context, dir, bin, step, ldflags string, pkgs ...string) error {
	tmp := bin + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	defer os.RemoveAll(tmp)
	args := append([]string{"build", "-trimpath", "-ldflags", ldflags, "-o", tmp + "/"}, pkgs...)
	if err := g.run(ctx, dir, step, args...); err != nil {
		return err
	}
	return moveAll(tmp, bin)
}

// install runs go install pkg@version... into bin unless bin/want exists.
func (g *goEnv) install(ctx context.Context, bin, want string, pkgs ...string) error {
	if _, err := os.Stat(filepath.Join(bin, want)); err == nil {
		return nil
	}
	tmp := bin + ".tmp"
	_ = os.RemoveAll(tmp)
	defer os.RemoveAll(tmp)
	env := g.env
	g.env = append(append([]string{}, env...), "GOBIN="+tmp)
	err := g.run(ctx, g.root, "install "+want, append([]string{"install", "-trimpath", "-ldflags", "-s -w"}, pkgs...)...)
	g.env = env
	if err != nil {
		return err
	}
	return moveAll(tmp, bin)
}

func moveAll(from, to string) error {
	if err := os.MkdirAll(to, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", to, err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		return fmt.Errorf("read %s: %w", from, err)
	}
	for _, e := range ents {
		if err := os.Rename(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil {
			return fmt.Errorf("move %s: %w", e.Name(), err)
		}
	}
	return nil
}

// buildKubernetes builds k8sCommands from k8s.io/kubernetes at the version. Its go.mod
// replaces the staging modules (k8s.io/api, ...) by ./staging, which a dependency cannot
// use: a wrapper module replaces each by its v0.<minor>.<patch> release from the proxy, or,
// where the proxy does not serve that patch (it answers 403 for some), by the newest
// earlier patch it serves.
func (g *goEnv) buildKubernetes(ctx context.Context, bin string) error {
	missing := false
	for _, c := range k8sCommands {
		if _, err := os.Stat(filepath.Join(bin, c)); err != nil {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	v := "v" + g.o.Version
	upstream, err := g.fetch(ctx, "k8s.io/kubernetes/@v/"+v+".mod")
	if err != nil {
		return err
	}
	var minor, patch int
	if _, err := fmt.Sscanf(g.o.Version, "1.%d.%d", &minor, &patch); err != nil {
		return fmt.Errorf("kubernetes version %q: want 1.<minor>.<patch>", g.o.Version)
	}
	var b strings.Builder
	b.WriteString("module vipdlab/k8s\n\n")
	inReplace := false
	var replaces []string
	for _, line := range strings.Split(string(upstream), "\n") {
		t := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(t, "go ") || strings.HasPrefix(t, "godebug "):
			b.WriteString(t + "\n\n")
		case t == "replace (":
			inReplace = true
		case inReplace && t == ")":
			inReplace = false
		case inReplace && strings.Contains(t, "=> ./staging"):
			replaces = append(replaces, strings.Fields(t)[0])
		}
	}
	if len(replaces) == 0 {
		return fmt.Errorf("k8s.io/kubernetes %s: no staging replace directives in its go.mod", v)
	}
	fmt.Fprintf(&b, "require k8s.io/kubernetes %s\n\nreplace (\n", v)
	for _, m := range replaces {
		found := ""
		for p := patch; p >= 0 && found == ""; p-- {
			cand := fmt.Sprintf("v0.%d.%d", minor, p)
			if _, err := g.fetch(ctx, m+"/@v/"+cand+".info"); err == nil {
				found = cand
			}
		}
		if found == "" {
			g.o.Log.Warn("k8s build: staging module not served by the proxy at any patch; left out", "module", m)
			continue
		}
		if found != fmt.Sprintf("v0.%d.%d", minor, patch) {
			g.o.Log.Info("k8s build: staging module FALLBACK to an earlier patch (the proxy does not serve the release's)", "module", m, "version", found)
		}
		fmt.Fprintf(&b, "\t%s => %s %s\n", m, m, found)
	}
	b.WriteString(")\n")
	dir, err := g.module("k8s-"+g.o.Version, b.String())
	if err != nil {
		return err
	}
	var tools, pkgs []string
	for _, c := range k8sCommands {
		tools = append(tools, "k8s.io/kubernetes/cmd/"+c+"@"+v)
		pkgs = append(pkgs, "k8s.io/kubernetes/cmd/"+c)
	}
	if err := g.run(ctx, dir, "download k8s.io/kubernetes "+v, append([]string{"get", "-tool"}, tools...)...); err != nil {
		return err
	}
	ld := "-s -w"
	for _, p := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		ld += fmt.Sprintf(" -X %[1]s.gitVersion=%[2]s -X %[1]s.gitMajor=1 -X %[1]s.gitMinor=%[3]d -X %[1]s.gitTreeState=clean -X %[1]s.buildDate=1970-01-01T00:00:00Z", p, v, minor)
	}
	return g.build(ctx, dir, bin, "build the kubernetes binaries (the long step)", ld, pkgs...)
}

// fetch GETs a path from the module proxy.
func (g *goEnv) fetch(ctx context.Context, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.proxy+"/"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("module proxy %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("module proxy %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("module proxy %s: %s", path, resp.Status)
	}
	return body, nil
}

// k8sImages are the image references `kubeadm config images list` prints for the version.
type k8sImages struct {
	all                  []string
	etcd, coredns, pause string // versions: v3.5.24, v1.12.0, 3.10
}

var reImage = regexp.MustCompile(`^(\S+)/([a-z0-9-]+):(\S+)$`)

func imageList(ctx context.Context, bin, version string) (k8sImages, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(bin, "kubeadm"), "config", "images", "list", "--kubernetes-version", "v"+version).Output()
	if err != nil {
		return k8sImages{}, fmt.Errorf("kubeadm config images list: %w", err)
	}
	var im k8sImages
	for _, ref := range strings.Fields(string(out)) {
		m := reImage.FindStringSubmatch(ref)
		if m == nil {
			return im, fmt.Errorf("kubeadm config images list: unexpected image %q", ref)
		}
		im.all = append(im.all, ref)
		switch m[2] {
		case "etcd":
			im.etcd = "v" + strings.SplitN(m[3], "-", 2)[0]
		case "coredns":
			im.coredns = m[3]
		case "pause":
			im.pause = m[3]
		}
	}
	if im.etcd == "" || im.coredns == "" || im.pause == "" {
		return im, fmt.Errorf("kubeadm config images list: no etcd, coredns or pause image in %q", strings.TrimSpace(string(out)))
	}
	return im, nil
}

// buildEtcd builds etcd at the version kubeadm pins, and etcdctl (the upstream image has
// it; bootstrap runs it in the etcd pod to find a half-joined master's member). etcd 3.5's
// modules go together (client/v2 is numbered v2.305.N for 3.5.N). The proxy does not serve
// etcdctl/v3 for some releases (3.5.22-3.5.24 answer 403): the newest earlier 3.5 one it
// serves is built against this release's client modules.
func (g *goEnv) buildEtcd(ctx context.Context, bin, version string) error {
	_, e1 := os.Stat(filepath.Join(bin, "etcd"))
	_, e2 := os.Stat(filepath.Join(bin, "etcdctl"))
	if e1 == nil && e2 == nil {
		return nil
	}
	var maj, min, pat int
	if _, err := fmt.Sscanf(version, "v%d.%d.%d", &maj, &min, &pat); err != nil || maj != 3 || min != 5 {
		return fmt.Errorf("etcd %s: only 3.5.x is supported by this builder", version)
	}
	gomod := fmt.Sprintf(`module vipdlab/etcd

go 1.23

require go.etcd.io/etcd/server/v3 %[1]s

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 %[1]s
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 %[1]s
	go.etcd.io/etcd/client/v2 => go.etcd.io/etcd/client/v2 v2.305.%[2]d
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 %[1]s
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 %[1]s
	go.etcd.io/etcd/raft/v3 => go.etcd.io/etcd/raft/v3 %[1]s
)
`, version, pat)
	ctl := ""
	for p := pat; p >= 0 && ctl == ""; p-- {
		cand := fmt.Sprintf("v3.5.%d", p)
		if _, err := g.fetch(ctx, "go.etcd.io/etcd/etcdctl/v3/@v/"+cand+".info"); err == nil {
			ctl = cand
		}
	}
	if ctl == "" {
		return fmt.Errorf("etcdctl: the module proxy serves no go.etcd.io/etcd/etcdctl/v3 v3.5.x up to %s", version)
	}
	if ctl != version {
		g.o.Log.Info("k8s build: etcdctl FALLBACK to an earlier release (the proxy does not serve "+version+"'s), built with "+version+"'s client modules", "version", ctl)
	}
	dir, err := g.module("etcd-"+version, gomod)
	if err != nil {
		return err
	}
	if err := g.run(ctx, dir, "download etcd "+version, "get", "-tool", "go.etcd.io/etcd/server/v3@"+version, "go.etcd.io/etcd/etcdctl/v3@"+ctl); err != nil {
		return err
	}
	for name, pkg := range map[string]string{"etcd": "go.etcd.io/etcd/server/v3", "etcdctl": "go.etcd.io/etcd/etcdctl/v3"} {
		tmp := filepath.Join(bin, name+".d")
		if err := g.build(ctx, dir, tmp, "build "+name, "-s -w", pkg); err != nil {
			return err
		}
		built, _ := filepath.Glob(filepath.Join(tmp, "*"))
		if len(built) != 1 {
			os.RemoveAll(tmp)
			return fmt.Errorf("build %s: want one binary in %s, found %d", name, tmp, len(built))
		}
		err := os.Rename(built[0], filepath.Join(bin, name))
		os.RemoveAll(tmp)
		if err != nil {
			return fmt.Errorf("build %s: %w", name, err)
		}
	}
	return nil
}

// pauseSource is the sandbox container's program: PID 1 of every pod, it reaps zombies and
// exits on SIGTERM or SIGINT.
const pauseSource = `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
`

func (g *goEnv) buildPause(ctx context.Context, bin string) error {
	if _, err := os.Stat(filepath.Join(bin, "pause")); err == nil {
		return nil
	}
	dir, err := g.module("pause", "module vipdlab/pause\n\ngo 1.22\n")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(pauseSource), 0o644); err != nil {
		return fmt.Errorf("write pause source: %w", err)
	}
	return g.build(ctx, dir, bin, "build pause", "-s -w", ".")
}
