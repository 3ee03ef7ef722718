package phases

import (
	"context"
	"strings"
	"testing"
)

// TestDiff: a worker of the file the cluster does not list is "to join"; a node the
// cluster lists that the file does not name is reported with its status; a cluster that
// matches the file says so.
func TestDiff(t *testing.T) {
	top := refTopology(t)
	w := doneWorld(t, top)
	w.set("*", "probe cluster/nodes", answer{out: nodesOut(top, "k8s-worker-1") + "old-worker   NotReady   <none>   90d   v1.33.6\n"})
	r, _ := newTestRunner(t, top, w, false)
	d := r.Diff(context.Background())
	got := FormatDiff(d, "topology.yaml")
	for _, want := range []string{
		"in the file, not in the cluster: k8s-worker-1 (`bootstrap up -f topology.yaml` joins them)",
		"in the cluster, not in the file: old-worker (NotReady)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("diff lacks %q:\n%s", want, got)
		}
	}
	if ch := w.changes(); len(ch) > 0 {
		t.Errorf("diff changed hosts: %v", ch)
	}

	w.set("*", "probe cluster/nodes", answer{out: nodesOut(top, "")})
	if got := FormatDiff(r.Diff(context.Background()), "topology.yaml"); !strings.Contains(got, "are the nodes of the cluster") {
		t.Errorf("diff of a matching cluster: %q", got)
	}
	w.set("*", "probe cluster", answer{code: 1})
	if got := FormatDiff(r.Diff(context.Background()), "topology.yaml"); !strings.Contains(got, "no cluster yet") {
		t.Errorf("diff without a cluster: %q", got)
	}
}
