package nspawn

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Upstream's kubelet.service and 10-kubeadm.conf (kubernetes/release packaging).
const (
	realKubeletUnit = `[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
`
	realKubeadmDropIn = `# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# This is a file that "kubeadm init" and "kubeadm join" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should use
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
`
	reloadScript = "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\n"
)

// K8sDebVersion is the Debian version of the real packages (pkgs.k8s.io's scheme), so
// bootstrap pins them exactly as it would upstream's.
func K8sDebVersion(version string) string { return version + "-1.1" }

type debFile struct {
	src, content, dst string
	mode              os.FileMode
}

type debSpec struct {
	name, version, desc, depends string
	files                        []debFile
	scripts                      map[string]string
}

// makeK8sDebs packages the real kubelet, kubeadm, kubectl, kubernetes-cni (the CNI
// plugins) and cri-tools like pkgs.k8s.io: same names, versions, paths, units and
// dependencies.
func makeK8sDebs(ctx context.Context, bin, out, version string) error {
	_ = os.RemoveAll(out)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	dv := K8sDebVersion(version)
	cniVersion := strings.TrimPrefix(CNIPluginsVersion, "v") + "-1.1"
	var cni []debFile
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		cni = append(cni, debFile{src: filepath.Join(bin, "cni", p), dst: "opt/cni/bin/" + p, mode: 0o755})
	}
	specs := []debSpec{
		{name: "kubelet", version: dv, desc: "Node agent for Kubernetes clusters",
			depends: "iptables (>= 1.4.21), kubernetes-cni (>= 1.1.1), iproute2, socat, util-linux, mount, ebtables, ethtool, conntrack",
			files: []debFile{
				{src: filepath.Join(bin, "kubelet"), dst: "usr/bin/kubelet", mode: 0o755},
				{content: realKubeletUnit, dst: "usr/lib/systemd/system/kubelet.service", mode: 0o644},
			}, scripts: map[string]string{"postinst": reloadScript, "postrm": reloadScript}},
		{name: "kubeadm", version: dv, desc: "Command-line utility for administering a Kubernetes cluster",
			depends: "cri-tools (>= 1.30.0), kubelet (>= 1.19.0), kubectl (>= 1.13.0)",
			files: []debFile{
				{src: filepath.Join(bin, "kubeadm"), dst: "usr/bin/kubeadm", mode: 0o755},
				{content: realKubeadmDropIn, dst: "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf", mode: 0o644},
			}, scripts: map[string]string{"postinst": reloadScript}},
		{name: "kubectl", version: dv, desc: "Command-line utility for interacting with a Kubernetes cluster",
			files: []debFile{{src: filepath.Join(bin, "kubectl"), dst: "usr/bin/kubectl", mode: 0o755}}},
		{name: "kubernetes-cni", version: cniVersion, desc: "Binaries required to provision kubernetes container networking", files: cni},
		{name: "cri-tools", version: strings.TrimPrefix(CriToolsVersion, "v") + "-1.1", desc: "Command-line utility for interacting with a container runtime",
			files: []debFile{{src: filepath.Join(bin, "crictl"), dst: "usr/bin/crictl", mode: 0o755}}},
	}
	for _, s := range specs {
		if err := buildDeb(ctx, out, s); err != nil {
			return err
		}
	}
	return nil
}

func buildDeb(ctx context.Context, out string, s debSpec) error {
	root := filepath.Join(out, "pkg-"+s.name)
	defer os.RemoveAll(root)
	if err := os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755); err != nil {
		return err
	}
	for _, f := range s.files {
		dst := filepath.Join(root, f.dst)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if f.src != "" {
			if err := copyFile(f.src, dst); err != nil {
				return fmt.Errorf("package %s: %w", s.name, err)
			}
			if err := os.Chmod(dst, f.mode); err != nil {
				return fmt.Errorf("package %s: %w", s.name, err)
			}
		} else if err := os.WriteFile(dst, []byte(f.content), f.mode); err != nil {
			return fmt.Errorf("package %s: %w", s.name, err)
		}
	}
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: vipd lab <lab@vipd.invalid>\nSection: admin\nPriority: optional\nHomepage: https://kubernetes.io\n", s.name, s.version)
	if s.depends != "" {
		control += "Depends: " + s.depends + "\n"
	}
	control += "Description: " + s.desc + "\n Built from the Go module proxy by vipd's test/nspawn for the real-Kubernetes lab.\n"
	if err := os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte(control), 0o644); err != nil {
		return err
	}
	for name, body := range s.scripts {
		if err := os.WriteFile(filepath.Join(root, "DEBIAN", name), []byte(body), 0o755); err != nil {
			return err
		}
	}
	deb := filepath.Join(out, fmt.Sprintf("%s_%s_amd64.deb", s.name, s.version))
	if o, err := exec.CommandContext(ctx, "dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", root, deb).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb %s: %w: %s", s.name, err, strings.TrimSpace(string(o)))
	}
	return nil
}

