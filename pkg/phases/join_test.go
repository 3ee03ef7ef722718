package phases

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/vipd-project/vipd/pkg/topology"
)

// etcdMembers is `etcdctl member list` listing these hosts' members.
func etcdMembers(top *topology.Topology, names ...string) string {
	var b strings.Builder
	for i, n := range names {
		h, _ := top.Host(n)
		fmt.Fprintf(&b, "%x, started, %s, https://%s:2380, https://%s:2379, false\n", 0x1000+i, n, h.Address, h.Address)
	}
	return b.String()
}

// A host a killed run left half-joined is not an error any more: the plan repairs it
// (kubeadm reset -f, the stale node and etcd member removed) and `status` reports it.
func TestJoinProbe(t *testing.T) {
	top := refTopology(t)
	m2, _ := top.Host("k8s-master-2")
	cases := []struct {
		name     string
		kubelet  int // exit code of test -f kubelet.conf
		nodes    string
		members  string
		wantDone bool
		wantHalf bool
		wantTodo []string
	}{
		{"member", 0, nodesOut(top, ""), "", true, false, nil},
		{"to join", 1, nodesOut(top, "k8s-master-2"), etcdMembers(top, "k8s-master-1", "k8s-master-3"), false, false, []string{"kubeadm join --config " + JoinConfig}},
		{"half joined: kubelet.conf but not listed", 0, nodesOut(top, "k8s-master-2"), etcdMembers(top, "k8s-master-1", "k8s-master-3"), false, true,
			[]string{"kubeadm reset -f", "kubeadm join"}},
		{"half joined: kubelet.conf, stale etcd member", 0, nodesOut(top, "k8s-master-2"), etcdMembers(top, "k8s-master-1", "k8s-master-2", "k8s-master-3"), false, true,
			[]string{"kubeadm reset -f", "etcdctl member remove 1001", "kubeadm join"}},
		{"half joined: only a stale etcd member (reset by hand)", 1, nodesOut(top, "k8s-master-2"), etcdMembers(top, "k8s-master-1", "k8s-master-2"), false, true,
			[]string{"etcdctl member remove 1001", "kubeadm join"}},
		{"half joined: listed without kubelet.conf", 1, nodesOut(top, ""), etcdMembers(top, "k8s-master-1"), false, true,
			[]string{"kubectl delete node k8s-master-2", "kubeadm join"}},
		{"killed before kubelet-start: leftovers only", 1, nodesOut(top, "k8s-master-2"), etcdMembers(top, "k8s-master-1"), false, true,
			[]string{"kubeadm reset -f", "kubeadm join"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld()
			left := ""
			if strings.HasPrefix(c.name, "killed before") {
				left = "/etc/kubernetes/pki/ca.crt\n/etc/kubernetes/manifests/kube-apiserver.yaml\n"
			}
			w.set("k8s-master-2", "probe join", answer{code: c.kubelet, out: left})
			w.set("k8s-master-1", "probe cluster", answer{})
			w.set("k8s-master-1", "probe cluster/nodes", answer{out: c.nodes})
			w.set("k8s-master-1", "probe join/etcd-members", answer{out: c.members})
			r, _ := newTestRunner(t, top, w, false)
			st, err := joinMastersPhase{}.Probe(context.Background(), r, m2)
			if err != nil {
				t.Fatal(err)
			}
			if st.Done != c.wantDone || (st.HalfDone != "") != c.wantHalf {
				t.Errorf("done = %v, half-done = %q (%+v)", st.Done, st.HalfDone, st)
			}
			todo := strings.Join(st.Todo, "\n")
			for _, want := range c.wantTodo {
				if !strings.Contains(todo, want) {
					t.Errorf("plan lacks %q:\n%s", want, todo)
				}
			}
			if !c.wantHalf && strings.Contains(todo, "reset") {
				t.Errorf("a reset planned on a host that is not half-joined:\n%s", todo)
			}
		})
	}
}

