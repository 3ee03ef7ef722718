package phases

import (
	"context"
	"fmt"
	"strings"

	"github.com/vipd-project/vipd/pkg/sshx"
	"github.com/vipd-project/vipd/pkg/topology"
)

type commonPhase struct{}

func (commonPhase) Name() string                    { return PhaseCommon }
func (commonPhase) Title() string                   { return "Prepare the Kubernetes nodes" }
func (commonPhase) Parallel() bool                  { return true }
func (commonPhase) Hosts(r *Runner) []topology.Host { return r.t.Nodes() }

const (
	modulesContent = "# Kernel modules for Kubernetes (bootstrap)\noverlay\nbr_netfilter\n"
	sysctlContent  = "# Kubernetes networking (bootstrap)\nnet.bridge.bridge-nf-call-iptables  = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\nnet.ipv4.ip_forward                 = 1\n"
)

var kubePackages = []string{"kubelet", "kubeadm", "kubectl"}

const commonProbeScript = `echo "swapon $(tail -n +2 /proc/swaps 2>/dev/null | wc -l)"
echo "fstab $(awk '$1 !~ /^#/ && $3 == "swap"' /etc/fstab 2>/dev/null | wc -l)"
for f in %s; do [ -f "$f" ] && echo "file $f $(sha256sum < "$f" | cut -d' ' -f1)"; done
for k in %s; do [ -s "$k" ] && echo "keyring $k"; done
dpkg-query -W -f='pkg ${Package} ${Version} ${db:Status-Abbrev}\n' %s 2>/dev/null
echo "held $(apt-mark showhold 2>/dev/null | tr '\n' ' ')"
grep -Eq '^\s*SystemdCgroup\s*=\s*true' /etc/containerd/config.toml 2>/dev/null && echo "cgroup systemd"
echo "containerd $(systemctl is-active containerd 2>/dev/null)"
echo "kubelet $(systemctl is-enabled kubelet 2>/dev/null)"
echo "sandbox $(sed -nE 's/^\s*sandbox_image\s*=\s*"(.*)"\s*$/\1/p' /etc/containerd/config.toml 2>/dev/null)"
command -v kubeadm >/dev/null 2>&1 && echo "pause $(kubeadm config images list --kubernetes-version v%s 2>/dev/null | grep '/pause:' | head -n 1)"
true`

type commonState struct {
	container                                                             bool
	swap, modules, sysctl, k8sKey, k8sList, ctrKey, ctrList               bool
	ctrInstall, ctrConfig, ctrStart, kubeInstall, kubeHold, kubeletEnable bool
	sandbox                                                               bool
}

func (s *commonState) aptUpdate() bool {
	return s.k8sKey || s.k8sList || s.ctrKey || s.ctrList || s.ctrInstall || s.kubeInstall
}

func (r *Runner) listLines() (k8s, ctr string) {
	k8s = "# Kubernetes " + r.t.Channel() + " packages (bootstrap)\n" + r.t.KubernetesRepoLine() + "\n"
	if repo := r.t.Packages.Containerd.Repo; repo != "" {
		ctr = "# containerd packages (bootstrap)\n" + repo + "\n"
	}
	return k8s, ctr
}

