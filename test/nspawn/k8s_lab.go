package nspawn

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Real-Kubernetes mode (Options.K8s): what a guest needs so that the real kubelet,
// containerd and runc work inside systemd-nspawn on this kind of machine. Every item is a
// LAB workaround for the container the host is, never something bootstrap does; each says
// which failure it prevents.
//
//   - cgroups: the machine binds every controller to cgroup v1 (its cgroup2 hierarchy has
//     none), so a pure-cgroup2 guest has no cpu, memory or pids controller and runc fails
//     for every pod. k8s guests boot with the legacy layout
//     (SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=0) inside a cgroup of their own in every v1
//     hierarchy (made under this process's own cgroup, a cpuset one with its parent's cpus
//     and mems); nspawn mounts them read-only and the prep unit remounts them rw (the
//     cgroup namespace makes the host's own cgroup the guest's root, so that is safe).
//     kubelet 1.33 still accepts cgroup v1.
//   - SYSTEMD_SECCOMP=0 and --capability=all: nspawn's syscall filter blocks keyctl (runc:
//     "unable to join session keyring"); the CNI plugins need CAP_NET_ADMIN, mounts
//     CAP_SYS_ADMIN, /dev/kmsg CAP_SYSLOG.
//   - --bind-ro=/dev/kmsg: kubelet's OOM watcher opens it and kubelet exits without it.
//   - /var/lib/containerd and /var/lib/kubelet are bind-mounted from ext4 directories of the
//     lab: overlayfs snapshots cannot live on the guest's overlay root.
//   - the runc wrapper /usr/local/sbin/runc (first in containerd's PATH): this machine has
//     no CAP_SYS_RESOURCE, so runc cannot write the negative oom_score_adj the kubelet asks
//     for (-998 for sandboxes); the wrapper rewrites negative values to 0 in the bundle.
//   - sysctls: with protectKernelDefaults=false kubelet WRITES vm.overcommit_memory=1,
//     kernel.panic=10, kernel.panic_on_oops=1 (host-global, read-only here) and exits if it
//     cannot; the prep unit bind-mounts read-only files holding those values over them, so
//     kubelet reads what it wants and the host is untouched.
//   - /lib/modules: the kernel has no loadable modules; the prep unit declares the built-in
//     br_netfilter, overlay and nf_conntrack in modules.builtin so `modprobe` succeeds as it
//     would on a real host, and kube-proxy's hostPath /lib/modules exists.
//   - images: containerd's unit gets an ExecStartPost that imports the lab's image tarballs
//     (bind-mounted read-only at /var/lib/vipd-lab/images) once: there is no registry.
const (
	k8sGuestImages = "/var/lib/vipd-lab/images"
	k8sPrepScript  = `#!/bin/sh
# vipd lab (real-Kubernetes mode): make this nspawn guest able to run the kubelet.
set -eu
for d in /sys/fs/cgroup/*; do
  [ "$(stat -fc %T "$d")" = cgroupfs ] || continue
  case $d in */systemd|*/unified) continue;; esac
  mount -o remount,bind,rw "$d"
done
mkdir -p /run/vipd-lab/sysctl
fake() { f=/run/vipd-lab/sysctl/$(echo "$1" | tr / _); echo "$2" > "$f"
  grep -q " /proc/sys/$1 " /proc/self/mountinfo || mount --bind -o ro "$f" "/proc/sys/$1"; }
fake vm/overcommit_memory 1
fake vm/panic_on_oom 0
fake kernel/panic 10
fake kernel/panic_on_oops 1
fake kernel/keys/root_maxkeys 1000000
fake kernel/keys/root_maxbytes 25000000
V=$(uname -r)
if [ ! -e "/lib/modules/$V/modules.builtin.bin" ]; then
  mkdir -p "/lib/modules/$V"; : > "/lib/modules/$V/modules.order"; : > "/lib/modules/$V/modules.builtin"
  [ -d /proc/sys/net/bridge ] && echo kernel/net/bridge/br_netfilter.ko >> "/lib/modules/$V/modules.builtin"
  grep -qw overlay /proc/filesystems && echo kernel/fs/overlayfs/overlay.ko >> "/lib/modules/$V/modules.builtin"
  [ -e /proc/sys/net/netfilter/nf_conntrack_max ] && echo kernel/net/netfilter/nf_conntrack.ko >> "/lib/modules/$V/modules.builtin"
  depmod "$V" 2>/dev/null || true
fi
`
	k8sPrepUnit = `[Unit]
Description=vipd lab: make the nspawn guest kubelet-capable (real-Kubernetes mode)
DefaultDependencies=no
After=local-fs.target
Before=containerd.service kubelet.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/vipd-lab-k8s-prep

[Install]
WantedBy=multi-user.target
`
	k8sRuncWrapper = `#!/bin/sh
# vipd lab: this machine has no CAP_SYS_RESOURCE, so runc cannot write a negative
# oom_score_adj. Clamp it to 0 in the bundle, then run Debian's runc.
b=""; prev=""
for a in "$@"; do case $prev in --bundle|-b) b=$a;; esac; prev=$a; done
[ -n "$b" ] && [ -f "$b/config.json" ] && sed -i -E 's/"oomScoreAdj":-[0-9]+/"oomScoreAdj":0/' "$b/config.json"
exec /usr/sbin/runc "$@"
`
	k8sImportScript = `#!/bin/sh
# vipd lab: import the lab's image tarballs into containerd once (no registry here).
set -eu
stamp=/var/lib/containerd/.vipd-lab-images
want=$(ls -l ` + k8sGuestImages + `/*.tar | md5sum | cut -d' ' -f1)
[ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && exit 0
for i in $(seq 1 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
for f in ` + k8sGuestImages + `/*.tar; do ctr -n k8s.io images import "$f" >/dev/null; done
echo "$want" > "$stamp"
`
	k8sContainerdDropIn = `# vipd lab (real-Kubernetes mode): guest prep first; images imported once started.
[Unit]
Requires=vipd-lab-k8s-prep.service
After=vipd-lab-k8s-prep.service

[Service]
TimeoutStartSec=600
ExecStartPost=/usr/local/sbin/vipd-lab-import-images
`
	k8sKubeletDropIn = `# vipd lab (real-Kubernetes mode)
[Unit]
Requires=vipd-lab-k8s-prep.service
After=vipd-lab-k8s-prep.service containerd.service
`
)