// kubeadm init killed half-way (no admin.conf, but its files) is reset before init runs again.
func TestHalfDoneInitRepaired(t *testing.T) {
	top := refTopology(t)
	w := freshRunWorld(top)
	w.set("k8s-master-1", "probe init/leftovers", answer{fn: func(w *world, _ string) answer {
		if w.ran("k8s-master-1", "change init/reset") {
			return answer{}
		}
		return answer{out: "/etc/kubernetes/pki/ca.crt\n/etc/kubernetes/manifests/etcd.yaml\n"}
	}})
	w.set("k8s-master-1", "change init/reset", answer{})
	r, out := newTestRunner(t, top, w, false)
	m1 := top.Masters()[0]
	st, err := initPhase{}.Probe(context.Background(), r, m1)
	if err != nil || !strings.Contains(st.HalfDone, "/etc/kubernetes/manifests/etcd.yaml") || !strings.HasPrefix(st.Todo[0], "kubeadm reset -f") {
		t.Fatalf("probe: %+v %v", st, err)
	}
	if _, err := (initPhase{}).Run(context.Background(), r, m1, st); err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	calls := strings.Join(w.changes(), "\n")
	if i, j := strings.Index(calls, "change init/reset"), strings.Index(calls, "change kubeadm init"); i < 0 || j < i {
		t.Errorf("want kubeadm reset -f before kubeadm init:\n%s", calls)
	}
}

// The repair run: kubeadm reset -f on the half-joined master, its stale etcd member removed
// through the first master's etcd pod when reset could not, then the join; `status` reports
// the half-done host before.
func TestHalfJoinedMasterRepaired(t *testing.T) {
	top := refTopology(t)
	w := doneWorld(t, top)
	w.set("k8s-master-2", "probe join", answer{fn: func(w *world, _ string) answer {
		if w.ran("k8s-master-2", "change join/reset") && !w.ran("k8s-master-2", "change kubeadm join") {
			return answer{code: 1}
		}
		return answer{}
	}})
	w.set("*", "probe cluster/nodes", answer{fn: func(w *world, _ string) answer {
		if w.ran("k8s-master-2", "change kubeadm join") {
			return answer{out: nodesOut(top, "")}
		}
		return answer{out: nodesOut(top, "k8s-master-2")}
	}})
	w.set("k8s-master-1", "probe join/etcd-members", answer{fn: func(w *world, _ string) answer {
		if w.ran("k8s-master-1", "change join/etcd-member-remove") {
			return answer{out: etcdMembers(top, "k8s-master-1", "k8s-master-3")}
		}
		return answer{out: etcdMembers(top, "k8s-master-1", "k8s-master-2", "k8s-master-3")}
	}})
	for _, tag := range []string{"change join/reset", "change join/etcd-member-remove", "change join/dir", "change kubeadm join"} {
		w.set("*", tag, answer{})
	}
	w.set("k8s-master-1", "change join/token", answer{out: "kubeadm join 192.168.10.100:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:1111\n"})
	w.set("k8s-master-1", "change join/certificate-key", answer{out: strings.Repeat("cd", 32) + "\n"})
	r, out := newTestRunner(t, top, w, false)
	var half []string
	for _, s := range r.Status(context.Background()) {
		if s.HalfDone != "" {
			half = append(half, s.Name+": "+s.HalfDone)
		}
	}
	if len(half) != 1 || !strings.Contains(half[0], "k8s-master-2: join-masters: half-joined") || !strings.Contains(half[0], "etcd has a member 1001") {
		t.Errorf("status half-done = %q, want k8s-master-2 half-joined with its etcd member", half)
	}
	if err := r.Up(context.Background(), []string{PhaseJoinMasters}); err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	calls := strings.Join(w.changes(), "\n")
	// The member goes first, while etcd has its quorum (kubeadm reset stops the host's etcd).
	i1, i2, i3 := strings.Index(calls, "k8s-master-1: change join/etcd-member-remove"), strings.Index(calls, "k8s-master-2: change join/reset"), strings.Index(calls, "k8s-master-2: change kubeadm join")
	if i1 < 0 || i2 < i1 || i3 < i2 {
		t.Errorf("want member remove, reset, join in that order:\n%s", calls)
	}
	for _, c := range w.cmds {
		if strings.HasPrefix(c, "k8s-master-1: # change join/etcd-member-remove") && !strings.Contains(c, "exec 'etcd-k8s-master-1' -- etcdctl") || strings.HasPrefix(c, "k8s-master-1: # change join/etcd-member-remove") && !strings.Contains(c, "member remove '1001'") {
			t.Errorf("member remove command: %s", c)
		}
	}
	if !strings.Contains(out.String(), "[k8s-master-2] join-masters: half-joined host repaired (stale etcd member 1001 removed, kubeadm reset -f), joined as control-plane") {
		t.Errorf("output:\n%s", out)
	}
	if strings.Contains(calls, "k8s-master-3: change") {
		t.Errorf("master3, a member, was changed:\n%s", calls)
	}
}
