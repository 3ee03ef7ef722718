package sim

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Host paths shared by the stand-ins (the real kubeadm's, where one exists).
const (
	KubeDir       = "/etc/kubernetes"
	PKIDir        = "/etc/kubernetes/pki"
	ManifestsDir  = "/etc/kubernetes/manifests"
	APIManifest   = "/etc/kubernetes/manifests/kube-apiserver.yaml"
	AdminConf     = "/etc/kubernetes/admin.conf"
	SuperConf     = "/etc/kubernetes/super-admin.conf"
	KubeletConf   = "/etc/kubernetes/kubelet.conf"
	KubeletDir    = "/var/lib/kubelet"
	KubeletConfig = "/var/lib/kubelet/config.yaml"
	EtcdDir       = "/var/lib/etcd"
	StateFile     = "/var/lib/etcd/standin-state.json"
	StandinDir    = "/var/lib/standin"
	NodeFile      = "/var/lib/standin/node.json"
	// FailOnceDir holds fault-injection flags: a file named after a kubeadm subcommand
	// (e.g. "join") makes its next run fail once; the file is removed by that run. Its
	// content selects where: "preflight" (default), "after-kubelet-start" (a half-joined
	// node: kubelet.conf written, node not registered) or "after-etcd-member-add" (a master
	// half-joined with a stale etcd member). A "reset" flag with "etcd-member-remove" makes
	// the next kubeadm reset go on without removing the node's etcd member (only a warning,
	// as in the real kubeadm when the cluster cannot be reached).
	FailOnceDir = "/var/lib/standin/fail-once"
)

// NodeState is what kubeadm records about this host for the kubelet.
type NodeState struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Address  string `json:"address"`
	Endpoint string `json:"endpoint"`
}

// ReadNodeState reads NodeFile.
func ReadNodeState() (*NodeState, error) {
	b, err := os.ReadFile(NodeFile)
	if err != nil {
		return nil, err
	}
	var n NodeState
	if err := json.Unmarshal(b, &n); err != nil {
		return nil, fmt.Errorf("parse %s: %w", NodeFile, err)
	}
	return &n, nil
}

// ManifestArgs returns the command line of a static pod manifest written by the stand-in
// kubeadm ("    - arg" lines after "    command:").
func ManifestArgs(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var args []string
	in := false
	for _, ln := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(ln)
		if t == "command:" || t == "- command:" {
			in = true
			continue
		}
		if in {
			if !strings.HasPrefix(t, "- ") {
				break
			}
			args = append(args, strings.TrimPrefix(t, "- "))
		}
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("%s: no command", path)
	}
	return args, nil
}
