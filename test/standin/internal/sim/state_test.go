package sim

import (
	"testing"
	"time"
)

func TestMergeKeepsNewestEntry(t *testing.T) {
	t0 := time.Now()
	a, b := NewState(), NewState()
	a.Nodes["m1"] = &Node{Name: "m1", Role: "control-plane", Updated: t0}
	b.Nodes["m1"] = &Node{Name: "m1", Role: "control-plane", Deleted: true, Updated: t0.Add(time.Second)}
	b.Nodes["w1"] = &Node{Name: "w1", Role: "worker", Updated: t0}
	if !a.Merge(b) {
		t.Fatal("merge reported no change")
	}
	if !a.Nodes["m1"].Deleted || a.Nodes["w1"] == nil {
		t.Errorf("after merge: m1=%+v w1=%+v", a.Nodes["m1"], a.Nodes["w1"])
	}
	if a.Merge(b) {
		t.Error("merging the same state twice reported a change")
	}
	old := NewState()
	old.Nodes["m1"] = &Node{Name: "m1", Updated: t0}
	if a.Merge(old) || !a.Nodes["m1"].Deleted {
		t.Error("an older entry overwrote a newer one")
	}
}

func TestNodeReadyNeedsCNIAndHeartbeat(t *testing.T) {
	s := NewState()
	now := time.Now()
	n := &Node{Name: "m1", Heartbeat: now}
	if s.NodeReady(n, now) {
		t.Error("node Ready without a CNI")
	}
	s.Objects[ObjectKey("DaemonSet", "kube-system", "calico-node")] = &Object{Applied: now}
	if !s.NodeReady(n, now) {
		t.Error("node not Ready with CNI and a fresh heartbeat")
	}
	if s.NodeReady(n, now.Add(NodeGrace+time.Second)) {
		t.Error("node Ready after the grace period without heartbeat")
	}
}

func TestCAHashMatchesKubeadmFormat(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	h, err := CAHash(ca.CertPEM)
	if err != nil || len(h) != len("sha256:")+64 {
		t.Fatalf("CAHash = %q, %v", h, err)
	}
	crt, key, err := ca.Issue("kube-apiserver", nil, []string{"10.0.0.1", "kubernetes"})
	if err != nil || len(crt) == 0 || len(key) == 0 {
		t.Fatalf("Issue: %v", err)
	}
	c, err := ParseCertPEM(crt)
	if err != nil || len(c.IPAddresses) != 1 || c.DNSNames[0] != "kubernetes" {
		t.Errorf("issued cert SANs: %v %v %v", err, c.IPAddresses, c.DNSNames)
	}
}
