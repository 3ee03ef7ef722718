package phases

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/vipd-project/vipd/pkg/topology"
)

func TestUpgradeStepRule(t *testing.T) {
	v := func(s string) kubeVersion {
		k, ok := parseKubeVersion(s)
		if !ok {
			t.Fatalf("parse %q", s)
		}
		return k
	}
	for _, c := range []struct {
		from, to, err string
	}{
		{"1.33.6", "1.34.2", ""},
		{"1.33.6", "1.33.9", ""},
		{"1.33.6", "1.33.6", ""},
		{"1.33.6", "1.35.0", "one minor version at a time: upgrade to 1.34.x first"},
		{"1.33.6", "1.32.9", "does not downgrade"},
		{"1.33.6", "1.33.5", "does not downgrade"},
		{"1.33.6", "2.0.0", "one minor version at a time"},
	} {
		err := checkUpgradeStep(v(c.from), v(c.to))
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s -> %s: %v, want %q", c.from, c.to, err, c.err)
		}
	}
	for _, bad := range []string{"1.34", "v1.34.x", "1.34.2-1.1", ""} {
		if _, ok := parseKubeVersion(bad); ok {
			t.Errorf("parseKubeVersion(%q) accepted", bad)
		}
	}
}

// upgradeWorld: every node at 1.33.6 (or the masters already at 1.34.2 with mastersDone);
// a node's kubelet reports 1.34.2 once bootstrap restarted it.
func upgradeWorld(t *testing.T, top *topology.Topology, mastersDone bool) *world {
	w := removeWorld(t)
	for _, h := range top.Nodes() {
		v := "v1.33.6"
		if mastersDone && h.Role == topology.RoleMaster {
			v = "v1.34.2"
		}
		out := v + "\n"
		if h.Role == topology.RoleMaster {
			out += fmt.Sprintf("{\"gitVersion\":%q}\n", v)
		}
		w.set(h.Name, "probe upgrade/versions", answer{out: out})
	}
	w.set("*", "probe upgrade/node", answer{fn: func(w *world, cmd string) answer {
		for _, h := range top.Nodes() {
			if strings.HasSuffix(cmd, "'"+h.Name+"'") || strings.HasSuffix(cmd, " "+h.Name) {
				v := "v1.33.6"
				if w.ran(h.Name, "change restart kubelet") || (mastersDone && h.Role == topology.RoleMaster) {
					v = "v1.34.2"
				}
				return answer{out: h.Name + "   Ready   <none>   10m   " + v + "\n"}
			}
		}
		return answer{code: 1, err: "no such node"}
	}})
	w.set("*", "probe upgrade/package-version", answer{out: "1.34.2-1.1\n"})
	w.set("*", "probe upgrade/held", answer{out: ""})
	w.set("*", "probe lb/backends", answer{out: `[{"addr":"192.168.10.138:6443","admin":"READY"},{"addr":"192.168.10.139:6443","admin":"READY"},{"addr":"192.168.10.140:6443","admin":"READY"}]`})
	w.set("*", "probe readyz", answer{out: "ok"})
	for _, tag := range []string{"upgrade/kubernetes-key", "upgrade/apt-update", "upgrade/install", "upgrade/hold", "kubeadm upgrade plan", "kubeadm upgrade", "restart kubelet", "kubectl uncordon", "vipd backend enable"} {
		w.set("*", "change "+tag, answer{})
	}
	return w
}

