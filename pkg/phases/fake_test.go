package phases

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vipd-project/vipd/pkg/sshx"
	"github.com/vipd-project/vipd/pkg/topology"
)

// answer is a recorded output of a command on a host.
type answer struct {
	out  string
	code int
	err  string // stderr
	// fn, when set, computes the answer from the calls so far (w.mu is held).
	fn func(w *world, cmd string) answer
}

// ran reports whether a call "host: tag" was made (w.mu held).
func (w *world) ran(host, tag string) bool {
	for _, c := range w.calls {
		if c == host+": "+tag {
			return true
		}
	}
	return false
}

// fakeHost answers commands by their tag ("# probe lb" -> "probe lb") with recorded outputs.
// A command it has no answer for is recorded as unexpected and fails with exit 127, so a
// test whose host state says "done" catches any command that would change the host.
type fakeHost struct {
	name string
	w    *world
}

type upload struct {
	host, path string
	data       []byte
	mode       os.FileMode
	owner      string
}

// world is the recorded state of every host of a scenario.
type world struct {
	mu         sync.Mutex
	answers    map[string]map[string]answer // host -> tag -> answer ("*" host: any)
	calls      []string                     // "host: tag"
	cmds       []string                     // "host: full command"
	uploads    []upload
	unexpected []string
	// delay is how long every command and upload takes (a host's answer time).
	delay time.Duration
}

func newWorld() *world { return &world{answers: map[string]map[string]answer{}} }

func (w *world) set(host, tag string, a answer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.answers[host] == nil {
		w.answers[host] = map[string]answer{}
	}
	w.answers[host][tag] = a
}

func tagOf(cmd string) string {
	first, _, _ := strings.Cut(cmd, "\n")
	return strings.TrimPrefix(first, "# ")
}

func (f *fakeHost) Run(_ context.Context, cmd string) (sshx.Result, error) {
	w := f.w
	time.Sleep(w.delay)
	w.mu.Lock()
	defer w.mu.Unlock()
	tag := tagOf(cmd)
	w.calls = append(w.calls, f.name+": "+tag)
	w.cmds = append(w.cmds, f.name+": "+cmd)
	a, ok := w.answers[f.name][tag]
	if !ok {
		a, ok = w.answers["*"][tag]
	}
	if !ok {
		w.unexpected = append(w.unexpected, f.name+": "+tag)
		a = answer{code: 127, err: "fake: no recorded answer for " + tag}
	}
	if a.fn != nil {
		a = a.fn(w, cmd)
	}
	res := sshx.Result{Stdout: a.out, Stderr: a.err, ExitCode: a.code}
	if a.code != 0 {
		return res, &sshx.ExitError{Host: f.name, Cmd: cmd, ExitCode: a.code, Stderr: sshx.Tail(a.err, 5)}
	}
	return res, nil
}

func (f *fakeHost) Upload(_ context.Context, path string, data []byte, mode os.FileMode, owner string) error {
	time.Sleep(f.w.delay)
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	f.w.uploads = append(f.w.uploads, upload{f.name, path, data, mode, owner})
	return nil
}

func (w *world) changes() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, c := range w.calls {
		if !strings.Contains(c, ": probe ") {
			out = append(out, c)
		}
	}
	return out
}

var fakeVipd = []byte("\x7fELF fake vipd binary")

// fakePackage is the vipd package the test runners install (amd64 only).
var fakePackage = &VipdPackage{Version: "1.2.0", Arch: "amd64", Deb: func() ([]byte, error) { return []byte("!<arch>\nfake vipd package"), nil }, Binary: fakeVipd, Unit: []byte("[Unit]\nDescription=fake vipd unit\n")}

// testGossipKey is the gossip key file the lb hosts of doneWorld hold (32 bytes, base64).
var testGossipKey = []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x42}, 32)) + "\n")

