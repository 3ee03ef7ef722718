package phases

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/vipd-project/vipd/pkg/sshx"
	"github.com/vipd-project/vipd/pkg/topology"
)

// kubeVersion is a Kubernetes release version (1.34.2).
type kubeVersion struct{ major, minor, patch int }

func parseKubeVersion(s string) (kubeVersion, bool) {
	var v kubeVersion
	t := strings.TrimPrefix(strings.TrimSpace(s), "v")
	n, err := fmt.Sscanf(t, "%d.%d.%d", &v.major, &v.minor, &v.patch)
	if err != nil || n != 3 || fmt.Sprintf("%d.%d.%d", v.major, v.minor, v.patch) != t {
		return kubeVersion{}, false
	}
	return v, true
}

// CheckVersionArg checks a version given on the command line ("1.34.2" or "v1.34.2").
func CheckVersionArg(s string) error {
	if _, ok := parseKubeVersion(s); !ok {
		return fmt.Errorf("--to %q: want a Kubernetes version like 1.34.2", s)
	}
	return nil
}

func (v kubeVersion) String() string { return fmt.Sprintf("%d.%d.%d", v.major, v.minor, v.patch) }

func (v kubeVersion) less(o kubeVersion) bool {
	if v.major != o.major {
		return v.major < o.major
	}
	if v.minor != o.minor {
		return v.minor < o.minor
	}
	return v.patch < o.patch
}

// checkUpgradeStep applies kubeadm's rule to an upgrade from the control plane's version:
// the same minor (a patch release) or the next one; never down, never a minor skipped.
func checkUpgradeStep(from, to kubeVersion) error {
	switch {
	case to.less(from):
		return fmt.Errorf("--to %s: the control plane runs %s; kubeadm does not downgrade", to, from)
	case to.major != from.major || to.minor > from.minor+1:
		return fmt.Errorf("--to %s: the control plane runs %s; kubeadm upgrades one minor version at a time: upgrade to 1.%d.x first", to, from, from.minor+1)
	}
	return nil
}

// UpgradeOptions select what `bootstrap upgrade` does.
type UpgradeOptions struct {
	To string // target version, "1.34.2"
	// Only, when set, upgrades only this host (the masters must be upgraded before the
	// workers, the first master before the others).
	Only string
	// WorkerBatch is how many workers are upgraded at the same time (default 1).
	WorkerBatch int
}

// nodeVersions is what the upgrade asks of a host before deciding what to do on it.
type nodeVersions struct {
	kubeadm, kubelet, apiserver string // "v1.34.2"; apiserver "" on a worker
	unschedulable               bool
}

// upgradeState is the cluster as the upgrade found it.
type upgradeState struct {
	to    kubeVersion
	vTo   string // "v1.34.2"
	nodes map[string]string
	vers  map[string]*nodeVersions
	nt    *topology.Topology // the topology at the target version (its apt source)
}

