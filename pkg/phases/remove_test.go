package phases

import (
	"context"
	"strings"
	"testing"
)

// removeWorld: the done cluster, every apiserver ready, vipd with runtime control.
func removeWorld(t *testing.T) *world {
	top := refTopology(t)
	w := doneWorld(t, top)
	w.set("*", "probe remove/member-health", answer{out: "ok"})
	w.set("*", "probe lb/backend-known", answer{})
	w.set("*", "change kubectl drain", answer{})
	w.set("*", "change vipd backend drain", answer{})
	for _, lb := range top.LBs() {
		cfg, _ := RenderVipdConfig(top, lb, "ens33")
		w.set(lb.Name, "probe lb/config", answer{out: string(cfg)})
	}
	w.set("*", "change lb/systemctl", answer{})
	w.set("*", "probe reset", answer{out: "kubeadm\nhas /etc/kubernetes/kubelet.conf\n"})
	w.set("*", "change kubeadm reset", answer{})
	w.set("*", "change remove/etcd-member", answer{})
	w.set("*", "change remove/delete-node", answer{})
	return w
}

// Removing a master: quorum checked, node drained, backend drained on both lbs then
// removed from vipd.yaml by a reload (not a restart), kubeadm reset, the member kubeadm
// reset left removed with etcdctl, the node deleted, in that order.
func TestRemoveMaster(t *testing.T) {
	top := refTopology(t)
	w := removeWorld(t)
	r, out := newTestRunner(t, top, w, false)
	if err := r.Remove(context.Background(), "k8s-master-3", RemoveOptions{}); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	order := w.changes()
	want := []string{
		"k8s-master-1: change kubectl drain",
		"lb1: change vipd backend drain",
		"lb2: change vipd backend drain",
		"lb1: change lb/systemctl",
		"lb2: change lb/systemctl",
		"k8s-master-3: change kubeadm reset",
		"k8s-master-1: change remove/etcd-member",
		"k8s-master-1: change remove/delete-node",
	}
	if strings.Join(order, "\n") != strings.Join(want, "\n") {
		t.Errorf("changes:\n%s\nwant:\n%s\noutput:\n%s", strings.Join(order, "\n"), strings.Join(want, "\n"), out)
	}
	for _, c := range w.cmds {
		if strings.HasPrefix(c, "lb1: # change lb/systemctl") && (!strings.Contains(c, "systemctl reload vipd") || strings.Contains(c, "restart")) {
			t.Errorf("vipd not reloaded: %s", c)
		}
		if strings.HasPrefix(c, "lb1: # change vipd backend drain") && !strings.Contains(c, "vipd backend drain '192.168.10.140:6443' --grace 10s --wait") {
			t.Errorf("drain command: %s", c)
		}
	}
	var cfg []byte
	for _, u := range w.uploads {
		if u.host == "lb1" && u.path == VipdConfigPath {
			cfg = u.data
		}
	}
	if len(cfg) == 0 || strings.Contains(string(cfg), "192.168.10.140") || !strings.Contains(string(cfg), "192.168.10.139:6443") {
		t.Errorf("lb1's new vipd.yaml still names master-3 or lost master-2:\n%s", cfg)
	}
	if !strings.Contains(out.String(), "delete it from topology.yaml now") {
		t.Errorf("no hint to delete the host from the file:\n%s", out)
	}
}

// A master whose removal would leave etcd without a quorum is refused before anything
// changes, naming the numbers and the members to bring back.
func TestRemoveRefusesToBreakQuorum(t *testing.T) {
	top := refTopology(t)
	w := removeWorld(t)
	w.set("k8s-master-1", "probe remove/member-health", answer{fn: func(_ *world, cmd string) answer {
		if strings.Contains(cmd, "192.168.10.140") {
			return answer{code: 7}
		}
		return answer{out: "ok"}
	}})
	r, out := newTestRunner(t, top, w, false)
	err := r.Remove(context.Background(), "k8s-master-2", RemoveOptions{})
	if err == nil {
		t.Fatalf("removal of master-2 with master-3 down accepted:\n%s", out)
	}
	for _, want := range []string{"removing k8s-master-2 would leave 2 etcd members of which 1 healthy (k8s-master-1); etcd needs 2 of 2 for quorum", "bring k8s-master-3 back first"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if ch := w.changes(); len(ch) > 0 {
		t.Errorf("a refused removal changed hosts: %v", ch)
	}
}

// A rerun after a complete removal changes nothing.
func TestRemoveAgainChangesNothing(t *testing.T) {
	top := refTopology(t)
	w := removeWorld(t)
	w.set("*", "probe cluster/nodes", answer{out: nodesOut(top, "k8s-worker-1")})
	w.set("*", "probe reset", answer{out: "kubeadm\n"})
	r, out := newTestRunner(t, top, w, false)
	if err := r.Remove(context.Background(), "k8s-worker-1", RemoveOptions{}); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if ch := w.changes(); len(ch) > 0 {
		t.Errorf("rerun changed hosts: %v\n%s", ch, out)
	}
	if err := r.Remove(context.Background(), "lb1", RemoveOptions{}); err == nil || !strings.Contains(err.Error(), "load balancer") {
		t.Errorf("remove lb1: %v", err)
	}
}

// A dead master (--host-gone): nothing runs on it; its backend, etcd member and node go.
func TestRemoveGoneHost(t *testing.T) {
	top := refTopology(t)
	w := removeWorld(t)
	w.set("k8s-master-1", "probe remove/member-health", answer{fn: func(_ *world, cmd string) answer {
		if strings.Contains(cmd, "192.168.10.140") {
			return answer{code: 7}
		}
		return answer{out: "ok"}
	}})
	r, out := newTestRunner(t, top, w, false)
	if err := r.Remove(context.Background(), "k8s-master-3", RemoveOptions{HostGone: true}); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := strings.Join(w.changes(), "\n")
	for _, c := range w.calls {
		if strings.HasPrefix(c, "k8s-master-3: ") {
			t.Errorf("a command ran on the gone host: %s", c)
		}
	}
	for _, want := range []string{"lb1: change vipd backend drain", "k8s-master-1: change remove/etcd-member", "k8s-master-1: change remove/delete-node"} {
		if !strings.Contains(got, want) {
			t.Errorf("changes lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "kubectl drain") {
		t.Errorf("the gone host's node was drained:\n%s", got)
	}
}