// k8sV1Controllers are the cgroup v1 hierarchies a k8s guest gets a cgroup of its own in.
var k8sV1Controllers = []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"}

// k8sCgroups creates the host's cgroup in every v1 controller hierarchy, under this
// process's own cgroup there, and returns their paths.
func (l *Lab) k8sCgroups(h *Host) ([]string, error) {
	own, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range k8sV1Controllers {
		root := filepath.Join("/sys/fs/cgroup", c)
		if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
			return out, fmt.Errorf("host %s: cgroup v1 controller %s is not mounted at %s (real-Kubernetes mode needs the v1 controllers)", h.Name, c, root)
		}
		parent := filepath.Join(root, own[c])
		cg := filepath.Join(parent, "vipd-lab", h.machName)
		if err := os.MkdirAll(cg, 0o755); err != nil {
			return out, fmt.Errorf("host %s: create cgroup %s: %w", h.Name, cg, err)
		}
		out = append(out, cg)
		if c == "cpuset" {
			// A new v1 cpuset is empty: no process could join it.
			for _, dir := range []string{filepath.Join(parent, "vipd-lab"), cg} {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					v, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
					if err != nil {
						return out, fmt.Errorf("host %s: read %s: %w", h.Name, f, err)
					}
					if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
						return out, fmt.Errorf("host %s: write %s/%s: %w", h.Name, dir, f, err)
					}
				}
			}
		}
	}
	return out, nil
}

// ownCgroups maps each v1 controller to this process's cgroup path in it.
func ownCgroups() (map[string]string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read own cgroups: %w", err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			m[c] = parts[2]
		}
	}
	return m, sc.Err()
}

// k8sNspawnArgs are the extra systemd-nspawn arguments of a k8s guest.
func (l *Lab) k8sNspawnArgs(h *Host) ([]string, error) {
	var args []string
	for _, d := range []string{"containerd", "kubelet"} {
		p := filepath.Join(h.dir, "var-lib-"+d)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, fmt.Errorf("host %s: create %s: %w", h.Name, p, err)
		}
		args = append(args, "--bind="+p+":/var/lib/"+d)
	}
	args = append(args, "--capability=all", "--bind-ro=/dev/kmsg")
	if l.opts.K8sNoImages {
		return args, nil
	}
	return append(args, "--bind-ro="+l.opts.K8s.ImageDir+":"+k8sGuestImages), nil
}

// writeK8sGuestFiles writes the lab-only units and scripts into the host's upper layer.
func (l *Lab) writeK8sGuestFiles(h *Host) error {
	files := []struct {
		path, data string
		mode       os.FileMode
	}{
		{"/usr/local/sbin/vipd-lab-k8s-prep", k8sPrepScript, 0o755},
		{"/etc/systemd/system/vipd-lab-k8s-prep.service", k8sPrepUnit, 0o644},
		{"/usr/local/sbin/runc", k8sRuncWrapper, 0o755},
		{"/usr/local/sbin/vipd-lab-import-images", k8sImportScript, 0o755},
		{"/etc/systemd/system/containerd.service.d/50-vipd-lab.conf", k8sContainerdDropIn, 0o644},
		{"/etc/systemd/system/kubelet.service.d/50-vipd-lab.conf", k8sKubeletDropIn, 0o644},
	}
	if l.opts.K8sNoImages {
		// No image import: containerd starts empty, after the prep unit.
		files[3].data = "#!/bin/sh\n# vipd lab: images come from bootstrap's image bundle\nexit 0\n"
	}
	for _, f := range files {
		p := filepath.Join(h.merged, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(f.path), err)
		}
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			return fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	wants := filepath.Join(h.merged, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return fmt.Errorf("create multi-user.target.wants: %w", err)
	}
	link := filepath.Join(wants, "vipd-lab-k8s-prep.service")
	_ = os.Remove(link)
	if err := os.Symlink("/etc/systemd/system/vipd-lab-k8s-prep.service", link); err != nil {
		return fmt.Errorf("enable vipd-lab-k8s-prep: %w", err)
	}
	return nil
}

// HostMemory returns a k8s host's memory use from its v1 memory cgroup (memory.stat's
// total_rss and total_cache, bytes): every process of the guest, containers included.
func (l *Lab) HostMemory(name string) (rss, cache uint64, err error) {
	h := l.Host(name)
	if h == nil {
		return 0, 0, fmt.Errorf("no lab host %q", name)
	}
	for _, cg := range h.cgroups {
		if !strings.HasPrefix(cg, "/sys/fs/cgroup/memory/") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(cg, "memory.stat"))
		if err != nil {
			return 0, 0, fmt.Errorf("host %s: %w", name, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			var v uint64
			if f := strings.Fields(line); len(f) == 2 {
				fmt.Sscan(f[1], &v)
				switch f[0] {
				case "total_rss":
					rss = v
				case "total_cache":
					cache = v
				}
			}
		}
		return rss, cache, nil
	}
	return 0, 0, fmt.Errorf("host %s has no memory cgroup of its own (real-Kubernetes mode only)", name)
}