func refTopology(t *testing.T) *topology.Topology {
	t.Helper()
	top, _, err := topology.Load("../../deploy/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	top.File = "topology.yaml"
	return top
}

func newTestRunner(t *testing.T, top *topology.Topology, w *world, dry bool) (*Runner, *bytes.Buffer) {
	var out bytes.Buffer
	r := NewRunner(Options{
		Topology: top,
		Connect: func(_ context.Context, h topology.Host) (Host, error) {
			return &fakeHost{name: h.Name, w: w}, nil
		},
		VipdPackage: func(arch string) (*VipdPackage, error) {
			if arch != "amd64" {
				return nil, fmt.Errorf("no vipd for %s", arch)
			}
			return fakePackage, nil
		},
		Out:          &out,
		DryRun:       dry,
		Poll:         1,
		VIPTimeout:   1e9,
		ReadyTimeout: 1e9,
		Getenv:       func(string) string { return "" },
	})
	return r, &out
}

const ubuntuFacts = "os=ubuntu\nversion=24.04\npretty=Ubuntu 24.04.3 LTS\narch=x86_64\ncpus=2\nmem_kb=4030000\nhostname=%s\niface=ens33\nswap_kb=%d\n"

// freshWorld: Ubuntu 24.04 hosts on which nothing was done yet (swap on).
func freshWorld(top *topology.Topology) *world {
	w := newWorld()
	for _, h := range top.Hosts {
		w.set(h.Name, "probe facts", answer{out: fmt.Sprintf(ubuntuFacts, h.Name, 2097148)})
	}
	w.set("*", "probe lb", answer{out: "dir \nuser no\nenabled \nactive inactive\n"})
	w.set("*", "probe lb/gossip-key", answer{code: 1})
	w.set("*", "probe common", answer{out: "swapon 1\nfstab 1\nheld \ncontainerd inactive\nkubelet \n"})
	w.set("*", "probe cluster", answer{code: 1})
	w.set("*", "probe init/leftovers", answer{})
	w.set("*", "probe cni", answer{code: 127, err: "sh: kubectl: not found"})
	w.set("*", "probe join", answer{code: 1})
	return w
}

func lbProbeDone(t *testing.T, top *topology.Topology, h topology.Host) string {
	cfg, err := RenderVipdConfig(top, h, "ens33")
	if err != nil {
		t.Fatal(err)
	}
	key := ""
	if top.GossipEnabled() {
		key = fmt.Sprintf("file %s 640 root:vipd %s\n", VipdGossipKey, sha(testGossipKey))
	}
	return fmt.Sprintf("file %s 755 root:root %s\nfile %s 640 root:vipd %s\nfile %s 644 root:root %s\n%sdir 750 root:vipd\nuser yes\nenabled enabled\nactive active\npkg %s ii \n",
		VipdBinaryPath, sha(fakeVipd), VipdConfigPath, sha(cfg), VipdUnitPath, sha(fakePackage.Unit), key, fakePackage.Version)
}

func commonProbeDone(top *topology.Topology) string {
	k8s := "# Kubernetes " + top.Channel() + " packages (bootstrap)\n" + top.KubernetesRepoLine() + "\n"
	return fmt.Sprintf(`swapon 0
fstab 0
file %s %s
file %s %s
file %s %s
keyring %s
pkg containerd 1.7.24-0ubuntu1 ii 
pkg kubelet 1.33.6-1.1 hi 
pkg kubeadm 1.33.6-1.1 hi 
pkg kubectl 1.33.6-1.1 hi 
held kubeadm kubectl kubelet 
cgroup systemd
containerd active
kubelet enabled
`, ModulesConf, sha([]byte(modulesContent)), SysctlConf, sha([]byte(sysctlContent)), KubernetesList, sha([]byte(k8s)), topology.KubernetesKeyring)
}

func nodesOut(top *topology.Topology, skip string) string {
	var b strings.Builder
	for _, n := range top.Nodes() {
		if n.Name == skip {
			continue
		}
		role := "<none>"
		if n.Role == topology.RoleMaster {
			role = "control-plane"
		}
		fmt.Fprintf(&b, "%s   Ready   %s   10m   v1.33.6\n", n.Name, role)
	}
	return b.String()
}

// doneWorld: every phase done, the cluster healthy, lb1 holding the VIP.
func doneWorld(t *testing.T, top *topology.Topology) *world {
	w := newWorld()
	for _, h := range top.Hosts {
		w.set(h.Name, "probe facts", answer{out: fmt.Sprintf(ubuntuFacts, h.Name, 0)})
		if h.Role == topology.RoleLB {
			w.set(h.Name, "probe lb", answer{out: lbProbeDone(t, top, h)})
			w.set(h.Name, "probe lb/gossip-key", answer{out: string(testGossipKey)})
			vip := ""
			if h.Name == "lb1" {
				vip = "2: ens33    inet 192.168.10.100/24 scope global secondary ens33\n"
			}
			w.set(h.Name, "probe lb/vip", answer{out: "1: lo    inet 127.0.0.1/8 scope host lo\n2: ens33    inet " + h.Address + "/24 brd 192.168.10.255 scope global ens33\n" + vip})
		}
	}
	w.set("*", "probe common", answer{out: commonProbeDone(top)})
	w.set("*", "probe cluster", answer{})
	w.set("*", "probe cluster/nodes", answer{out: nodesOut(top, "")})
	w.set("*", "probe cni", answer{out: "daemonset.apps/calico-node\n"})
	w.set("*", "probe join", answer{})
	w.set("*", "probe init/leftovers", answer{})
	w.set("*", "probe join/etcd-members", answer{out: etcdMembers(top, "k8s-master-1", "k8s-master-2", "k8s-master-3")})
	w.set("*", "probe verify/nodes", answer{out: nodesOut(top, "")})
	w.set("*", "probe verify/healthz", answer{out: "ok"})
	w.set("*", "probe verify/stats", answer{out: "200"})
	return w
}