// The first master: kubeadm re-pinned from the 1.34 channel, plan, its backend drained on
// both lbs before kubeadm upgrade apply, the node drained before its kubelet restarts,
// the backend enabled once /readyz answers, uncordoned once Ready at the target.
func TestUpgradeFirstMaster(t *testing.T) {
	top := refTopology(t)
	w := upgradeWorld(t, top, false)
	r, out := newTestRunner(t, top, w, false)
	if err := r.Upgrade(context.Background(), UpgradeOptions{To: "1.34.2", Only: "k8s-master-1"}); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := []string{
		"k8s-master-1: change upgrade/kubernetes-key",
		"k8s-master-1: change upgrade/apt-update",
		"k8s-master-1: change upgrade/install",
		"k8s-master-1: change upgrade/hold",
		"k8s-master-1: change kubeadm upgrade plan",
		"lb1: change vipd backend drain",
		"lb2: change vipd backend drain",
		"k8s-master-1: change kubeadm upgrade",
		"k8s-master-2: change kubectl drain",
		"k8s-master-1: change upgrade/kubernetes-key",
		"k8s-master-1: change upgrade/apt-update",
		"k8s-master-1: change upgrade/install",
		"k8s-master-1: change upgrade/hold",
		"k8s-master-1: change restart kubelet",
		"lb1: change vipd backend enable",
		"lb2: change vipd backend enable",
		"k8s-master-2: change kubectl uncordon",
	}
	if got := w.changes(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("changes:\n%s\nwant:\n%s\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), out)
	}
	var applied, list bool
	for _, c := range w.cmds {
		applied = applied || strings.Contains(c, "kubeadm upgrade apply -y v1.34.2")
		if strings.Contains(c, "# change upgrade/install") && (strings.Contains(c, "unhold") || !strings.Contains(c, "--allow-change-held-packages")) {
			t.Errorf("packages not installed while held (a kill before the hold would leave them free):\n%s", c)
		}
	}
	for _, u := range w.uploads {
		list = list || (u.path == KubernetesList && strings.Contains(string(u.data), "/v1.34/deb/"))
	}
	if !applied || !list {
		t.Errorf("kubeadm upgrade apply -y v1.34.2 run: %v; apt source switched to the v1.34 channel: %v", applied, list)
	}
}

// A worker waits for its masters; once they are upgraded it runs kubeadm upgrade node (no
// lb involved) and the rest in order; a second run changes nothing.
func TestUpgradeWorker(t *testing.T) {
	top := refTopology(t)
	w := upgradeWorld(t, top, false)
	r, out := newTestRunner(t, top, w, false)
	if err := r.Upgrade(context.Background(), UpgradeOptions{To: "1.34.2", Only: "k8s-worker-1"}); err == nil || !strings.Contains(err.Error(), "upgrade the masters before the workers") {
		t.Fatalf("worker before its masters: %v\n%s", err, out)
	}
	if ch := w.changes(); len(ch) > 0 {
		t.Fatalf("refused upgrade changed hosts: %v", ch)
	}
	w = upgradeWorld(t, top, true)
	r, out = newTestRunner(t, top, w, false)
	if err := r.Upgrade(context.Background(), UpgradeOptions{To: "1.34.2", Only: "k8s-worker-1"}); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := strings.Join(w.changes(), "\n")
	for _, bad := range []string{"lb1", "vipd backend", "upgrade plan"} {
		if strings.Contains(got, bad) {
			t.Errorf("worker upgrade ran %q:\n%s", bad, got)
		}
	}
	if i, j := strings.Index(got, "kubectl drain"), strings.Index(got, "restart kubelet"); i < 0 || j < 0 || i > j {
		t.Errorf("the worker is not drained before its kubelet restarts:\n%s", got)
	}
	if !strings.Contains(strings.Join(w.cmds, "\n"), "k8s-worker-1: # change kubeadm upgrade\nkubeadm upgrade node") {
		t.Errorf("no kubeadm upgrade node on the worker")
	}
	for _, h := range top.Nodes() {
		w.set(h.Name, "probe upgrade/versions", answer{out: "v1.34.2\n{\"gitVersion\":\"v1.34.2\"}\n"})
	}
	before := len(w.changes())
	r, out = newTestRunner(t, top, w, false)
	if err := r.Upgrade(context.Background(), UpgradeOptions{To: "1.34.2"}); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if ch := w.changes(); len(ch) != before || strings.Count(out.String(), "already at v1.34.2") != len(top.Nodes()) {
		t.Errorf("a second run changed %v:\n%s", ch[before:], out)
	}
	// A run killed between a master's drain and its enable left its backend drained on
	// lb2 (vipd keeps that across restarts): the rerun enables it there, only there.
	w.set("lb2", "probe lb/backends", answer{out: `[{"addr":"192.168.10.138:6443","admin":"READY"},{"addr":"192.168.10.139:6443","admin":"DRAIN"}]`})
	r, out = newTestRunner(t, top, w, false)
	if err := r.Upgrade(context.Background(), UpgradeOptions{To: "1.34.2"}); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if ch := w.changes()[before:]; strings.Join(ch, ",") != "lb2: change vipd backend enable" || !strings.Contains(out.String(), "[lb2] lb: backend 192.168.10.139:6443 was DRAIN (left by an interrupted run): enabled") {
		t.Errorf("a backend left drained: changes %v\n%s", ch, out)
	}
}

// A run killed between installing a node's packages and holding them (the kill of TestDay2
// landed there once): the rerun finds the node at the target and holds them, only them.
func TestUpgradeRerunHoldsLeftUnheld(t *testing.T) {
	top := refTopology(t)
	w := upgradeWorld(t, top, true)
	for _, h := range top.Nodes() {
		w.set(h.Name, "probe upgrade/versions", answer{out: "v1.34.2\n{\"gitVersion\":\"v1.34.2\"}\n"})
		w.set(h.Name, "probe upgrade/node", answer{out: h.Name + "   Ready   <none>   10m   v1.34.2\n"})
	}
	m := top.Masters()[0]
	w.set(m.Name, "probe upgrade/held", answer{out: "kubelet\nkubectl\n"})
	r, out := newTestRunner(t, top, w, false)
	if err := r.Upgrade(context.Background(), UpgradeOptions{To: "1.34.2"}); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if ch := strings.Join(w.changes(), ","); ch != m.Name+": change upgrade/hold" {
		t.Errorf("changes %q, want only the hold on %s\n%s", ch, m.Name, out)
	}
	if !strings.Contains(strings.Join(w.cmds, "\n"), "apt-mark hold kubelet kubectl") {
		t.Errorf("kubelet and kubectl not held again:\n%s", out)
	}
}

// up refuses to downgrade a host the cluster's upgrade left newer than the file.
func TestVersionGuard(t *testing.T) {
	top := refTopology(t)
	h := top.Nodes()[0]
	if err := versionGuard(top, h, "1.34.2-1.1"); err == nil || !strings.Contains(FixOf(err), `set cluster.kubernetesVersion: "1.34.2" in topology.yaml`) {
		t.Errorf("newer kubeadm: %v (fix %q)", err, FixOf(err))
	}
	for _, ok := range []string{"", "1.33.6-1.1", "1.32.9-1.1"} {
		if err := versionGuard(top, h, ok); err != nil {
			t.Errorf("kubeadm %q refused: %v", ok, err)
		}
	}
}

// The common phase of `up` on a host the cluster's upgrade left at 1.34.2, with the file
// still at 1.33.6: refused (it planned apt-get install kubelet=1.33.6-* --allow-downgrades).
func TestUpRefusesToDowngrade(t *testing.T) {
	top := refTopology(t)
	w := doneWorld(t, top)
	w.set("*", "probe common", answer{out: strings.ReplaceAll(commonProbeDone(top), "1.33.6-1.1", "1.34.2-1.1")})
	r, out := newTestRunner(t, top, w, true)
	err := r.Up(context.Background(), []string{PhaseCommon})
	if err == nil || !strings.Contains(out.String(), `fix: the cluster was upgraded: set cluster.kubernetesVersion: "1.34.2" in topology.yaml`) || strings.Contains(out.String(), "would apt-get install") {
		t.Errorf("up --only common on an upgraded host: %v\n%s", err, out)
	}
}
