package standin

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBuildDebs(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	debs, err := BuildDebs(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"kubelet": "./usr/bin/kubelet", "kubeadm": "./usr/bin/kubeadm", "kubectl": "./usr/bin/kubectl"}
	if len(debs) != 2*len(want) {
		t.Fatalf("got %d packages %v, want %d (two versions)", len(debs), debs, 2*len(want))
	}
	for _, deb := range debs[:len(want)] {
		name := strings.SplitN(filepath.Base(deb), "_", 2)[0]
		out, err := exec.Command("dpkg-deb", "-f", deb, "Package", "Version").Output()
		if err != nil {
			t.Fatalf("%s: %v", deb, err)
		}
		if got := string(out); got != "Package: "+name+"\nVersion: "+DebVersion+"\n" {
			t.Errorf("%s control = %q", deb, got)
		}
		list, err := exec.Command("dpkg-deb", "-c", deb).Output()
		if err != nil || !strings.Contains(string(list), want[name]) {
			t.Errorf("%s does not contain %s: %v\n%s", deb, want[name], err, list)
		}
		ver, err := exec.Command(filepath.Join(dir, "bin", name), "--version").CombinedOutput()
		if name != "kubeadm" && name != "kubectl" && (err != nil || !strings.Contains(string(ver), "stand-in")) {
			t.Errorf("%s --version = %q, %v; want it to say stand-in", name, ver, err)
		}
	}
	ver, err := exec.Command(filepath.Join(dir, "bin", "kubeadm"), "version").CombinedOutput()
	if err != nil || !strings.Contains(string(ver), "v1.33.6") || !strings.Contains(string(ver), "stand-in") {
		t.Errorf("kubeadm version = %q, %v", ver, err)
	}
	// The upgrade version: the same programs reporting the next minor.
	ver, err = exec.Command(filepath.Join(dir, "bin-"+UpgradeVersion, "kubeadm"), "version", "-o", "short").CombinedOutput()
	if err != nil || strings.TrimSpace(string(ver)) != "v"+UpgradeVersion {
		t.Errorf("upgrade kubeadm version -o short = %q, %v", ver, err)
	}
	if out, err := exec.Command("dpkg-deb", "-f", debs[len(want)], "Version").Output(); err != nil || strings.TrimSpace(string(out)) != UpgradeDebVersion {
		t.Errorf("%s: %q %v", debs[len(want)], out, err)
	}
	ver, err = exec.Command(filepath.Join(dir, "bin", "kubectl"), "version", "--client").CombinedOutput()
	if err != nil || !strings.Contains(string(ver), "stand-in") {
		t.Errorf("kubectl version --client = %q, %v", ver, err)
	}
}
