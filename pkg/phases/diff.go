package phases

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/vipd-project/vipd/pkg/topology"
)

// ClusterDiff is what differs between the topology file and the cluster the first master
// reports (`bootstrap status`).
type ClusterDiff struct {
	// Cluster is false when there is no cluster yet (no admin.conf on the first master):
	// every node of the file is still to join, nothing else is known.
	Cluster bool
	// ToJoin are the masters and workers of the file that the cluster does not list:
	// `bootstrap up` joins them.
	ToJoin []string
	// NotInFile are the nodes the cluster lists that the file does not name (with their
	// status): a host deleted from the file without `bootstrap remove`, or joined by hand.
	NotInFile []string
	// Error is why the cluster could not be asked (the diff is then unknown).
	Error string
}

// Empty reports whether the file and the cluster agree.
func (d ClusterDiff) Empty() bool {
	return d.Error == "" && len(d.ToJoin) == 0 && len(d.NotInFile) == 0
}

// Diff compares the nodes of the file with the nodes the cluster lists. It changes nothing.
func (r *Runner) Diff(ctx context.Context) ClusterDiff {
	exists, nodes, err := r.clusterNodes(ctx)
	if err != nil {
		return ClusterDiff{Error: err.Error()}
	}
	return diffNodes(r.t, exists, nodes)
}

func diffNodes(t *topology.Topology, exists bool, nodes map[string]string) ClusterDiff {
	d := ClusterDiff{Cluster: exists}
	inFile := map[string]bool{}
	for _, h := range t.Nodes() {
		inFile[h.Name] = true
		if _, ok := nodes[h.Name]; !ok {
			d.ToJoin = append(d.ToJoin, h.Name)
		}
	}
	for n, st := range nodes {
		if !inFile[n] {
			d.NotInFile = append(d.NotInFile, n+" ("+st+")")
		}
	}
	sort.Strings(d.NotInFile)
	return d
}

// FormatDiff renders the diff for `bootstrap status`: one line per kind of difference, or
// one line saying the file and the cluster agree.
func FormatDiff(d ClusterDiff, file string) string {
	var b strings.Builder
	switch {
	case d.Error != "":
		fmt.Fprintf(&b, "file vs cluster: unknown (%s)\n", d.Error)
		return b.String()
	case !d.Cluster:
		fmt.Fprintf(&b, "file vs cluster: no cluster yet; `bootstrap up -f %s` builds it\n", file)
		return b.String()
	case d.Empty():
		fmt.Fprintf(&b, "file vs cluster: the nodes of %s are the nodes of the cluster\n", file)
		return b.String()
	}
	if len(d.ToJoin) > 0 {
		fmt.Fprintf(&b, "in the file, not in the cluster: %s (`bootstrap up -f %s` joins them)\n", strings.Join(d.ToJoin, ", "), file)
	}
	if len(d.NotInFile) > 0 {
		fmt.Fprintf(&b, "in the cluster, not in the file: %s (add them to %s, or remove them: put them back in the file and run `bootstrap remove -f %s HOST`)\n",
			strings.Join(d.NotInFile, ", "), file, file)
	}
	return b.String()
}
