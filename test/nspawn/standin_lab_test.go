package nspawn

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vipd-project/vipd/test/standin"
)

// TestStandinCluster drives the stand-in kubeadm/kubelet/kubectl by hand (as bootstrap
// would) on three simulated hosts: packages from the lab repo, init, CNI, a control-plane
// join, a worker join, state shared between the masters, an injected join failure, reset.
func TestStandinCluster(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, systemd-nspawn)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	log := testLogger(t)
	debs, err := standin.BuildDebs(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := DebianDebs(ctx, "", "containerd", "runc")
	if err != nil {
		t.Fatal(err)
	}
	l, err := Start(ctx, Options{Hosts: []HostSpec{{"m1", "master"}, {"m2", "master"}, {"w1", "worker"}}, Log: log,
		Repos: []Repo{{Name: "k8s", Debs: debs}, {Name: "debian", Debs: ctr}},
		Files: map[string][]byte{"calico.yaml": []byte(standin.CalicoManifest)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	m1, m2 := l.Host("m1"), l.Host("m2")
	sh := func(host, script string) string {
		t.Helper()
		out, err := l.Exec(ctx, host, "bash", "-c", script)
		if err != nil {
			j, _ := l.Exec(ctx, host, "journalctl", "--no-pager", "-n", "40", "-u", "kubelet")
			t.Fatalf("%v\n%s\nkubelet journal on %s:\n%s", err, out, host, j)
		}
		return string(out)
	}
	prep := fmt.Sprintf(`set -e
install -d /etc/apt/keyrings
curl -fsS %s | gpg --dearmor -o /etc/apt/keyrings/k8s.gpg
curl -fsS %s | gpg --dearmor -o /etc/apt/keyrings/ctr.gpg
echo "deb [signed-by=/etc/apt/keyrings/k8s.gpg] %s /" > /etc/apt/sources.list.d/k8s.list
echo "deb [signed-by=/etc/apt/keyrings/ctr.gpg] %s /" > /etc/apt/sources.list.d/ctr.list
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q containerd kubelet=%[5]s kubeadm=%[5]s kubectl=%[5]s >/dev/null
apt-mark hold kubelet kubeadm kubectl >/dev/null
sysctl -qw net.ipv4.ip_forward=1
for i in $(seq 50); do test -S /run/containerd/containerd.sock && break; sleep 0.2; done
kubelet --version
`, l.RepoKeyURL("k8s"), l.RepoKeyURL("debian"), l.RepoURL("k8s"), l.RepoURL("debian"), standin.DebVersion)
	t0 := time.Now()
	for _, h := range l.Hosts {
		if out := sh(h.Name, prep); !strings.Contains(out, "stand-in") {
			t.Errorf("%s: kubelet --version = %q", h.Name, out)
		}
	}
	t.Logf("packages installed on 3 hosts in %v", time.Since(t0).Round(time.Millisecond))

	// Without ip_forward a real kubeadm refuses to init; so does the stand-in.
	sh("m1", "sysctl -qw net.ipv4.ip_forward=0")
	if out, err := l.Exec(ctx, "m1", "kubeadm", "init", "--apiserver-advertise-address", m1.Addr.String()); err == nil || !strings.Contains(string(out), "ip_forward") {
		t.Errorf("kubeadm init with ip_forward=0: %v\n%s", err, out)
	}
	sh("m1", "sysctl -qw net.ipv4.ip_forward=1")

	cfg := fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: %s
  bindPort: 6443
nodeRegistration:
  name: m1
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.33.6
controlPlaneEndpoint: "%s:6443"
networking:
  podSubnet: 10.10.0.0/16
`, m1.Addr, m1.Addr)
	if err := l.WriteFile("m1", "/root/kubeadm.yaml", []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	out := sh("m1", "kubeadm init --config /root/kubeadm.yaml --upload-certs")
	t.Logf("kubeadm init in %v", time.Since(t1).Round(time.Millisecond))
	key := regexp.MustCompile(`(?m)^([0-9a-f]{64})$`).FindStringSubmatch(out)
	if key == nil {
		t.Fatalf("no certificate key in kubeadm init output:\n%s", out)
	}
	join := strings.TrimSpace(sh("m1", "kubeadm token create --ttl 1h --print-join-command"))
	if !strings.HasPrefix(join, "kubeadm join "+m1.Addr.String()+":6443 --token ") {
		t.Fatalf("join command %q", join)
	}
	if out, err := l.Exec(ctx, "m1", "kubeadm", "init", "--config", "/root/kubeadm.yaml", "--upload-certs"); err == nil || !strings.Contains(string(out), "[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]") {
		t.Errorf("second kubeadm init: %v\n%s", err, out)
	}
	sh("m1", "kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f "+l.FileURL("calico.yaml"))
	sh("m1", "kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system rollout status daemonset/calico-node --timeout=60s")

	// An injected failure makes the next join fail once, then it succeeds.
	sh("m2", "mkdir -p /var/lib/standin/fail-once && touch /var/lib/standin/fail-once/join")
	cpJoin := join + fmt.Sprintf(" --control-plane --certificate-key %s --apiserver-advertise-address %s --node-name m2", key[1], m2.Addr)
	if out, err := l.Exec(ctx, "m2", "bash", "-c", cpJoin); err == nil || !strings.Contains(string(out), "fail-once") {
		t.Errorf("join with an injected failure: %v\n%s", err, out)
	}
	sh("m2", cpJoin)
	sh("w1", join+" --node-name w1")
	nodes := sh("m1", "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes --no-headers")
	for _, n := range []string{"m1", "m2", "w1"} {
		if !regexp.MustCompile(`(?m)^` + n + `\s+Ready\s`).MatchString(nodes) {
			t.Errorf("node %s not Ready:\n%s", n, nodes)
		}
	}
	// m2's apiserver holds the cluster state too: stop m1's kubelet (and its apiserver).
	sh("m1", "systemctl stop kubelet")
	nodes = sh("m2", "kubectl --kubeconfig /etc/kubernetes/admin.conf --server https://"+m2.Addr.String()+":6443 get nodes")
	if strings.Count(nodes, " Ready ") != 3 {
		t.Errorf("m2's apiserver with m1 down:\n%s", nodes)
	}
	sh("m1", "systemctl start kubelet")
	sh("w1", "kubeadm reset -f")
	if _, err := l.Exec(ctx, "w1", "test", "-e", "/etc/kubernetes/kubelet.conf"); err == nil {
		t.Errorf("kubelet.conf still there after reset")
	}
	calls := sh("m2", "cat /var/log/standin/calls.log")
	if !strings.Contains(calls, "kubeadm change join") || !strings.Contains(calls, "--certificate-key <redacted>") {
		t.Errorf("calls.log on m2:\n%s", calls)
	}
}