// Upgrade upgrades the cluster to o.To the kubeadm way: the first master with `kubeadm
// upgrade apply`, the other masters with `kubeadm upgrade node`, one at a time, then the
// workers in batches; kubeadm, kubelet and kubectl re-pinned to the target on each. A
// master's backend is drained on every lb (vipd backend drain) before its control plane
// restarts and enabled again once its /readyz answers; every node is drained before its
// kubelet restarts and uncordoned after. A host already at the target is skipped, so a run
// killed at any point is finished by running it again.
func (r *Runner) Upgrade(ctx context.Context, o UpgradeOptions) error {
	to, ok := parseKubeVersion(o.To)
	if !ok {
		return fmt.Errorf("--to %q: want a Kubernetes version like 1.34.2", o.To)
	}
	if o.WorkerBatch <= 0 {
		o.WorkerBatch = 1
	}
	if o.Only != "" {
		if h, ok := r.t.Host(o.Only); !ok || h.Role == topology.RoleLB {
			return fmt.Errorf("--only %s: not a master or worker of %s", o.Only, r.t.File)
		}
	}
	st, err := r.upgradeProbe(ctx, to)
	if err != nil {
		return err
	}
	masters := r.t.Masters()
	low := to
	for _, m := range masters {
		v, ok := parseKubeVersion(st.vers[m.Name].apiserver)
		if !ok {
			return fmt.Errorf("the apiserver on %s reports no version (%q): check its control plane first", m.Name, st.vers[m.Name].apiserver)
		}
		if v.less(low) {
			low = v
		}
		if to.less(v) {
			return fmt.Errorf("--to %s: the apiserver on %s already runs %s; kubeadm does not downgrade", to, m.Name, v)
		}
	}
	if err := checkUpgradeStep(low, to); err != nil {
		return err
	}
	r.Line(masters[0].Name, "upgrade", fmt.Sprintf("control plane at %s, target %s", low, to), -1)
	firstDone := func() bool { return st.vers[masters[0].Name].apiserver == st.vTo }
	for i, m := range masters {
		if o.Only != "" && o.Only != m.Name {
			continue
		}
		if i > 0 && o.Only != "" && !firstDone() {
			return fmt.Errorf("%s: the first master %s is not upgraded yet (kubeadm upgrade apply runs there first): upgrade it first", m.Name, masters[0].Name)
		}
		if err := r.upgradeHost(ctx, st, m, i == 0); err != nil {
			return err
		}
	}
	var workers []topology.Host
	for _, w := range r.t.Workers() {
		if o.Only == "" || o.Only == w.Name {
			workers = append(workers, w)
		}
	}
	if len(workers) > 0 && o.Only != "" {
		for _, m := range masters {
			if st.vers[m.Name].apiserver != st.vTo {
				return fmt.Errorf("the control plane on %s is not at %s yet: upgrade the masters before the workers", m.Name, to)
			}
		}
	}
	for i := 0; i < len(workers); i += o.WorkerBatch {
		batch := workers[i:min(i+o.WorkerBatch, len(workers))]
		if err := forEach(batch, func(w topology.Host) error { return r.upgradeHost(ctx, st, w, false) }); err != nil {
			return err
		}
	}
	if !r.o.DryRun && o.Only == "" && r.t.Cluster.KubernetesVersion != to.String() {
		r.Line("cluster", "upgrade", fmt.Sprintf("at %s: now set cluster.kubernetesVersion: %q in %s (`bootstrap up` refuses a file older than the cluster)", to, to.String(), r.t.File), -1)
	}
	return nil
}

// upgradeProbe asks every node for its versions and state.
func (r *Runner) upgradeProbe(ctx context.Context, to kubeVersion) (*upgradeState, error) {
	st := &upgradeState{to: to, vTo: "v" + to.String(), vers: map[string]*nodeVersions{}}
	nt := *r.t
	nt.Cluster.KubernetesVersion = to.String()
	from := topology.Channel(r.t.Cluster.KubernetesVersion)
	nt.Packages.KubernetesRepo = strings.Replace(r.t.Packages.KubernetesRepo, "/"+from+"/", "/"+nt.Channel()+"/", 1)
	nt.Packages.KubernetesKey = strings.Replace(r.t.Packages.KubernetesKey, "/"+from+"/", "/"+nt.Channel()+"/", 1)
	st.nt = &nt
	var err error
	if st.nodes, err = r.nodesOn(ctx, r.firstMaster()); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	err = forEach(r.t.Nodes(), func(h topology.Host) error {
		v, err := r.probeVersions(ctx, h, st.nodes)
		mu.Lock()
		st.vers[h.Name] = v
		mu.Unlock()
		return err
	})
	return st, err
}