func (commonPhase) Probe(ctx context.Context, r *Runner, h topology.Host) (Status, error) {
	facts, err := r.Facts(ctx, h)
	if err != nil {
		return Status{}, err
	}
	k8sList, ctrList := r.listLines()
	files := []string{ModulesConf, SysctlConf, KubernetesList}
	if ctrList != "" {
		files = append(files, ContainerdList)
	}
	keys := []string{topology.KubernetesKeyring, topology.ContainerdKeyring}
	pkgs := append([]string{r.t.Packages.Containerd.Package}, kubePackages...)
	out, _, err := r.probe(ctx, h, "common", fmt.Sprintf(commonProbeScript, quoteAll(files), quoteAll(keys), quoteAll(pkgs), r.t.Cluster.KubernetesVersion))
	if err != nil {
		return Status{}, err
	}
	fileSHA := map[string]string{}
	keyring := map[string]bool{}
	pkgOK := map[string]string{} // package -> version, installed only
	var held []string
	var swapon, fstab string
	var cgroup, ctrActive, kubeletEnabled bool
	var sandbox, pause string
	for _, line := range strings.Split(out, "\n") {
		fs := strings.Fields(line)
		if len(fs) == 0 {
			continue
		}
		switch fs[0] {
		case "swapon":
			if len(fs) > 1 {
				swapon = fs[1]
			}
		case "fstab":
			if len(fs) > 1 {
				fstab = fs[1]
			}
		case "file":
			if len(fs) == 3 {
				fileSHA[fs[1]] = fs[2]
			}
		case "keyring":
			if len(fs) == 2 {
				keyring[fs[1]] = true
			}
		case "pkg":
			// db:Status-Abbrev: desired action (i install, h hold...) then state (i installed).
			if len(fs) >= 4 && len(fs[3]) >= 2 && fs[3][1] == 'i' {
				pkgOK[fs[1]] = fs[2]
			}
		case "held":
			held = fs[1:]
		case "cgroup":
			cgroup = true
		case "containerd":
			ctrActive = len(fs) == 2 && fs[1] == "active"
		case "kubelet":
			kubeletEnabled = len(fs) == 2 && fs[1] == "enabled"
		case "sandbox":
			if len(fs) == 2 {
				sandbox = fs[1]
			}
		case "pause":
			if len(fs) == 2 {
				pause = fs[1]
			}
		}
	}
	s := &commonState{container: facts.Container != ""}
	var todo []string
	switch {
	case s.container && fstab != "0":
		s.swap = true
		todo = append(todo, "comment out the swap lines of /etc/fstab")
	case s.container:
		if swapon != "0" {
			r.warn(h.Name, PhaseCommon, "swap is on, from the machine running this "+facts.Container+" container: a container cannot turn it off (the kubelet needs failSwapOn: false there)")
		}
	case swapon != "0" || fstab != "0":
		s.swap = true
		todo = append(todo, "turn swap off: swapoff -a; comment out the swap lines of /etc/fstab")
	}
	if fileSHA[ModulesConf] != sha([]byte(modulesContent)) {
		s.modules = true
		todo = append(todo, "load the kernel modules overlay and br_netfilter: write "+ModulesConf+"; modprobe overlay; modprobe br_netfilter")
	}
	if fileSHA[SysctlConf] != sha([]byte(sysctlContent)) {
		s.sysctl = true
		todo = append(todo, "set net.bridge.bridge-nf-call-iptables/ip6tables=1 and net.ipv4.ip_forward=1: write "+SysctlConf+"; sysctl --system")
	}
	listChanged := fileSHA[KubernetesList] != sha([]byte(k8sList))
	if !keyring[topology.KubernetesKeyring] || listChanged {
		s.k8sKey = true
		todo = append(todo, fmt.Sprintf("install the Kubernetes apt key: curl -fsSL %s | gpg --dearmor -o %s", r.t.Packages.KubernetesKey, topology.KubernetesKeyring))
	}
	if listChanged {
		s.k8sList = true
		todo = append(todo, fmt.Sprintf("add the apt source %s: %s", KubernetesList, r.t.KubernetesRepoLine()))
	}
	if ctrList != "" {
		ctrChanged := fileSHA[ContainerdList] != sha([]byte(ctrList))
		if key := r.t.Packages.Containerd.Key; key != "" && (!keyring[topology.ContainerdKeyring] || ctrChanged) {
			s.ctrKey = true
			todo = append(todo, fmt.Sprintf("install the containerd apt key: curl -fsSL %s | gpg --dearmor -o %s", key, topology.ContainerdKeyring))
		}
		if ctrChanged {
			s.ctrList = true
			todo = append(todo, fmt.Sprintf("add the apt source %s: %s", ContainerdList, r.t.Packages.Containerd.Repo))
		}
	}
	ctrPkg := r.t.Packages.Containerd.Package
	if _, ok := pkgOK[ctrPkg]; !ok {
		s.ctrInstall = true
	}
	if err := versionGuard(r.t, h, pkgOK["kubeadm"]); err != nil {
		return Status{}, err
	}
	want := r.t.Cluster.KubernetesVersion + "-"
	for _, p := range kubePackages {
		if v, ok := pkgOK[p]; !ok || !strings.HasPrefix(v, want) {
			s.kubeInstall = true
		}
	}
	heldSet := map[string]bool{}
	for _, p := range held {
		heldSet[p] = true
	}
	for _, p := range kubePackages {
		if !heldSet[p] {
			s.kubeHold = true
		}
	}
	if s.aptUpdate() {
		todo = append(todo, "apt-get update (the bootstrap-managed sources)")
	}
	if s.ctrInstall {
		todo = append(todo, "apt-get install -y "+ctrPkg)
	}
	if !cgroup || s.ctrInstall {
		s.ctrConfig = true
		todo = append(todo, "write "+ContainerdToml+" (containerd config default with SystemdCgroup = true); systemctl restart containerd")
	}
	if !ctrActive && !s.ctrConfig {
		s.ctrStart = true
		todo = append(todo, "systemctl enable --now containerd")
	}
	if s.kubeInstall {
		todo = append(todo, fmt.Sprintf("apt-get install -y kubelet=%s* kubeadm=%s* kubectl=%s* (the exact version from apt-cache madison)", want, want, want))
	}
	// containerd's default sandbox image (pause:3.6 in 1.6) is not the one kubeadm pulls and
	// lists for the version: on a host that cannot reach the registry (mirrored images only)
	// every pod sandbox would fail. Set it after kubeadm is installed, from kubeadm itself.
	if s.ctrConfig || s.kubeInstall || (pause != "" && sandbox != pause) {
		s.sandbox = true
		todo = append(todo, fmt.Sprintf("set containerd's sandbox_image to kubeadm's pause image (kubeadm config images list --kubernetes-version v%s); systemctl restart containerd if it changed", r.t.Cluster.KubernetesVersion))
	}
	if s.kubeHold || s.kubeInstall {
		s.kubeHold = true
		todo = append(todo, "apt-mark hold kubelet kubeadm kubectl")
	}
	if !kubeletEnabled {
		s.kubeletEnable = true
		todo = append(todo, "systemctl enable kubelet")
	}
	if len(todo) == 0 {
		return Status{Done: true, Detail: fmt.Sprintf("already prepared (swap off, modules, sysctls, %s, kubelet/kubeadm/kubectl %s held)", ctrPkg, pkgOK["kubeadm"])}, nil
	}
	return Status{Todo: todo, data: s}, nil
}

