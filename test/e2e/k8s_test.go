package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vipd-project/vipd/test/nspawn"
)

// TestRealKubernetes builds a REAL Kubernetes cluster with bootstrap: 2 lb hosts running
// vipd, 3 masters and 1 worker (Debian 12 under systemd-nspawn, test/nspawn's
// real-Kubernetes mode) with the real kubeadm, kubelet, kubectl, kube-apiserver, etcd,
// CoreDNS and kube-proxy of `make k8s-lab`, served from the lab's signed apt repository
// like pkgs.k8s.io's, containerd and runc from Debian, the bridge CNI, and the control-plane
// endpoint on vipd's VIP. It checks what a user would: the real kubectl through the VIP lists
// 4 Ready nodes, every kube-system pod runs and is ready, a Service's ClusterIP reaches a pod
// on another node, a second `up` changes nothing, `bootstrap drill` passes against the
// real apiservers, `bootstrap status` shows every node Ready, and `bootstrap reset` leaves
// no cluster, CNI file or pod route behind. Air-gapped: the lab imports no image, the
// topology names an image bundle made by `bootstrap bundle`, and up imports it. Kill and
// rerun (k8s_kill_test.go): the first up is killed inside master2's control-plane kubeadm
// join, the last one at a random point after a reset; each is repaired by one rerun.
//
// It skips unless the real build is cached (make k8s-lab) or VIPD_K8S is set (then it
// builds it first: about 30 minutes on 2 busy cores); VIPD_K8S=0 skips it even when cached.
// `make test-k8s` runs it.
func TestRealKubernetes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, systemd-nspawn)")
	}
	if os.Getenv("VIPD_K8S") == "0" {
		t.Skip("VIPD_K8S=0: the real-Kubernetes lab is turned off")
	}
	b, cached := nspawn.CachedK8s(nspawn.K8sBuildOptions{})
	if !cached && os.Getenv("VIPD_K8S") == "" {
		t.Skip("no cached real Kubernetes build (make k8s-lab builds it, ~30 min) and VIPD_K8S is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if !cached {
		bctx, bcancel := context.WithTimeout(context.Background(), 60*time.Minute)
		defer bcancel()
		var err error
		start := time.Now()
		if b, err = nspawn.EnsureK8s(bctx, nspawn.K8sBuildOptions{Log: bsLogger(t)}); err != nil {
			t.Fatal(err)
		}
		t.Logf("real Kubernetes %s built in %v", b.Version, time.Since(start).Round(time.Second))
	}
	start := time.Now()
	bin := t.TempDir()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	for _, p := range []string{"vipd", "bootstrap"} {
		out, err := exec.CommandContext(ctx, goTool, "build", "-o", filepath.Join(bin, p), "../../cmd/"+p).CombinedOutput()
		if err != nil {
			t.Fatalf("go build cmd/%s: %v\n%s", p, err, out)
		}
	}
	bootstrap := filepath.Join(bin, "bootstrap")

	// Air-gapped: the lab imports no image; the topology names an image bundle that
	// `bootstrap bundle` makes from the build's image archives, and up imports it.
	bundleDir := filepath.Join(t.TempDir(), "image-bundle")
	t0 := time.Now()
	c, err := nspawn.StartCluster(ctx, nspawn.ClusterOptions{LBs: 2, Masters: 3, Workers: 1, K8s: b, Log: bsLogger(t), ImageBundle: bundleDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	t.Logf("lab with 6 hosts up in %v; VIP %s", time.Since(t0).Round(time.Millisecond), c.VIP)
	failed := true
	defer func() {
		if failed {
			k8sDump(t, c)
		}
	}()

	run := func(step string, args ...string) (string, int) {
		t.Helper()
		ts := time.Now()
		cmd := c.OperatorCommand(ctx, bootstrap, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: run bootstrap: %v", step, err)
		}
		t.Logf("%s: bootstrap %s -> exit %d in %v", step, strings.Join(args, " "), code, time.Since(ts).Round(time.Millisecond))
		if strings.Contains(out.String(), c.OpsPassword) {
			t.Errorf("%s: the ops password appears in bootstrap's output", step)
		}
		return out.String(), code
	}

	bargs := append([]string{"bundle", "-f", c.Topology, "-o", bundleDir, "--kubeadm", filepath.Join(b.Bin, "kubeadm")}, b.Images...)
	if out, err := exec.CommandContext(ctx, bootstrap, bargs...).CombinedOutput(); err != nil {
		t.Fatalf("bootstrap bundle: %v\n%s", err, out)
	} else {
		t.Logf("bootstrap bundle: %s", out)
	}
	for _, h := range []string{"master1", "worker1"} {
		// No containerd yet (the common phase installs it) and no lab image directory.
		if out, err := c.Exec(ctx, h, "sh", "-c", "command -v ctr; ls /var/lib/vipd-lab/images 2>/dev/null; true"); err != nil || strings.TrimSpace(string(out)) != "" {
			t.Fatalf("%s before up (%v): %s; the lab must leave the images to the bundle", h, err, out)
		}
	}

	// The first up is killed inside master2's control-plane kubeadm join; status must say
	// master2 is half-done, and one rerun must finish the cluster (k8s_kill_test.go).
	killer := newK8sKiller(t)
	k8sKillRound(ctx, t, c, bootstrap, killer.inJoin("master2"))
	for _, h := range c.Hosts {
		if h.Role == "lb" {
			continue
		}
		rss, cache, err := c.HostMemory(h.Name)
		if err != nil {
			t.Error(err)
			continue
		}
		t.Logf("memory of %s (%s) after up: rss %d MiB, page cache %d MiB", h.Name, h.Role, rss>>20, cache>>20)
		// Every image came from the bundle (the lab imported none).
		if out, err := c.Exec(ctx, h.Name, "sh", "-c", "ctr -n k8s.io images ls -q | grep -cE '^registry[.]k8s[.]io/[^@]+$'"); err != nil || strings.TrimSpace(string(out)) != "7" {
			t.Errorf("%s: %s registry.k8s.io images in containerd after up (%v), want the bundle's 7", h.Name, strings.TrimSpace(string(out)), err)
		}
	}

	// The real kubectl, in the operator's namespace, with the admin kubeconfig: its server is
	// the control-plane endpoint, the VIP.
	admin, err := c.ReadFile("master1", "/etc/kubernetes/admin.conf")
	if err != nil {
		t.Fatal(err)
	}
	vip := strings.Split(c.VIP, "/")[0]
	if !strings.Contains(string(admin), "server: https://"+vip+":6443") {
		t.Errorf("admin.conf does not point at the VIP %s:\n%s", vip, admin)
	}
	kubeconfig := filepath.Join(t.TempDir(), "admin.conf")
	if err := os.WriteFile(kubeconfig, admin, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", c.OperatorNS, filepath.Join(b.Bin, "kubectl"), "--kubeconfig", kubeconfig, "--request-timeout", "10s"}, args...)...)
		o, err := cmd.CombinedOutput()
		return string(o), err
	}
	nodes, err := kubectl("get", "nodes", "-o", "wide", "--no-headers")
	if err != nil {
		t.Fatalf("kubectl get nodes through the VIP: %v\n%s", err, nodes)
	}
	t.Logf("kubectl get nodes -o wide (through the VIP):\n%s", nodes)
	for _, n := range []string{"master1", "master2", "master3", "worker1"} {
		if !regexp.MustCompile(`(?m)^` + n + `\s+Ready\s.*\sv` + regexp.QuoteMeta(b.Version) + `\s`).MatchString(nodes) {
			t.Errorf("node %s not Ready at v%s", n, b.Version)
		}
	}

	// Every kube-system pod Running and ready: 3 etcd, apiserver, controller-manager and
	// scheduler, 4 kube-proxy, 2 CoreDNS (ready only once it reaches the API through
	// kube-proxy's Service rules and the pod network).
	var pods string
	deadline := time.Now().Add(4 * time.Minute)
	for {
		pods, err = kubectl("-n", "kube-system", "get", "pods", "-o", "wide", "--no-headers")
		bad := k8sUnreadyPods(pods)
		if err == nil && len(bad) == 0 && strings.Count(pods, "\n") >= 18 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-system pods not all Running and ready after 4 min (%v; not ready: %v):\n%s", err, bad, pods)
		}
		time.Sleep(3 * time.Second)
	}
	t.Logf("kube-system pods Running and ready %v after the lab started:\n%s", time.Since(t0).Round(time.Second), pods)
	for _, p := range []string{"etcd-master1", "etcd-master3", "kube-apiserver-master2", "kube-controller-manager-master3", "kube-scheduler-master1", "coredns-", "kube-proxy-"} {
		if !strings.Contains(pods, p) {
			t.Errorf("no pod %s* in kube-system", p)
		}
	}

	// The pod network spans the nodes: each CoreDNS pod answers TCP :53 from a node other
	// than its own (the bridge CNI's routes), and the kube-dns Service's ClusterIP answers
	// from the worker (kube-proxy's rules).
	for _, line := range strings.Split(pods, "\n") {
		f := strings.Fields(line)
		if len(f) < 7 || !strings.HasPrefix(f[0], "coredns-") {
			continue
		}
		from := "worker1"
		if f[6] == from {
			from = "master2"
		}
		if o, err := c.Exec(ctx, from, "timeout", "10", "bash", "-c", "exec 3<>/dev/tcp/"+f[5]+"/53"); err != nil {
			t.Errorf("TCP connect from %s to pod %s (%s on %s) port 53: %v %s", from, f[0], f[5], f[6], err, o)
		}
	}
	if o, err := c.Exec(ctx, "worker1", "timeout", "10", "bash", "-c", "exec 3<>/dev/tcp/10.96.0.10/53"); err != nil {
		t.Errorf("TCP connect from worker1 to the kube-dns Service 10.96.0.10:53: %v %s", err, o)
	}

	// A second up changes nothing.
	marks := map[string]k8sMark{}
	for _, h := range c.Hosts {
		marks[h.Name] = k8sMarkHost(ctx, t, c, h.Name)
	}
	time.Sleep(1100 * time.Millisecond) // mtime granularity of the marker
	out, code := run("second up (-v)", "up", "-f", c.Topology, "-v")
	if code != 0 {
		t.Fatalf("second up: exit %d:\n%s", code, out)
	}
	for _, h := range c.Hosts {
		k8sCheckUnchanged(ctx, t, c, h.Name, marks[h.Name])
	}

	// status on the real cluster: every host reachable and done, every node Ready.
	out, code = run("status", "status", "-f", c.Topology)
	t.Logf("status output:\n%s", out)
	if code != 0 || strings.Contains(out, "HALF-DONE") {
		t.Errorf("status: exit %d, want 0 and no half-done host", code)
	}
	for _, n := range []string{"master1", "master2", "master3", "worker1"} {
		if !regexp.MustCompile(`(?m)^` + n + `\s.*\sReady\b`).MatchString(out) {
			t.Errorf("status does not show %s Ready", n)
		}
	}

	// drill against the real apiservers.
	out, code = run("drill", "drill", "-f", c.Topology)
	t.Logf("drill output:\n%s", out)
	if code != 0 {
		t.Errorf("drill: exit %d, want 0", code)
	}
	if nodes, err := kubectl("get", "nodes", "--no-headers"); err != nil || strings.Count(nodes, " Ready ") != 4 {
		t.Errorf("after the drill, kubectl get nodes through the VIP: %v\n%s", err, nodes)
	}

	// reset undoes the cluster on the real nodes, the bridge CNI's files, routes and bridge
	// included (kubeadm reset leaves the CNI configuration).
	out, code = run("reset", "reset", "-f", c.Topology, "--yes")
	t.Logf("reset output:\n%s", out)
	if code != 0 {
		t.Errorf("reset: exit %d", code)
	}
	for _, h := range c.Hosts {
		if h.Role == "lb" {
			continue
		}
		left, _ := c.Exec(ctx, h.Name, "bash", "-c", `for f in /etc/kubernetes/kubelet.conf /etc/kubernetes/manifests/kube-apiserver.yaml /var/lib/etcd/member /etc/cni/net.d/10-bootstrap-bridge.conflist /etc/systemd/system/bootstrap-pod-routes.service; do [ -e "$f" ] && echo "$f"; done
ip -4 route show | grep '^10\.10\.' ; ip link show cni0 2>/dev/null | head -1; true`)
		if s := strings.TrimSpace(string(left)); s != "" {
			t.Errorf("%s after reset still has:\n%s", h.Name, s)
		}
	}

	// Then up again from nothing, killed at a random point of its whole run, and rerun.
	for i := 1; i < killer.kills && !t.Failed(); i++ {
		if i > 1 {
			if out, code := run("reset", "reset", "-f", c.Topology, "--yes"); code != 0 {
				t.Fatalf("reset: exit %d:\n%s", code, out)
			}
		}
		// An up after a reset (packages present) takes 60-120 s here.
		k8sKillRound(ctx, t, c, bootstrap, killer.anywhere(90*time.Second))
	}
	failed = t.Failed()
	t.Logf("whole test: %v", time.Since(start).Round(time.Second))
}

// k8sUnreadyPods returns the pods of `kubectl get pods --no-headers` that are not Running
// with all containers ready.
func k8sUnreadyPods(out string) []string {
	var bad []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		var ready, total int
		if _, err := fmt.Sscanf(f[1], "%d/%d", &ready, &total); err != nil || ready != total || f[2] != "Running" {
			bad = append(bad, f[0]+" "+f[1]+" "+f[2])
		}
	}
	return bad
}