func (r *Runner) probeVersions(ctx context.Context, h topology.Host, nodes map[string]string) (*nodeVersions, error) {
	v := &nodeVersions{}
	script := "kubeadm version -o short 2>/dev/null || echo none"
	if h.Role == topology.RoleMaster {
		script += "; curl -ks --max-time 3 https://" + r.backendOf(h) + "/version || echo '{}'"
	}
	out, _, err := r.probe(ctx, h, "upgrade/versions", script)
	if err != nil {
		return nil, err
	}
	first, rest, _ := strings.Cut(out, "\n")
	v.kubeadm = strings.TrimSpace(first)
	if h.Role == topology.RoleMaster {
		var ver struct {
			GitVersion string `json:"gitVersion"`
		}
		_ = json.Unmarshal([]byte(strings.TrimSpace(rest)), &ver)
		v.apiserver = ver.GitVersion
	}
	// `kubectl get nodes --no-headers -o wide`-less: NAME STATUS ROLES AGE VERSION.
	out, _, err = r.probe(ctx, r.firstMaster(), "upgrade/node", kubectl+" get node --no-headers "+sshx.Quote(h.Name))
	if err != nil {
		return nil, err
	}
	if f := strings.Fields(out); len(f) >= 5 {
		v.kubelet = f[4]
		v.unschedulable = strings.Contains(f[1], "SchedulingDisabled")
	}
	return v, nil
}