// aptLockWait bounds how long an apt or dpkg command waits for another one (unattended-upgrades,
// or an apt-get still running after bootstrap was killed during the common phase) to release
// the dpkg and apt locks, in seconds.
const aptLockWait = 300

var aptInstall = fmt.Sprintf("DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=%d -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold", aptLockWait)

// aptRun wraps apt-get and apt-mark commands so that a held lock is waited for (up to
// aptLockWait seconds) instead of failing the phase: DPkg::Lock::Timeout covers dpkg's lock for
// apt-get install, but apt-get update and apt-mark do not honour it, so a lock failure is
// retried every second. A dpkg run left half-done by an interrupted apt-get is finished first
// (dpkg --configure -a). Other failures are returned at once with their output.
func aptRun(cmd string) string {
	return fmt.Sprintf(`end=$(( $(date +%%s) + %d ))
while :; do
  out=$( { %s; } 2>&1 ) && { printf '%%s\n' "$out"; exit 0; }
  rc=$?
  case "$out" in
  *"dpkg was interrupted"*) DEBIAN_FRONTEND=noninteractive dpkg --configure -a >&2 || true ;;
  *"Could not get lock"*|*"Unable to lock"*|*"Unable to acquire the dpkg frontend lock"*|*"locked by another process"*) ;;
  *) printf '%%s\n' "$out" >&2; exit $rc ;;
  esac
  if [ "$(date +%%s)" -ge "$end" ]; then printf 'gave up waiting %ds for the apt/dpkg lock:\n%%s\n' "$out" >&2; exit $rc; fi
  sleep 1
done`, aptLockWait, cmd, aptLockWait)
}

