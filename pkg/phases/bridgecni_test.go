package phases

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestBridgeRender(t *testing.T) {
	top := refTopology(t)
	top.Cluster.CNI.Name = "bridge"
	m1, w1 := top.Masters()[0], top.Workers()[0]
	if got := NodePodCIDR(top, m1).String(); got != "10.10.138.0/24" {
		t.Errorf("pod /24 of %s (%s) in %s: %s, want 10.10.138.0/24", m1.Name, m1.Address, top.Cluster.PodCIDR, got)
	}
	var conf struct {
		Plugins []struct {
			Type string
			IPAM struct {
				Ranges [][]struct{ Subnet string }
			}
		}
	}
	if err := json.Unmarshal(RenderBridgeConflist(top, w1), &conf); err != nil {
		t.Fatalf("conflist is not JSON: %v", err)
	}
	if len(conf.Plugins) != 2 || conf.Plugins[0].Type != "bridge" || conf.Plugins[0].IPAM.Ranges[0][0].Subnet != NodePodCIDR(top, w1).String() {
		t.Errorf("conflist of %s: %+v", w1.Name, conf)
	}
	unit := string(RenderPodRoutesUnit(top, m1))
	for _, n := range top.Nodes() {
		line := "ExecStart=/sbin/ip route replace " + NodePodCIDR(top, n).String() + " via " + n.Address + "\n"
		if got := strings.Contains(unit, line); got == (n.Name == m1.Name) {
			t.Errorf("routes unit of %s: route to %s present=%v:\n%s", m1.Name, n.Name, got, unit)
		}
	}
}

// With cni bridge the cni phase configures every node (no manifest is applied), and a
// second run on configured nodes changes nothing.
func TestBridgeCNIPhase(t *testing.T) {
	top := refTopology(t)
	top.Cluster.CNI.Name = "bridge"
	w := freshRunWorld(top)
	w.set("*", "change cni/dir", answer{})
	w.set("*", "change cni/routes", answer{})
	for _, n := range top.Nodes() {
		n := n
		done := "file " + BridgeConflist + " " + sha(RenderBridgeConflist(top, n)) + "\nfile " + PodRoutesUnit + " " + sha(RenderPodRoutesUnit(top, n)) + "\nenabled enabled\n"
		w.set(n.Name, "probe cni/bridge", answer{fn: func(w *world, _ string) answer {
			if w.ran(n.Name, "change cni/routes") {
				return answer{out: done}
			}
			return answer{out: "enabled disabled\nmissing 10.10.139.0/24\n"}
		}})
	}
	r, out := newTestRunner(t, top, w, false)
	if err := r.Up(context.Background(), []string{PhaseCNI}); err != nil {
		t.Fatalf("up --only cni: %v\n%s", err, out)
	}
	for _, n := range top.Nodes() {
		if !w.ran(n.Name, "change cni/routes") {
			t.Errorf("%s: routes unit not started", n.Name)
		}
		got := map[string]bool{}
		for _, u := range w.uploads {
			if u.host == n.Name {
				got[u.path] = true
			}
		}
		if !got[BridgeConflist] || !got[PodRoutesUnit] {
			t.Errorf("%s: uploads %v, want %s and %s", n.Name, got, BridgeConflist, PodRoutesUnit)
		}
	}
	if strings.Contains(strings.Join(w.calls, "\n"), "calico") {
		t.Errorf("calico applied with cni bridge: %v", w.calls)
	}
	before := len(w.changes())
	r2, out2 := newTestRunner(t, top, w, false)
	if err := r2.Up(context.Background(), []string{PhaseCNI}); err != nil {
		t.Fatalf("second up --only cni: %v\n%s", err, out2)
	}
	if ch := w.changes(); len(ch) != before {
		t.Errorf("second run changed hosts: %v", ch[before:])
	}
	if !strings.Contains(out2.String(), "cni: bridge: pods in 10.10.142.0/24, routes to 3 nodes") {
		t.Errorf("second run output:\n%s", out2)
	}
}

// reset removes what cni bridge added (kubeadm reset leaves the CNI configuration).
func TestResetBridge(t *testing.T) {
	top := refTopology(t)
	top.Cluster.CNI.Name = "bridge"
	w := newWorld()
	w.set("*", "probe reset", answer{out: "kubeadm\nhas /etc/kubernetes/kubelet.conf\nhas " + BridgeConflist + "\nhas " + PodRoutesUnit + "\n"})
	w.set("lb1", "probe reset", answer{out: ""})
	w.set("lb2", "probe reset", answer{out: ""})
	w.set("*", "change kubeadm reset", answer{})
	r, out := newTestRunner(t, top, w, false)
	if err := r.Reset(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var cmd string
	for _, c := range w.cmds {
		if strings.HasPrefix(c, "k8s-worker-1: # change kubeadm reset") {
			cmd = c
		}
	}
	for _, want := range []string{"kubeadm reset -f", "systemctl disable --now bootstrap-pod-routes", "rm -f " + PodRoutesUnit, "rm -f " + BridgeConflist, "ip link delete cni0"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("reset of a bridge node lacks %q:\n%s", want, cmd)
		}
	}
	if unit := string(RenderPodRoutesUnit(top, top.Workers()[0])); !strings.Contains(unit, "ExecStop=-/sbin/ip route del ") {
		t.Errorf("the routes unit does not delete its routes when stopped:\n%s", unit)
	}
}

// status lists cni among a node's done phases with cni bridge (it runs on every node).
func TestStatusBridge(t *testing.T) {
	top := refTopology(t)
	top.Cluster.CNI.Name = "bridge"
	w := doneWorld(t, top)
	for _, n := range top.Nodes() {
		w.set(n.Name, "probe cni/bridge", answer{out: "file " + BridgeConflist + " " + sha(RenderBridgeConflist(top, n)) + "\nfile " + PodRoutesUnit + " " + sha(RenderPodRoutesUnit(top, n)) + "\nenabled enabled\n"})
	}
	r, _ := newTestRunner(t, top, w, false)
	for _, s := range r.Status(context.Background()) {
		done := strings.Join(s.Done, ",")
		switch s.Role {
		case "worker":
			if done != "common,cni,join-workers" {
				t.Errorf("%s done %q, want common,cni,join-workers", s.Name, done)
			}
		case "master":
			if !strings.Contains(done, "cni") {
				t.Errorf("%s done %q, want cni among them", s.Name, done)
			}
		}
	}
}