// upgradeHost brings one node to the target, skipping what is done.
func (r *Runner) upgradeHost(ctx context.Context, st *upgradeState, h topology.Host, first bool) error {
	start := time.Now()
	if _, listed := st.nodes[h.Name]; !listed {
		r.Line(h.Name, "upgrade", "not a node of the cluster: skipped (`bootstrap up` joins it at the file's version)", -1)
		return nil
	}
	v := st.vers[h.Name]
	control := h.Role == topology.RoleMaster
	cpDone := !control || v.apiserver == st.vTo
	if first && cpDone {
		for _, m := range r.t.Masters() {
			cpDone = cpDone && st.vers[m.Name].apiserver == st.vTo
		}
	}
	if v.kubeadm == st.vTo && cpDone && v.kubelet == st.vTo && !v.unschedulable {
		if control && !r.o.DryRun {
			if err := r.enableLeftDrained(ctx, h); err != nil {
				return err
			}
		}
		if !r.o.DryRun {
			// A run killed between installing the packages and holding them left them
			// unheld: the next apt-get upgrade would move them past the cluster.
			if err := r.holdLeftUnheld(ctx, h); err != nil {
				return err
			}
		}
		r.Line(h.Name, "upgrade", "already at "+st.vTo, -1)
		return nil
	}
	var todo []string
	if v.kubeadm != st.vTo {
		todo = append(todo, fmt.Sprintf("apt-get install kubeadm=%s-* (held), apt source %s", st.to, st.nt.Channel()))
	}
	if control {
		todo = append(todo, "vipd backend drain "+r.backendOf(h)+" on every lb")
		if first {
			todo = append(todo, "kubeadm upgrade plan "+st.vTo, "kubeadm upgrade apply -y "+st.vTo)
		} else {
			todo = append(todo, "kubeadm upgrade node")
		}
	} else {
		todo = append(todo, "kubeadm upgrade node")
	}
	todo = append(todo, "kubectl drain "+h.Name)
	if v.kubelet != st.vTo {
		todo = append(todo, fmt.Sprintf("apt-get install kubelet=%s-* kubectl=%s-* (held)", st.to, st.to))
	}
	todo = append(todo, "systemctl restart kubelet")
	if control {
		todo = append(todo, "wait for its /readyz, vipd backend enable on every lb")
	}
	todo = append(todo, "wait for the node Ready at "+st.vTo+", kubectl uncordon "+h.Name)
	if r.o.DryRun {
		r.Line(h.Name, "upgrade", fmt.Sprintf("%s -> %s", orDash(v.kubelet), st.vTo), -1)
		for _, t := range todo {
			r.Line(h.Name, "upgrade", "would "+t, -1)
		}
		return nil
	}
	if err := r.upgradeSteps(ctx, st, h, v, control, first); err != nil {
		r.reportFailureNoRerun(h.Name, "upgrade", err, time.Since(start))
		return &PhaseError{Host: h.Name, Phase: "upgrade", Err: err}
	}
	// kubeadm re-pinned by a killed run, not re-pinned now, may have been left unheld.
	if err := r.holdLeftUnheld(ctx, h); err != nil {
		r.reportFailureNoRerun(h.Name, "upgrade", err, time.Since(start))
		return &PhaseError{Host: h.Name, Phase: "upgrade", Err: err}
	}
	v.kubeadm, v.kubelet, v.unschedulable = st.vTo, st.vTo, false
	if control {
		v.apiserver = st.vTo
	}
	r.Line(h.Name, "upgrade", "upgraded to "+st.vTo, time.Since(start))
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (r *Runner) upgradeSteps(ctx context.Context, st *upgradeState, h topology.Host, v *nodeVersions, control, first bool) error {
	op := r.firstMaster()
	if h.Name == op.Name {
		if o, err := r.opMaster(h); err == nil {
			op = o
		}
	}
	if v.kubeadm != st.vTo {
		if err := r.repin(ctx, st, h, "kubeadm"); err != nil {
			return err
		}
	}
	if control {
		if first {
			if _, err := r.change(ctx, h, "kubeadm upgrade plan", "kubeadm upgrade plan "+st.vTo); err != nil {
				return err
			}
		}
		if err := r.drainBackend(ctx, h); err != nil {
			return err
		}
	}
	cmd := "kubeadm upgrade node"
	if first {
		cmd = "kubeadm upgrade apply -y " + st.vTo
	}
	t0 := time.Now()
	if _, err := r.change(ctx, h, "kubeadm upgrade", cmd); err != nil {
		return err
	}
	r.Line(h.Name, "upgrade", cmd+" done", time.Since(t0))
	t0 = time.Now()
	drain := fmt.Sprintf("%s drain %s --ignore-daemonsets --delete-emptydir-data --timeout=%ds", kubectl, sshx.Quote(h.Name), int(DrainTimeout.Seconds()))
	if _, err := r.change(ctx, op, "kubectl drain", drain); err != nil {
		return err
	}
	r.Line(h.Name, "upgrade", "node drained (kubectl drain on "+op.Name+")", time.Since(t0))
	if v.kubelet != st.vTo {
		if err := r.repin(ctx, st, h, "kubelet", "kubectl"); err != nil {
			return err
		}
	}
	if _, err := r.change(ctx, h, "restart kubelet", "systemctl daemon-reload && systemctl restart kubelet"); err != nil {
		return err
	}
	if control {
		if err := r.waitReadyz(ctx, h, r.o.ReadyTimeout); err != nil {
			return err
		}
		if err := r.enableBackend(ctx, h); err != nil {
			return err
		}
	}
	t0 = time.Now()
	var last string
	if _, err := r.waitFor(ctx, r.o.ReadyTimeout, r.o.Poll, func() (bool, error) {
		out, _, err := r.probe(ctx, op, "upgrade/node", kubectl+" get node --no-headers "+sshx.Quote(h.Name))
		last = strings.TrimSpace(out)
		f := strings.Fields(out)
		return len(f) >= 5 && isReady(f[1]) && f[4] == st.vTo, err
	}); err != nil {
		return &StepError{Step: "wait for node " + h.Name + " Ready at " + st.vTo, Err: fmt.Errorf("%w (last: %q)", err, last),
			Fix: "look at the kubelet log on " + h.Name + " (journalctl -u kubelet)"}
	}
	if _, err := r.change(ctx, op, "kubectl uncordon", kubectl+" uncordon "+sshx.Quote(h.Name)); err != nil {
		return err
	}
	r.Line(h.Name, "upgrade", "node Ready at "+st.vTo+", uncordoned", time.Since(t0))
	return nil
}

// repin installs the target version of packages (the exact Debian version apt-cache
// madison lists) from the target's apt source, held.
func (r *Runner) repin(ctx context.Context, st *upgradeState, h topology.Host, pkgs ...string) error {
	t0 := time.Now()
	nr := r.withTopology(st.nt)
	k8sList, _ := nr.listLines()
	if st.nt.Packages.KubernetesKey != r.t.Packages.KubernetesKey {
		if _, err := r.change(ctx, h, "upgrade/kubernetes-key", fetchKey(st.nt.Packages.KubernetesKey, topology.KubernetesKeyring)); err != nil {
			return err
		}
	}
	if err := r.upload(ctx, h, KubernetesList, []byte(k8sList), 0o644, "root:root"); err != nil {
		return err
	}
	update := "apt-get update -q -o Dir::Etc::sourcelist=" + KubernetesList + " -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0"
	if _, err := r.change(ctx, h, "upgrade/apt-update", aptRun(update)); err != nil {
		return err
	}
	v := st.to.String()
	out, _, err := r.probe(ctx, h, "upgrade/package-version", fmt.Sprintf(`apt-cache madison %s | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -E '^%s-' | head -n 1`, pkgs[0], strings.ReplaceAll(v, ".", `\.`)))
	if err != nil {
		return err
	}
	exact := strings.TrimSpace(out)
	if exact == "" {
		return &StepError{Step: "find " + pkgs[0] + " " + v, Err: fmt.Errorf("apt-cache madison %s lists no %s-* version", pkgs[0], v),
			Fix: fmt.Sprintf("check the repository %s: it must carry the %s channel", st.nt.Packages.KubernetesRepo, st.nt.Channel())}
	}
	var pins []string
	for _, p := range pkgs {
		pins = append(pins, p+"="+exact)
	}
	names := strings.Join(pkgs, " ")
	// Installed while held (--allow-change-held-packages): a run killed between the install and
	// the hold below leaves them held, never free for the next apt-get upgrade to move.
	cmd := aptRun(aptInstall + " --allow-change-held-packages " + strings.Join(pins, " "))
	if _, err := r.change(ctx, h, "upgrade/install", cmd); err != nil {
		return err
	}
	if _, err := r.change(ctx, h, "upgrade/hold", aptRun("apt-mark hold "+names)); err != nil {
		return err
	}
	r.Line(h.Name, "upgrade", names+" "+exact+" installed and held", time.Since(t0))
	return nil
}

// holdLeftUnheld holds the Kubernetes packages installed on h but not held (an upgrade
// interrupted between `apt-get install` and `apt-mark hold`).
func (r *Runner) holdLeftUnheld(ctx context.Context, h topology.Host) error {
	out, _, err := r.probe(ctx, h, "upgrade/held", `held=$(apt-mark showhold 2>/dev/null)
for p in kubeadm kubelet kubectl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || continue
  printf '%s\n' "$held" | grep -qx "$p" || echo "$p"
done`)
	if err != nil {
		return err
	}
	unheld := strings.Fields(out)
	if len(unheld) == 0 {
		return nil
	}
	if _, err := r.change(ctx, h, "upgrade/hold", aptRun("apt-mark hold "+strings.Join(unheld, " "))); err != nil {
		return err
	}
	r.Line(h.Name, "upgrade", strings.Join(unheld, " ")+" held again (an earlier run stopped before holding them)", -1)
	return nil
}

// versionGuard stops `up` from downgrading a host: one whose kubeadm is newer than
// cluster.kubernetesVersion was upgraded (`bootstrap upgrade` does not edit the file), and up
// would reinstall the older packages under the running cluster. installed is kubeadm's Debian
// version ("" when absent). An older kubeadm is up's to fix (a host prepared from an older
// image); a cluster's minor upgrade is `bootstrap upgrade`'s.
func versionGuard(t *topology.Topology, h topology.Host, installed string) error {
	if installed == "" {
		return nil
	}
	have, ok1 := parseKubeVersion(strings.SplitN(installed, "-", 2)[0])
	want, ok2 := parseKubeVersion(t.Cluster.KubernetesVersion)
	if ok1 && ok2 && want.less(have) {
		return &StepError{Step: "check the Kubernetes version", Err: fmt.Errorf("%s has kubeadm %s, newer than cluster.kubernetesVersion %s: up does not downgrade", h.Name, have, want),
			Fix: fmt.Sprintf("the cluster was upgraded: set cluster.kubernetesVersion: %q in %s", have.String(), t.File)}
	}
	return nil
}
