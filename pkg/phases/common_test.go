package phases

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The apt commands of the common phase, run by a real shell against an apt-get and apt-mark
// that find the lock held (as after bootstrap was killed while apt-get ran, or with
// unattended-upgrades) for their first call: the phase waits and succeeds instead of
// failing on the lock; a dpkg interrupted half-way is finished with dpkg --configure -a; any
// other failure is returned at once.
func TestAptWaitsForTheLock(t *testing.T) {
	top := refTopology(t)
	w := freshRunWorld(top)
	r, out := newTestRunner(t, top, w, false)
	if err := r.Up(context.Background(), []string{PhaseFacts, PhaseCommon}); err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	cmds := map[string]string{}
	for _, c := range w.cmds {
		host, cmd, _ := strings.Cut(c, ": ")
		if host == "k8s-worker-1" {
			cmds[tagOf(cmd)] = cmd
		}
	}
	bin := t.TempDir()
	fake := func(name, script string) {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// apt-get, apt-mark: the lock is held for the first call of each.
	locked := `n=$(cat "$STATE/$(basename "$0")" 2>/dev/null || echo 0); echo $((n+1)) > "$STATE/$(basename "$0")"
if [ "$n" -lt 1 ]; then echo "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)" >&2; exit 100; fi
echo "$(basename "$0") $*" >> "$STATE/ran"
`
	fake("apt-get", locked)
	fake("apt-mark", locked)
	fake("dpkg", `echo "dpkg $*" >> "$STATE/ran"`)
	for _, tag := range []string{"change common/apt-update", "change common/containerd-install", "change common/kubernetes-install", "change common/hold"} {
		cmd, ok := cmds[tag]
		if !ok {
			t.Fatalf("no %q command", tag)
		}
		state := t.TempDir()
		sh := exec.Command("sh", "-c", cmd)
		sh.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "STATE="+state)
		if o, err := sh.CombinedOutput(); err != nil {
			t.Errorf("%s failed on a lock held for one attempt: %v\n%s", tag, err, o)
		}
		if ran, _ := os.ReadFile(filepath.Join(state, "ran")); !strings.Contains(string(ran), "apt-") {
			t.Errorf("%s: apt never ran after the lock was released: %q", tag, ran)
		}
		if tag == "change common/kubernetes-install" && !strings.Contains(cmd, "DPkg::Lock::Timeout=") {
			t.Errorf("apt-get install without DPkg::Lock::Timeout: %s", cmd)
		}
	}
	// An interrupted dpkg is finished, then apt-get goes on.
	state := t.TempDir()
	fake("apt-get", `if [ ! -e "$STATE/configured" ]; then echo "E: dpkg was interrupted, you must manually run 'dpkg --configure -a' to correct the problem." >&2; exit 100; fi
echo "apt-get $*" >> "$STATE/ran"`)
	fake("dpkg", `[ "$*" = "--configure -a" ] && touch "$STATE/configured"`)
	sh := exec.Command("sh", "-c", cmds["change common/kubernetes-install"])
	sh.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "STATE="+state)
	if o, err := sh.CombinedOutput(); err != nil {
		t.Errorf("install after an interrupted dpkg: %v\n%s", err, o)
	}
	// Another failure is not retried.
	fake("apt-get", `echo "E: Unable to locate package kubeadm" >&2; exit 100`)
	sh = exec.Command("sh", "-c", cmds["change common/kubernetes-install"])
	sh.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "STATE="+t.TempDir())
	if o, err := sh.CombinedOutput(); err == nil || !strings.Contains(string(o), "Unable to locate package") {
		t.Errorf("a real apt failure: %v %q, want the failure and its message", err, o)
	}
}
