package phases

import (
	"context"
	"strings"
	"testing"
)

// A prepared node whose containerd still has its default sandbox image (pause:3.6) while
// kubeadm uses pause:3.10 gets only the sandbox image set; one that has kubeadm's is done.
func TestCommonSandboxImage(t *testing.T) {
	top := refTopology(t)
	w := doneWorld(t, top)
	w1 := top.Workers()[0].Name
	w.set(w1, "probe common", answer{out: commonProbeDone(top) + "sandbox registry.k8s.io/pause:3.6\npause registry.k8s.io/pause:3.10\n"})
	w.set(w1, "change common/sandbox-image", answer{out: "registry.k8s.io/pause:3.10\n"})
	for _, m := range top.Masters() {
		w.set(m.Name, "probe common", answer{out: commonProbeDone(top) + "sandbox registry.k8s.io/pause:3.10\npause registry.k8s.io/pause:3.10\n"})
	}
	r, out := newTestRunner(t, top, w, false)
	if err := r.Up(context.Background(), []string{PhaseCommon}); err != nil {
		t.Fatalf("up --only common: %v\n%s", err, out)
	}
	if got := strings.Join(w.changes(), "\n"); got != w1+": change common/sandbox-image" {
		t.Errorf("changes: %q, want only the sandbox image on %s", got, w1)
	}
	if !strings.Contains(out.String(), "["+w1+"] common: prepared: sandbox_image registry.k8s.io/pause:3.10") {
		t.Errorf("output:\n%s", out)
	}
	if !strings.Contains(out.String(), "[k8s-master-1] common: already prepared") {
		t.Errorf("a master with kubeadm's sandbox image is not done:\n%s", out)
	}
}
