package phases

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vipd-project/vipd/pkg/bundle"
)

// testArchive writes a docker-archive-like tar naming one image.
func testArchive(t *testing.T, dir, name, ref string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	m := `[{"RepoTags":["` + ref + `"]}]`
	tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(m))})
	tw.Write([]byte(m))
	tw.Close()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// With packages.imageBundle, the images phase uploads and imports on a node only the
// archives whose images containerd lacks, then checks the node's kubeadm list.
func TestImagesPhase(t *testing.T) {
	top := refTopology(t)
	src := t.TempDir()
	a := testArchive(t, src, "apiserver.tar", "registry.k8s.io/kube-apiserver:v"+top.Cluster.KubernetesVersion)
	p := testArchive(t, src, "pause.tar", "registry.k8s.io/pause:3.10")
	dir := filepath.Join(t.TempDir(), "bundle")
	req := []string{"registry.k8s.io/kube-apiserver:v" + top.Cluster.KubernetesVersion, "registry.k8s.io/pause:3.10"}
	if _, err := bundle.Write(dir, top.Cluster.KubernetesVersion, req, []string{a, p}); err != nil {
		t.Fatal(err)
	}
	top.Packages.ImageBundle = dir
	w := freshRunWorld(top)
	w.set("*", "probe images", answer{fn: func(w *world, _ string) answer {
		if w.ran("k8s-worker-1", "change images/import") {
			return answer{out: strings.Join(req, "\n") + "\n"}
		}
		return answer{out: "registry.k8s.io/pause:3.10\n"}
	}})
	w.set("*", "change images/dir", answer{})
	w.set("*", "change images/import", answer{})
	w.set("*", "change images/kubeadm-list", answer{out: strings.Join(req, "\n") + "\n"})
	r, out := newTestRunner(t, top, w, false)
	wk, _ := top.Host("k8s-worker-1")
	st, err := imagesPhase{}.Probe(context.Background(), r, wk)
	if err != nil || st.Done || len(st.Todo) != 2 || !strings.Contains(st.Todo[0], "images/apiserver.tar") {
		t.Fatalf("probe: %+v %v", st, err)
	}
	msg, err := imagesPhase{}.Run(context.Background(), r, wk, st)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if !strings.Contains(msg, "imported 1 image archives") {
		t.Errorf("message %q", msg)
	}
	if len(w.uploads) != 1 || w.uploads[0].path != ImageStage+"/apiserver.tar" || w.uploads[0].mode != 0o600 {
		t.Errorf("uploads %+v, want only apiserver.tar, 0600", w.uploads)
	}
	for _, c := range w.cmds {
		if strings.Contains(c, "# change images/import") && !strings.Contains(c, "ctr -n k8s.io images import '"+ImageStage+"/apiserver.tar'") {
			t.Errorf("import command: %s", c)
		}
	}
	// The node's kubeadm wants an image the bundle does not hold: a clear failure.
	w.set("*", "change images/kubeadm-list", answer{out: strings.Join(req, "\n") + "\nregistry.k8s.io/etcd:3.5.24-0\n"})
	if _, err := (imagesPhase{}).Run(context.Background(), r, wk, st); err == nil || !strings.Contains(err.Error(), "registry.k8s.io/etcd:3.5.24-0, not in the image bundle") {
		t.Errorf("run with kubeadm wanting etcd: %v", err)
	}
}

// A bundle for another version is refused before any host is touched.
func TestImageBundleCheckedFirst(t *testing.T) {
	top := refTopology(t)
	src := t.TempDir()
	a := testArchive(t, src, "pause.tar", "registry.k8s.io/pause:3.10")
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := bundle.Write(dir, "1.30.0", []string{"registry.k8s.io/pause:3.10"}, []string{a}); err != nil {
		t.Fatal(err)
	}
	top.Packages.ImageBundle = dir
	w := freshRunWorld(top)
	r, out := newTestRunner(t, top, w, false)
	err := r.Up(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "packages.imageBundle") || !strings.Contains(err.Error(), "is for Kubernetes 1.30.0") {
		t.Fatalf("up with a 1.30 bundle: %v", err)
	}
	if len(w.cmds) > 0 {
		t.Errorf("hosts were touched: %v\n%s", w.cmds, out)
	}
}
