// Package standin builds the Kubernetes STAND-INS of the vipd lab (test/nspawn) and packages
// them as .deb files named and versioned like pkgs.k8s.io's (kubeadm_1.33.6-1.1_amd64.deb),
// so bootstrap's real apt path (apt-get install kubeadm=1.33.6-1.1, apt-mark hold) runs
// against a lab repository. What each stand-in does is in the doc comments of
// ./cmd/kubeadm, ./cmd/kubelet, ./cmd/kubectl and ./cmd/kube-apiserver; none of them is a
// real Kubernetes component.
//
// Packages: kubelet (/usr/bin/kubelet, the kubelet.service unit, and the stand-in
// kube-apiserver at /usr/libexec/standin/kube-apiserver: what a real kubelet would pull as
// an image), kubeadm (/usr/bin/kubeadm and the 10-kubeadm.conf drop-in; no dependencies:
// the real one's cri-tools is not shipped by the lab), kubectl (/usr/bin/kubectl).
package standin

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// DebVersion is the Debian version of the stand-in packages a cluster is built with
// (pkgs.k8s.io's scheme).
const DebVersion = "1.33.6-1.1"

// UpgradeVersion is the next minor's version of the stand-ins, also in the lab repository
// (UpgradeDebVersion), for `bootstrap upgrade`: the same programs built to report it.
const (
	UpgradeVersion    = "1.34.2"
	UpgradeDebVersion = UpgradeVersion + "-1.1"
)

const kubeletUnit = `[Unit]
Description=kubelet: The Kubernetes Node Agent (vipd lab stand-in)
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

const kubeadmDropIn = `# Note: This dropin only works with kubeadm and kubelet v1.11+ (vipd lab stand-in)
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
`

// kubelet's postinst enables the unit (the real package leaves kubelet enabled and
// crash-looping until kubeadm configures it).
const kubeletPostinst = `#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	systemctl enable kubelet.service >/dev/null 2>&1 || true
	systemctl restart kubelet.service || true
fi
`

const kubeletPostrm = `#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
`

// CalicoManifest is a small stand-in for Calico's manifest: the objects bootstrap applies
// and waits for (DaemonSet kube-system/calico-node among them).
const CalicoManifest = `# Stand-in for calico.yaml (vipd lab): same object names, no real workload.
apiVersion: v1
kind: ServiceAccount
metadata:
  name: calico-node
  namespace: kube-system
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: calico-config
  namespace: kube-system
data:
  calico_backend: bird
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: calico-node
  namespace: kube-system
spec:
  selector:
    matchLabels:
      k8s-app: calico-node
  template:
    metadata:
      labels:
        k8s-app: calico-node
    spec:
      containers:
      - name: calico-node
        image: docker.io/calico/node:v3.30.3
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: calico-kube-controllers
  namespace: kube-system
spec:
  replicas: 1
`

// BuildDebs compiles the stand-ins (go build, static) and packages kubelet, kubeadm and
// kubectl as .deb files in outDir, returning their paths: DebVersion (programs in
// outDir/bin) and UpgradeDebVersion (outDir/bin-UpgradeVersion). It needs the go tool and
// dpkg-deb.
func BuildDebs(ctx context.Context, outDir string) ([]string, error) {
	var all []string
	for _, dv := range []string{DebVersion, UpgradeDebVersion} {
		bin := filepath.Join(outDir, "bin")
		if dv != DebVersion {
			bin += "-" + UpgradeVersion
		}
		debs, err := buildDebs(ctx, outDir, bin, dv)
		if err != nil {
			return nil, err
		}
		all = append(all, debs...)
	}
	return all, nil
}

func buildDebs(ctx context.Context, outDir, bin, debVersion string) ([]string, error) {
	version := "v" + strings.SplitN(debVersion, "-", 2)[0]
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return nil, fmt.Errorf("build stand-ins: cannot locate the package source")
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", bin, err)
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-ldflags=-s -w -X github.com/vipd-project/vipd/test/standin/internal/sim.Version="+version, "-o", bin+"/",
		"./cmd/kubeadm", "./cmd/kubelet", "./cmd/kubectl", "./cmd/kube-apiserver")
	cmd.Dir = filepath.Dir(self)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build stand-ins: %w: %s", err, strings.TrimSpace(string(out)))
	}
	type file struct {
		src, content, dst string
		mode              os.FileMode
	}
	pkgs := []struct {
		name, desc, depends string
		files               []file
		scripts             map[string]string
	}{
		{"kubelet", "Node agent for Kubernetes clusters (vipd lab stand-in)", "", []file{
			{src: bin + "/kubelet", dst: "usr/bin/kubelet", mode: 0o755},
			{src: bin + "/kube-apiserver", dst: "usr/libexec/standin/kube-apiserver", mode: 0o755},
			{content: kubeletUnit, dst: "lib/systemd/system/kubelet.service", mode: 0o644},
		}, map[string]string{"postinst": kubeletPostinst, "postrm": kubeletPostrm}},
		{"kubeadm", "Command-line utility for administering a Kubernetes cluster (vipd lab stand-in)", "", []file{
			{src: bin + "/kubeadm", dst: "usr/bin/kubeadm", mode: 0o755},
			{content: kubeadmDropIn, dst: "lib/systemd/system/kubelet.service.d/10-kubeadm.conf", mode: 0o644},
		}, map[string]string{"postinst": kubeletPostrm}},
		{"kubectl", "Command-line utility for interacting with a Kubernetes cluster (vipd lab stand-in)", "", []file{
			{src: bin + "/kubectl", dst: "usr/bin/kubectl", mode: 0o755},
		}, nil},
	}
	var debs []string
	for _, p := range pkgs {
		root := filepath.Join(outDir, "pkg-"+p.name+"-"+debVersion)
		_ = os.RemoveAll(root)
		if err := os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755); err != nil {
			return nil, err
		}
		for _, f := range p.files {
			dst := filepath.Join(root, f.dst)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return nil, err
			}
			data := []byte(f.content)
			if f.src != "" {
				if data, err = os.ReadFile(f.src); err != nil {
					return nil, fmt.Errorf("package %s: %w", p.name, err)
				}
			}
			if err := os.WriteFile(dst, data, f.mode); err != nil {
				return nil, fmt.Errorf("package %s: %w", p.name, err)
			}
		}
		control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: vipd lab <lab@vipd.invalid>\nSection: misc\nPriority: optional\nHomepage: https://kubernetes.io\n", p.name, debVersion)
		if p.depends != "" {
			control += "Depends: " + p.depends + "\n"
		}
		control += "Description: " + p.desc + "\n STAND-IN built by vipd's test/standin for the simulated-host lab; not Kubernetes.\n"
		if err := os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte(control), 0o644); err != nil {
			return nil, err
		}
		for name, body := range p.scripts {
			if err := os.WriteFile(filepath.Join(root, "DEBIAN", name), []byte(body), 0o755); err != nil {
				return nil, err
			}
		}
		deb := filepath.Join(outDir, fmt.Sprintf("%s_%s_amd64.deb", p.name, debVersion))
		out, err := exec.CommandContext(ctx, "dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", root, deb).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("dpkg-deb %s: %w: %s", p.name, err, strings.TrimSpace(string(out)))
		}
		debs = append(debs, deb)
	}
	return debs, nil
}
