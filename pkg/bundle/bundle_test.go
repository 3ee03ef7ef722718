package bundle

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// archive writes a small tar holding one member (manifest.json or index.json).
func archive(t *testing.T, dir, name, member, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	if err := tw.WriteHeader(&tar.Header{Name: "blobs/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: member, Mode: 0o644, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func TestWriteLoad(t *testing.T) {
	src := t.TempDir()
	a := archive(t, src, "apiserver.tar", "manifest.json", `[{"Config":"c.json","RepoTags":["registry.k8s.io/kube-apiserver:v1.33.6"],"Layers":["l.tar"]}]`)
	b := archive(t, src, "pause.tar", "index.json", `{"schemaVersion":2,"manifests":[{"annotations":{"io.containerd.image.name":"registry.k8s.io/pause:3.10","org.opencontainers.image.ref.name":"3.10"}}]}`)
	req := []string{"registry.k8s.io/kube-apiserver:v1.33.6", "registry.k8s.io/pause:3.10"}
	out := filepath.Join(t.TempDir(), "bundle")

	// An archive set lacking a required image is refused and nothing is written.
	if _, err := Write(out, "1.33.6", append(req, "registry.k8s.io/etcd:3.5.24-0"), []string{a, b}); err == nil || !strings.Contains(err.Error(), "registry.k8s.io/etcd:3.5.24-0") {
		t.Fatalf("write without etcd: %v", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a refused bundle left %s behind", out)
	}
	if _, err := Write(out, "v1.33.6", req, []string{a, b}); err != nil {
		t.Fatal(err)
	}
	bl, err := Load(out, "1.33.6")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(bl.Refs(), " "); got != strings.Join(req, " ") {
		t.Errorf("refs %q", got)
	}
	if err := bl.Verify(); err != nil {
		t.Errorf("verify: %v", err)
	}
	if _, err := Load(out, "1.34.0"); err == nil || !strings.Contains(err.Error(), "is for Kubernetes 1.33.6") {
		t.Errorf("load for another version: %v", err)
	}
	if _, err := Write(out, "1.33.6", req, []string{a, b}); err == nil || !strings.Contains(err.Error(), "already holds a bundle") {
		t.Errorf("second write into the same directory: %v", err)
	}
	// A damaged archive: a different size is caught by Load, the same size by Verify.
	p := filepath.Join(out, "images", "pause.tar")
	data, _ := os.ReadFile(p)
	data[len(data)-1] ^= 1
	os.WriteFile(p, data, 0o644)
	if bl, err = Load(out, ""); err != nil {
		t.Fatal(err)
	}
	if err := bl.Verify(); err == nil || !strings.Contains(err.Error(), "images/pause.tar has SHA-256") {
		t.Errorf("verify of a damaged archive: %v", err)
	}
	os.WriteFile(p, data[:len(data)-512], 0o644)
	if _, err := Load(out, ""); err == nil || !strings.Contains(err.Error(), "images/pause.tar is") {
		t.Errorf("load with a truncated archive: %v", err)
	}
}

func TestArchiveRefsRefusesNonImages(t *testing.T) {
	dir := t.TempDir()
	p := archive(t, dir, "x.tar", "hello.txt", "hi")
	if _, err := ArchiveRefs(p); err == nil || !strings.Contains(err.Error(), "no image reference") {
		t.Errorf("tar without manifest: %v", err)
	}
	np := filepath.Join(dir, "n.tar")
	os.WriteFile(np, []byte("not a tar at all, just text that is long enough................"), 0o644)
	if _, err := ArchiveRefs(np); err == nil {
		t.Error("a non-tar file was accepted")
	}
}