// makeImages writes one docker-archive tarball per image kubeadm lists. The kube-proxy image
// carries Debian's iptables (nft variant) from the node root filesystem: kube-proxy's
// iptables mode runs it.
func makeImages(bin, out, rootfs string, im k8sImages) error {
	_ = os.RemoveAll(out)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	for _, ref := range im.all {
		m := reImage.FindStringSubmatch(ref)
		name := m[2]
		spec := imageSpec{Tags: []string{ref}}
		switch name {
		case "kube-apiserver", "kube-controller-manager", "kube-scheduler":
			spec.Entrypoint = []string{"/usr/local/bin/" + name}
			spec.Files = []imageFile{{Src: filepath.Join(bin, name), Dst: "/usr/local/bin/" + name}}
		case "kube-proxy":
			spec.Entrypoint = []string{"/usr/local/bin/kube-proxy"}
			spec.Files = []imageFile{{Src: filepath.Join(bin, name), Dst: "/usr/local/bin/" + name}}
			// One multi-call binary that dispatches on argv[0].
			for _, t := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore", "xtables-nft-multi"} {
				spec.Files = append(spec.Files, imageFile{Src: filepath.Join(rootfs, "usr/sbin/xtables-nft-multi"), Dst: "/usr/sbin/" + t})
			}
			lib := "/usr/lib/x86_64-linux-gnu"
			for _, l := range []string{"libxtables.so.12", "libmnl.so.0", "libnftnl.so.11", "libc.so.6", "libm.so.6", "libnfnetlink.so.0", "libnetfilter_conntrack.so.3"} {
				spec.Files = append(spec.Files, imageFile{Src: filepath.Join(rootfs, lib, l), Dst: lib + "/" + l, Mode: 0o644})
			}
			spec.Files = append(spec.Files, imageFile{Src: filepath.Join(rootfs, lib, "ld-linux-x86-64.so.2"), Dst: "/lib64/ld-linux-x86-64.so.2"})
			exts, _ := filepath.Glob(filepath.Join(rootfs, lib, "xtables", "*.so"))
			if len(exts) == 0 {
				return fmt.Errorf("kube-proxy image: no xtables extensions in %s (the node root filesystem needs iptables)", filepath.Join(rootfs, lib, "xtables"))
			}
			for _, x := range exts {
				spec.Files = append(spec.Files, imageFile{Src: x, Dst: lib + "/xtables/" + filepath.Base(x), Mode: 0o644})
			}
		case "etcd":
			spec.Entrypoint = []string{"/usr/local/bin/etcd"}
			spec.Files = []imageFile{{Src: filepath.Join(bin, "etcd"), Dst: "/usr/local/bin/etcd"}, {Src: filepath.Join(bin, "etcdctl"), Dst: "/usr/local/bin/etcdctl"}}
		case "pause":
			// Only kubeadm's tag, like a host that has exactly the images kubeadm lists (an
			// air-gapped one): containerd's default sandbox_image (pause:3.6 in 1.6) is not
			// there, so the node runs pods only if its sandbox_image is kubeadm's.
			spec.Entrypoint = []string{"/pause"}
			spec.Files = []imageFile{{Src: filepath.Join(bin, "pause"), Dst: "/pause"}}
		case "coredns":
			spec.Entrypoint, spec.User = []string{"/coredns"}, "65532"
			spec.Files = []imageFile{{Src: filepath.Join(bin, "coredns"), Dst: "/coredns", NetBind: true}}
		default:
			return fmt.Errorf("image %s: the lab does not know how to make it", ref)
		}
		if err := writeImage(filepath.Join(out, name+".tar"), spec); err != nil {
			return err
		}
	}
	return nil
}
