package phases

import (
	"context"
	"strings"
	"testing"
)

// A control-plane join whose bootstrap was killed: the node registered and kubelet.conf is
// there, but the old run's kubeadm join still runs (nothing signals it once its SSH session
// is gone). Not a member yet: status says so, and the rerun stops that kubeadm before it
// resets and joins again (otherwise the orphan races the repair).
func TestOrphanJoinStopped(t *testing.T) {
	top := refTopology(t)
	w := doneWorld(t, top)
	w.set("k8s-master-2", "probe join", answer{fn: func(w *world, _ string) answer {
		if w.ran("k8s-master-2", "change join/stop-orphan") {
			return answer{out: "/etc/kubernetes/pki/ca.crt\n"}
		}
		return answer{out: "kubeadm-running:4242\n/etc/kubernetes/pki/ca.crt\n"}
	}})
	for _, tag := range []string{"change join/stop-orphan", "change join/reset", "change join/delete-node", "change join/etcd-member-remove", "change join/dir", "change kubeadm join"} {
		w.set("*", tag, answer{})
	}
	w.set("k8s-master-1", "change join/token", answer{out: "kubeadm join 192.168.10.100:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:1111\n"})
	w.set("k8s-master-1", "change join/certificate-key", answer{out: strings.Repeat("cd", 32) + "\n"})
	r, out := newTestRunner(t, top, w, false)
	m2, _ := top.Host("k8s-master-2")
	st, err := joinMastersPhase{}.Probe(context.Background(), r, m2)
	if err != nil {
		t.Fatal(err)
	}
	if st.Done || !strings.Contains(st.HalfDone, "kubeadm join of an interrupted run is still running (pid 4242)") {
		t.Fatalf("probe with the old kubeadm join running: done %v, half-done %q", st.Done, st.HalfDone)
	}
	if strings.Contains(st.HalfDone, "exists but the cluster has no node") {
		t.Errorf("half-done text contradicts the listed node: %q", st.HalfDone)
	}
	if _, err := (joinMastersPhase{}).Run(context.Background(), r, m2, st); err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	calls := strings.Join(w.changes(), "\n")
	i1, i2, i3 := strings.Index(calls, "k8s-master-2: change join/stop-orphan"), strings.Index(calls, "k8s-master-2: change join/reset"), strings.Index(calls, "k8s-master-2: change kubeadm join")
	if i1 < 0 || i2 < i1 || i3 < i2 {
		t.Errorf("want the old kubeadm stopped, then reset, then join:\n%s", calls)
	}
	for _, c := range w.cmds {
		if strings.HasPrefix(c, "k8s-master-2: # change join/stop-orphan") && !strings.Contains(c, "p=4242\n") {
			t.Errorf("stop command does not name pid 4242: %s", c)
		}
		if strings.HasPrefix(c, "k8s-master-2: # change kubeadm join") && !strings.Contains(c, "echo $! > "+KubeadmPIDFile) {
			t.Errorf("kubeadm join runs without its PID recorded: %s", c)
		}
	}
}

// kubeadm init interrupted after it wrote admin.conf (before the control plane even runs):
// the cluster "exists" by admin.conf, but init did not finish. The rerun resets and inits
// again instead of calling it done (joins would then fail on a cluster without kubeadm's
// configuration, tokens or addons).
func TestUnfinishedInitRedone(t *testing.T) {
	top := refTopology(t)
	w := freshRunWorld(top)
	w.set("k8s-master-1", "probe init/leftovers", answer{fn: func(w *world, _ string) answer {
		if w.ran("k8s-master-1", "change init/reset") {
			return answer{}
		}
		return answer{out: "kubeadm-running:77\n/etc/kubernetes/pki/ca.crt\ninit-unfinished\n"}
	}})
	w.set("k8s-master-1", "probe cluster", answer{})
	w.set("k8s-master-1", "probe cluster/nodes", answer{code: 1})
	w.set("k8s-master-1", "change init/stop-orphan", answer{})
	w.set("k8s-master-1", "change init/reset", answer{})
	r, out := newTestRunner(t, top, w, false)
	m1 := top.Masters()[0]
	st, err := initPhase{}.Probe(context.Background(), r, m1)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	if st.Done || !strings.Contains(st.HalfDone, "kubeadm init did not finish") || !strings.Contains(st.HalfDone, "(pid 77)") {
		t.Fatalf("probe: done %v, half-done %q", st.Done, st.HalfDone)
	}
	if _, err := (initPhase{}).Run(context.Background(), r, m1, st); err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	calls := strings.Join(w.changes(), "\n")
	i1, i2, i3 := strings.Index(calls, "change init/stop-orphan"), strings.Index(calls, "change init/reset"), strings.Index(calls, "change kubeadm init")
	if i1 < 0 || i2 < i1 || i3 < i2 {
		t.Errorf("want stop, reset, init in that order:\n%s", calls)
	}
}