func fetchKey(url, keyring string) string {
	return fmt.Sprintf("install -d -m 0755 /etc/apt/keyrings && curl -fsSL --retry 3 -o %[2]s.asc.tmp %[1]s && gpg --batch --yes --dearmor -o %[2]s.tmp %[2]s.asc.tmp && rm -f %[2]s.asc.tmp && chmod 0644 %[2]s.tmp && mv -f %[2]s.tmp %[2]s",
		sshx.Quote(url), sshx.Quote(keyring))
}

func (commonPhase) Run(ctx context.Context, r *Runner, h topology.Host, st Status) (string, error) {
	s := st.data.(*commonState)
	k8sList, ctrList := r.listLines()
	var done []string
	if s.swap {
		cmd := `sed -ri '/^\s*[^#[:space:]]\S*\s+\S+\s+swap\s/s/^/#/' /etc/fstab`
		if !s.container {
			cmd = "swapoff -a && " + cmd
		}
		if _, err := r.change(ctx, h, "common/swap", cmd); err != nil {
			return "", err
		}
		done = append(done, "swap off")
	}
	if s.modules {
		if err := r.upload(ctx, h, ModulesConf, []byte(modulesContent), 0o644, "root:root"); err != nil {
			return "", err
		}
		out, err := r.change(ctx, h, "common/modules", `for m in overlay br_netfilter; do modprobe "$m" 2>/dev/null || { [ -d "/sys/module/$m" ] || echo "$m"; }; done`)
		if err != nil {
			return "", err
		}
		if miss := strings.Fields(out); len(miss) > 0 {
			r.warn(h.Name, PhaseCommon, fmt.Sprintf("modprobe %s failed and the module is not loaded (a container cannot load modules; the host must provide them)", strings.Join(miss, ", ")))
		}
		done = append(done, "modules")
	}
	if s.sysctl {
		if err := r.upload(ctx, h, SysctlConf, []byte(sysctlContent), 0o644, "root:root"); err != nil {
			return "", err
		}
		if _, err := r.change(ctx, h, "common/sysctl", "sysctl --system"); err != nil {
			// Expected in a container (kernel.* and fs.* keys are read-only there); kubeadm's
			// preflight checks the keys Kubernetes needs.
			detail := oneLine(err.Error())
			if se := stderrOf(err); se != "" {
				detail = strings.SplitN(se, "\n", 2)[0]
			}
			r.warn(h.Name, PhaseCommon, "sysctl --system reported errors: "+detail)
		}
		done = append(done, "sysctls")
	}
	if s.k8sKey {
		if _, err := r.change(ctx, h, "common/kubernetes-key", fetchKey(r.t.Packages.KubernetesKey, topology.KubernetesKeyring)); err != nil {
			return "", err
		}
	}
	if s.k8sList {
		if err := r.upload(ctx, h, KubernetesList, []byte(k8sList), 0o644, "root:root"); err != nil {
			return "", err
		}
	}
	if s.ctrKey {
		if _, err := r.change(ctx, h, "common/containerd-key", fetchKey(r.t.Packages.Containerd.Key, topology.ContainerdKeyring)); err != nil {
			return "", err
		}
	}
	if s.ctrList {
		if err := r.upload(ctx, h, ContainerdList, []byte(ctrList), 0o644, "root:root"); err != nil {
			return "", err
		}
	}
	if s.aptUpdate() {
		// With a containerd source of its own, only the sources bootstrap manages are
		// refreshed (air-gapped hosts have unreachable OS sources); otherwise everything.
		cmd := "apt-get update -q"
		if ctrList != "" {
			var parts []string
			for _, l := range []string{KubernetesList, ContainerdList} {
				parts = append(parts, "apt-get update -q -o Dir::Etc::sourcelist="+l+" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0")
			}
			cmd = strings.Join(parts, " && ")
		}
		if _, err := r.change(ctx, h, "common/apt-update", aptRun(cmd)); err != nil {
			return "", err
		}
	}
	ctrPkg := r.t.Packages.Containerd.Package
	if s.ctrInstall {
		if _, err := r.change(ctx, h, "common/containerd-install", aptRun(aptInstall+" "+sshx.Quote(ctrPkg))); err != nil {
			return "", err
		}
		done = append(done, ctrPkg)
	}
	if s.ctrConfig {
		cmd := `install -d -m 0755 /etc/containerd && containerd config default > /etc/containerd/config.toml.tmp && ` +
			`sed -ri 's/^(\s*)SystemdCgroup\s*=\s*false/\1SystemdCgroup = true/' /etc/containerd/config.toml.tmp && ` +
			`{ grep -Eq '^\s*SystemdCgroup\s*=\s*true' /etc/containerd/config.toml.tmp || { echo "containerd config default has no SystemdCgroup option to set" >&2; rm -f /etc/containerd/config.toml.tmp; exit 1; }; } && ` +
			`mv -f /etc/containerd/config.toml.tmp /etc/containerd/config.toml && systemctl enable containerd && systemctl restart containerd`
		if _, err := r.change(ctx, h, "common/containerd-config", cmd); err != nil {
			return "", err
		}
		done = append(done, "SystemdCgroup")
	}
	if s.ctrStart {
		if _, err := r.change(ctx, h, "common/containerd-start", "systemctl enable --now containerd"); err != nil {
			return "", err
		}
	}
	if s.kubeInstall {
		v := r.t.Cluster.KubernetesVersion
		out, _, err := r.probe(ctx, h, "common/kubernetes-version", fmt.Sprintf(`apt-cache madison kubeadm | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -E '^%s-' | head -n 1`, strings.ReplaceAll(v, ".", `\.`)))
		if err != nil {
			return "", err
		}
		exact := strings.TrimSpace(out)
		if exact == "" {
			return "", &StepError{Step: "find kubeadm " + v, Err: fmt.Errorf("apt-cache madison kubeadm lists no %s-* version", v),
				Fix: fmt.Sprintf("check packages.kubernetesRepo (%s): it must carry the %s channel", r.t.Packages.KubernetesRepo, r.t.Channel())}
		}
		var pins []string
		for _, p := range kubePackages {
			pins = append(pins, p+"="+exact)
		}
		cmd := "apt-mark unhold kubelet kubeadm kubectl >/dev/null 2>&1; " + aptRun(aptInstall+" --allow-change-held-packages --allow-downgrades "+strings.Join(pins, " "))
		if _, err := r.change(ctx, h, "common/kubernetes-install", cmd); err != nil {
			return "", err
		}
		done = append(done, "kubelet/kubeadm/kubectl "+exact)
	}
	if s.kubeHold {
		if _, err := r.change(ctx, h, "common/hold", aptRun("apt-mark hold kubelet kubeadm kubectl")); err != nil {
			return "", err
		}
	}
	if s.sandbox {
		out, err := r.change(ctx, h, "common/sandbox-image", fmt.Sprintf(sandboxScript, r.t.Cluster.KubernetesVersion))
		if err != nil {
			return "", err
		}
		if p := strings.TrimSpace(out); p != "" {
			done = append(done, "sandbox_image "+p)
		}
	}
	if s.kubeletEnable {
		if _, err := r.change(ctx, h, "common/kubelet-enable", "systemctl enable kubelet"); err != nil {
			return "", err
		}
	}
	if len(done) == 0 {
		done = append(done, "finished")
	}
	return "prepared: " + strings.Join(done, ", "), nil
}

// quoteAll quotes each word for the shell and joins them with spaces.
func quoteAll(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = sshx.Quote(w)
	}
	return strings.Join(q, " ")
}

// sandboxScript points containerd's sandbox_image at the pause image kubeadm uses for the
// version (printed when it changed it); nothing when kubeadm names none or it is set.
const sandboxScript = `pause=$(kubeadm config images list --kubernetes-version v%s 2>/dev/null | grep '/pause:' | head -n 1)
[ -n "$pause" ] || exit 0
grep -Eq "^\s*sandbox_image\s*=\s*\"$pause\"\s*$" /etc/containerd/config.toml && exit 0
sed -ri "s|^(\s*)sandbox_image\s*=.*|\1sandbox_image = \"$pause\"|" /etc/containerd/config.toml
grep -Eq "^\s*sandbox_image\s*=\s*\"$pause\"\s*$" /etc/containerd/config.toml || { echo "no sandbox_image line to set in /etc/containerd/config.toml" >&2; exit 1; }
systemctl restart containerd && echo "$pause"`

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