type k8sMark struct{ dpkgLog, vipdPID, kubeletPID string }

func k8sMarkHost(ctx context.Context, t *testing.T, c *nspawn.ClusterLab, host string) k8sMark {
	out, err := c.Exec(ctx, host, "bash", "-c", `touch /run/k8s-marker
{ md5sum /var/log/dpkg.log 2>/dev/null || echo none; } | cut -d' ' -f1
systemctl show -p MainPID --value vipd
systemctl show -p MainPID --value kubelet`)
	if err != nil {
		t.Fatalf("mark %s: %v", host, err)
	}
	f := strings.Split(string(out), "\n")
	for len(f) < 3 {
		f = append(f, "")
	}
	return k8sMark{dpkgLog: f[0], vipdPID: f[1], kubeletPID: f[2]}
}

func k8sCheckUnchanged(ctx context.Context, t *testing.T, c *nspawn.ClusterLab, host string, m k8sMark) {
	now := k8sMarkHost(ctx, t, c, host)
	if now.dpkgLog != m.dpkgLog {
		t.Errorf("%s: the second up installed or removed packages (dpkg.log changed)", host)
	}
	if now.vipdPID != m.vipdPID || now.kubeletPID != m.kubeletPID {
		t.Errorf("%s: the second up restarted vipd or the kubelet (MainPID %s/%s -> %s/%s)", host, m.vipdPID, m.kubeletPID, now.vipdPID, now.kubeletPID)
	}
	// kubectl's discovery cache under ~/.kube/cache is kubectl's, not a change.
	out, err := c.Exec(ctx, host, "bash", "-c", `find /etc /usr /root/.kube -xdev -newer /run/k8s-marker -not -name '*.lock' -not -path '*/.kube/cache*' 2>/dev/null | head -20`)
	if err != nil {
		t.Errorf("%s: find changed files: %v", host, err)
	} else if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("%s: files changed by the second up:\n%s", host, s)
	}
}

// k8sDump logs what explains a failure: pods, kubelet and containerd journals.
func k8sDump(t *testing.T, c *nspawn.ClusterLab) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, h := range c.Hosts {
		if h.Role == "lb" {
			continue
		}
		out, _ := c.Exec(ctx, h.Name, "bash", "-c", "systemctl --failed --no-legend; crictl --runtime-endpoint unix:///run/containerd/containerd.sock ps -a 2>&1 | head -30; journalctl --no-pager -n 40 -u kubelet -u containerd -u vipd-lab-k8s-prep")
		t.Logf("---- %s:\n%s", h.Name, out)
	}
}
