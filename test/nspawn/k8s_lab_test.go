package nspawn

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestK8sGuest boots one host in real-Kubernetes mode with a small image of its own and
// Debian's containerd from the lab repository, and checks each workaround a kubelet needs:
// containerd starts and imports the lab's images, runc runs a container (through the
// oom_score_adj wrapper), the cgroup v1 controllers are writable, kubelet's sysctls read
// as it wants them, modprobe of the built-in modules succeeds, /dev/kmsg opens. Like
// TestRealKubernetes it runs only where the real build is cached or VIPD_K8S is set.
func TestK8sGuest(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, systemd-nspawn)")
	}
	if _, ok := CachedK8s(K8sBuildOptions{}); (!ok && os.Getenv("VIPD_K8S") == "") || os.Getenv("VIPD_K8S") == "0" {
		t.Skip("real-Kubernetes lab not in use here (no cached build, VIPD_K8S not set)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	prog := "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from a lab container\") }\n"
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "hello"), ".")
	build.Dir, build.Env = src, append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the test program: %v\n%s", err, out)
	}
	images := filepath.Join(dir, "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeImage(filepath.Join(images, "hello.tar"), imageSpec{Tags: []string{"registry.k8s.io/vipd-lab-hello:1"},
		Entrypoint: []string{"/hello"}, Files: []imageFile{{Src: filepath.Join(dir, "hello"), Dst: "/hello"}}}); err != nil {
		t.Fatal(err)
	}
	ctr, err := DebianDebs(ctx, "", "containerd", "runc")
	if err != nil {
		t.Fatal(err)
	}
	before := hostSysctls()
	l, err := Start(ctx, Options{Hosts: []HostSpec{{"n1", "worker"}}, Log: testLogger(t),
		Repos: []Repo{{Name: "debian", Debs: ctr}}, K8s: &K8sBuild{Version: KubernetesVersion, ImageDir: images}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	sh := func(script string) string {
		t.Helper()
		out, err := l.Exec(ctx, "n1", "bash", "-c", script)
		if err != nil {
			j, _ := l.Exec(ctx, "n1", "journalctl", "--no-pager", "-n", "30", "-u", "containerd", "-u", "vipd-lab-k8s-prep")
			t.Fatalf("%v\n%s\njournal:\n%s", err, out, j)
		}
		return string(out)
	}
	sh(fmt.Sprintf(`set -e
install -d /etc/apt/keyrings
curl -fsS %s | gpg --dearmor -o /etc/apt/keyrings/ctr.gpg
echo "deb [signed-by=/etc/apt/keyrings/ctr.gpg] %s /" > /etc/apt/sources.list.d/ctr.list
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q containerd >/dev/null`, l.RepoKeyURL("debian"), l.RepoURL("debian")))
	if got := sh("ctr -n k8s.io images ls -q"); !strings.Contains(got, "registry.k8s.io/vipd-lab-hello:1") {
		t.Errorf("image not imported when containerd started: %q", got)
	}
	if got := sh("ctr -n k8s.io run --rm registry.k8s.io/vipd-lab-hello:1 t1"); !strings.Contains(got, "hello from a lab container") {
		t.Errorf("container output: %q", got)
	}
	checks := sh(`for c in cpu memory pids cpuset; do mkdir /sys/fs/cgroup/$c/probe-rw 2>/dev/null && rmdir /sys/fs/cgroup/$c/probe-rw && echo "rw $c"; done
cat /proc/sys/vm/overcommit_memory /proc/sys/kernel/panic /proc/sys/kernel/panic_on_oops
modprobe br_netfilter && modprobe overlay && echo modprobe-ok
head -c0 /dev/kmsg && echo kmsg-ok
which runc; true`)
	for _, want := range []string{"rw cpu", "rw memory", "rw pids", "rw cpuset", "1\n10\n1\n", "modprobe-ok", "kmsg-ok", "/usr/local/sbin/runc"} {
		if !strings.Contains(checks, want) {
			t.Errorf("guest lacks %q:\n%s", want, checks)
		}
	}
	// The machine's own values stay as they were.
	if after := hostSysctls(); after != before {
		t.Errorf("the machine's sysctls changed: %q -> %q", before, after)
	}
}

func hostSysctls() string {
	var b strings.Builder
	for _, p := range []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"} {
		v, _ := os.ReadFile("/proc/sys/" + p)
		b.WriteString(strings.TrimSpace(string(v)) + " ")
	}
	return b.String()
}