// kubeadm init failing in a phase after the control plane runs (a request through the VIP
// met a restarting API server, seen on the real cluster) is finished by running kubeadm's
// remaining phases again, not reported as a failure.
func TestInitFinishedAfterLatePhaseError(t *testing.T) {
	top := refTopology(t)
	w := freshRunWorld(top)
	w.set("k8s-master-1", "change kubeadm init", answer{code: 1, err: "[WARNING SystemVerification]: cgroups v1\nerror execution phase upload-config/kubelet: error writing CRISocket for this node: error patching Node \"k8s-master-1\": read: connection reset by peer\n"})
	w.set("k8s-master-1", "change init/finish", answer{})
	r, out := newTestRunner(t, top, w, false)
	m1 := top.Masters()[0]
	st, err := initPhase{}.Probe(context.Background(), r, m1)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := (initPhase{}).Run(context.Background(), r, m1, st)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if !strings.Contains(msg, "phases from upload-config run again") || !strings.Contains(msg, "cluster initialised") {
		t.Errorf("message %q", msg)
	}
	for _, c := range w.cmds {
		if strings.Contains(c, "# change init/finish") {
			for _, p := range []string{"upload-config all", "upload-certs --upload-certs", "mark-control-plane", "bootstrap-token", "kubelet-finalize all", "addon all"} {
				if !strings.Contains(c, "kubeadm init phase "+p+" --config "+KubeadmConfig) {
					t.Errorf("finish command lacks phase %s:\n%s", p, c)
				}
			}
		}
	}
	// An error before the control plane runs is not retried this way.
	if _, ok := initFailedAfterControlPlane("error execution phase wait-control-plane: timed out"); ok {
		t.Error("wait-control-plane taken for a phase after the control plane")
	}
}

// The interrupted join's kubelet registers the node after the probe (the node was not listed
// then): the repair deletes it after kubeadm reset stopped that kubelet, not before (the
// kubelet would register it again) and not never (the next join fails: "a Node with name
// ... already exists"; seen on the real cluster).
func TestNodeRegisteredDuringRepairDeleted(t *testing.T) {
	top := refTopology(t)
	w := doneWorld(t, top)
	w.set("k8s-master-2", "probe join", answer{fn: func(w *world, _ string) answer {
		if w.ran("k8s-master-2", "change kubeadm join") {
			return answer{}
		}
		return answer{out: "kubeadm-running:4242\n"}
	}})
	w.set("*", "probe cluster/nodes", answer{fn: func(w *world, _ string) answer {
		if w.ran("k8s-master-2", "change join/stop-orphan") && !w.ran("k8s-master-1", "change join/delete-node") {
			return answer{out: nodesOut(top, "")} // registered meanwhile
		}
		if w.ran("k8s-master-2", "change kubeadm join") {
			return answer{out: nodesOut(top, "")}
		}
		return answer{out: nodesOut(top, "k8s-master-2")}
	}})
	w.set("k8s-master-1", "probe join/etcd-members", answer{out: etcdMembers(top, "k8s-master-1", "k8s-master-3")})
	for _, tag := range []string{"change join/stop-orphan", "change join/reset", "change join/delete-node", "change join/dir", "change kubeadm join"} {
		w.set("*", tag, answer{})
	}
	w.set("k8s-master-1", "change join/token", answer{out: "kubeadm join 192.168.10.100:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:1111\n"})
	w.set("k8s-master-1", "change join/certificate-key", answer{out: strings.Repeat("cd", 32) + "\n"})
	r, out := newTestRunner(t, top, w, false)
	if err := r.Up(context.Background(), []string{PhaseJoinMasters}); err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	calls := strings.Join(w.changes(), "\n")
	i1, i2, i3 := strings.Index(calls, "k8s-master-2: change join/reset"), strings.Index(calls, "k8s-master-1: change join/delete-node"), strings.Index(calls, "k8s-master-2: change kubeadm join")
	if i1 < 0 || i2 < i1 || i3 < i2 {
		t.Errorf("want reset, then the node deleted, then join:\n%s", calls)
	}
}
