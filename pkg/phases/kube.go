package phases

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/vipd-project/vipd/pkg/sshx"
	"github.com/vipd-project/vipd/pkg/topology"
)

const kubectl = "kubectl --kubeconfig " + AdminConf

// firstMaster is the master kubeadm init runs on: the first in the file.
func (r *Runner) firstMaster() topology.Host { return r.t.Masters()[0] }

// ---- init

type initPhase struct{}

func (initPhase) Name() string   { return PhaseInit }
func (initPhase) Title() string  { return "Initialise the cluster on the first master" }
func (initPhase) Parallel() bool { return false }
func (initPhase) Hosts(r *Runner) []topology.Host {
	return []topology.Host{r.firstMaster()}
}

func (initPhase) Probe(ctx context.Context, r *Runner, h topology.Host) (Status, error) {
	// What an interrupted kubeadm init leaves: a kubeadm init still running (orphan.go), or
	// admin.conf without bootstrap's last step of init (the copy to /root/.kube/config; kubeadm
	// writes admin.conf before it even starts the control plane), or files that would fail
	// its preflight.
	out, _, err := r.probe(ctx, h, "init/leftovers", orphanProbe+leftoversScript+"[ -e "+KubeletConf+" ] && echo "+KubeletConf+
		"; [ -e "+AdminConf+" ] && [ ! -e "+rootKubeconfig+" ] && echo "+initUnfinished+"; true")
	if err != nil {
		return Status{}, err
	}
	orphan, out := splitOrphan(out)
	unfinished := strings.Contains(out, initUnfinished)
	out = strings.ReplaceAll(out, initUnfinished, "")
	if unfinished && orphan == "" {
		// Nodes joined already: not an interrupted init (joins run after it), just a missing copy.
		if _, nodes, err := r.clusterNodes(ctx); err == nil && len(nodes) > 1 {
			unfinished = false
		}
	}
	if orphan == "" && !unfinished {
		exists, nodes, err := r.clusterNodes(ctx)
		if err != nil {
			return Status{}, err
		}
		if exists {
			return Status{Done: true, Detail: fmt.Sprintf("cluster exists (%d nodes)", len(nodes))}, nil
		}
	}
	st := Status{Todo: []string{
		fmt.Sprintf("upload %s (0600; controlPlaneEndpoint %s, kubernetesVersion v%s, podSubnet %s)", KubeadmConfig, r.t.APIEndpoint(), r.t.Cluster.KubernetesVersion, r.t.Cluster.PodCIDR),
		"kubeadm init --config " + KubeadmConfig + " --upload-certs",
		"copy " + AdminConf + " to /root/.kube/config (0600)",
	}}
	var found []string
	if orphan != "" {
		found = append(found, orphanNote("kubeadm init", orphan))
	}
	if unfinished {
		found = append(found, AdminConf+" without "+rootKubeconfig+": kubeadm init did not finish")
	}
	if left := strings.Fields(out); len(left) > 0 {
		found = append(found, "leftovers of an interrupted kubeadm init: "+strings.Join(left, " "))
	}
	if len(found) > 0 {
		st.HalfDone = strings.Join(found, "; ") + "; the rerun repairs it"
		st.Detail = st.HalfDone
		st.Todo = append([]string{"kubeadm reset -f (undo the half-done init)"}, st.Todo...)
		if orphan != "" {
			st.Todo = append([]string{"stop the running kubeadm init (SIGTERM, SIGKILL after 10s)"}, st.Todo...)
		}
		st.data = &initRepair{stop: orphan}
	}
	return st, nil
}

// initRepair is what a rerun undoes before kubeadm init runs again.
type initRepair struct {
	stop string // PID of the interrupted run's kubeadm init, still running
}

const (
	rootKubeconfig = "/root/.kube/config"
	initUnfinished = "init-unfinished"
)

func (initPhase) Run(ctx context.Context, r *Runner, h topology.Host, st Status) (string, error) {
	repaired := ""
	if rep, ok := st.data.(*initRepair); ok {
		if rep.stop != "" {
			if _, err := r.change(ctx, h, "init/stop-orphan", stopOrphanCmd(rep.stop)); err != nil {
				return "", err
			}
		}
		if _, err := r.change(ctx, h, "init/reset", "kubeadm reset -f"); err != nil {
			return "", err
		}
		repaired = "half-done init undone (kubeadm reset -f), "
	}
	if _, err := r.change(ctx, h, "init/dir", "install -d -m 0755 /etc/kubernetes"); err != nil {
		return "", err
	}
	if err := r.upload(ctx, h, KubeadmConfig, RenderKubeadmConfig(r.t, h), 0o600, "root:root"); err != nil {
		return "", err
	}
	// stdout holds the join commands with their secrets: it is not kept or shown.
	if _, err := r.change(ctx, h, "kubeadm init", kubeadmTracked("init --config "+KubeadmConfig+" --upload-certs")); err != nil {
		se := stderrOf(err)
		if phase, ok := initFailedAfterControlPlane(se); ok {
			if ferr := r.finishInit(ctx, h); ferr != nil {
				return "", fmt.Errorf("%w; finishing it from phase %s failed too: %w", err, phase, ferr)
			}
			repaired += fmt.Sprintf("kubeadm init's phases from %s run again after: %s; ", phase, initErrLine(se))
		} else if strings.Contains(se, "[ERROR") || strings.Contains(se, "already exists") {
			return "", &StepError{Step: "kubeadm init", Err: err, Fix: fmt.Sprintf("%s has leftovers of an earlier attempt: run `kubeadm reset -f` on it (or `bootstrap reset`), then rerun", h.Name)}
		} else {
			return "", err
		}
	}
	if _, err := r.change(ctx, h, "init/kubeconfig", "install -d -m 0700 /root/.kube && install -m 0600 "+AdminConf+" "+rootKubeconfig); err != nil {
		return "", err
	}
	return repaired + "cluster initialised (controlPlaneEndpoint " + r.t.APIEndpoint() + ")", nil
}

func stderrOf(err error) string {
	if ee := asExit(err); ee != nil {
		return ee.Stderr
	}
	return ""
}

// clusterNodes asks the first master for the cluster's nodes. exists is false when the
// first master has no admin.conf (no cluster yet).
func (r *Runner) clusterNodes(ctx context.Context) (exists bool, nodes map[string]string, err error) {
	fm := r.firstMaster()
	_, ok, err := r.probe(ctx, fm, "cluster", "test -f "+AdminConf)
	if err != nil || !ok {
		return false, nil, err
	}
	out, ok, err := r.probe(ctx, fm, "cluster/nodes", kubectl+" get nodes --no-headers")
	if err != nil {
		return true, nil, err
	}
	if !ok {
		return true, nil, &StepError{Step: "list the nodes on " + fm.Name, Err: fmt.Errorf("%s exists but `kubectl get nodes` fails", AdminConf),
			Fix: fmt.Sprintf("check the control plane on %s (journalctl -u kubelet; crictl ps); if kubeadm init failed halfway, run `kubeadm reset -f` on it and rerun", fm.Name)}
	}
	return true, parseNodes(out), nil
}

// parseNodes parses `kubectl get nodes --no-headers`: name -> status.
func parseNodes(out string) map[string]string {
	nodes := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		fs := strings.Fields(line)
		if len(fs) >= 2 {
			nodes[fs[0]] = fs[1]
		}
	}
	return nodes
}

// ---- cni

type cniPhase struct{}

func (cniPhase) Name() string   { return PhaseCNI }
func (cniPhase) Title() string  { return "Install the pod network" }
func (cniPhase) Parallel() bool { return false }
func (cniPhase) Hosts(r *Runner) []topology.Host {
	switch r.t.Cluster.CNI.Name {
	case "none":
		return nil
	case "bridge":
		return r.t.Nodes()
	}
	return []topology.Host{r.firstMaster()}
}

func isURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }

func (cniPhase) Probe(ctx context.Context, r *Runner, h topology.Host) (Status, error) {
	if r.t.Cluster.CNI.Name == "bridge" {
		return probeBridge(ctx, r, h)
	}
	_, ok, err := r.probe(ctx, h, "cni", kubectl+" -n kube-system get daemonset calico-node -o name")
	if err != nil {
		return Status{}, err
	}
	if ok {
		return Status{Done: true, Detail: "calico already applied"}, nil
	}
	m := r.t.Cluster.CNI.Manifest
	todo := []string{}
	if !isURL(m) {
		todo = append(todo, fmt.Sprintf("upload %s to %s", m, CNIManifestPath))
		m = CNIManifestPath
	}
	todo = append(todo, fmt.Sprintf("kubectl apply -f %s (calico %s)", m, r.t.Cluster.CNI.Version),
		"wait for kubectl -n kube-system rollout status daemonset/calico-node")
	return Status{Todo: todo}, nil
}

func (cniPhase) Run(ctx context.Context, r *Runner, h topology.Host, _ Status) (string, error) {
	if r.t.Cluster.CNI.Name == "bridge" {
		return runBridge(ctx, r, h)
	}
	m := r.t.Cluster.CNI.Manifest
	if !isURL(m) {
		data, err := r.o.CNIManifest(m)
		if err != nil {
			return "", &StepError{Step: "read the CNI manifest", Err: err}
		}
		if err := r.upload(ctx, h, CNIManifestPath, data, 0o644, "root:root"); err != nil {
			return "", err
		}
		m = CNIManifestPath
	}
	if _, err := r.change(ctx, h, "kubectl apply (calico)", kubectl+" apply -f "+sshx.Quote(m)); err != nil {
		return "", err
	}
	secs := int(r.o.CNITimeout.Seconds())
	if _, err := r.change(ctx, h, "wait for calico", fmt.Sprintf("%s -n kube-system rollout status daemonset/calico-node --timeout=%ds", kubectl, secs)); err != nil {
		return "", err
	}
	return "calico " + r.t.Cluster.CNI.Version + " applied and ready", nil
}

// ---- verify

type verifyPhase struct{}

func (verifyPhase) Name() string   { return PhaseVerify }
func (verifyPhase) Title() string  { return "Verify the cluster through the VIP" }
func (verifyPhase) Parallel() bool { return false }
func (verifyPhase) Hosts(r *Runner) []topology.Host {
	return append([]topology.Host{r.firstMaster()}, r.t.LBs()...)
}

func (r *Runner) viaVIP() string {
	return fmt.Sprintf("%s --server %s", kubectl, r.t.APIServerURL())
}

func (verifyPhase) Probe(_ context.Context, r *Runner, h topology.Host) (Status, error) {
	if h.Role == topology.RoleLB {
		return Status{Todo: []string{fmt.Sprintf("check http://%s:%d/stats answers", h.Address, r.t.LoadBalancer.StatsPort)}}, nil
	}
	return Status{Todo: []string{
		fmt.Sprintf("check every node is Ready: %s get nodes", r.viaVIP()),
		fmt.Sprintf("check curl -k %s/healthz answers ok", r.t.APIServerURL()),
	}}, nil
}

func (verifyPhase) Run(ctx context.Context, r *Runner, h topology.Host, _ Status) (string, error) {
	if h.Role == topology.RoleLB {
		url := fmt.Sprintf("http://%s:%d/stats", h.Address, r.t.LoadBalancer.StatsPort)
		out, ok, err := r.probe(ctx, h, "verify/stats", "curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "+url)
		if err != nil {
			return "", err
		}
		if !ok || strings.TrimSpace(out) != "200" {
			return "", &StepError{Step: "check /stats", Err: fmt.Errorf("%s answered %q", url, strings.TrimSpace(out)), Fix: "check `systemctl status vipd` and `journalctl -u vipd` on " + h.Name}
		}
		return fmt.Sprintf("/stats answers on :%d", r.t.LoadBalancer.StatsPort), nil
	}
	deadline := time.Now().Add(r.o.ReadyTimeout)
	var notReady []string
	for {
		out, ok, err := r.probe(ctx, h, "verify/nodes", r.viaVIP()+" get nodes --no-headers")
		if err != nil {
			return "", err
		}
		notReady = notReady[:0]
		if ok {
			nodes := parseNodes(out)
			for _, n := range r.t.Nodes() {
				if st := nodes[n.Name]; !isReady(st) {
					if st == "" {
						st = "missing"
					}
					notReady = append(notReady, n.Name+" "+st)
				}
			}
		} else {
			notReady = append(notReady, "the API through the VIP does not answer")
		}
		if len(notReady) == 0 {
			break
		}
		if time.Now().After(deadline) {
			sort.Strings(notReady)
			return "", &StepError{Step: "wait for nodes Ready", Err: fmt.Errorf("after %s: %s", r.o.ReadyTimeout, strings.Join(notReady, ", ")),
				Fix: "look at `kubectl get pods -n kube-system` and the kubelet log (journalctl -u kubelet) of those nodes"}
		}
		if err := sleep(ctx, r.o.Poll); err != nil {
			return "", err
		}
	}
	out, _, err := r.probe(ctx, h, "verify/healthz", "curl -ksS --max-time 5 "+r.t.APIServerURL()+"/healthz")
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(out) != "ok" {
		return "", &StepError{Step: "check /healthz through the VIP", Err: fmt.Errorf("%s/healthz answered %q", r.t.APIServerURL(), strings.TrimSpace(out))}
	}
	return fmt.Sprintf("%d/%d nodes Ready through %s, /healthz ok", len(r.t.Nodes()), len(r.t.Nodes()), r.t.APIServerURL()), nil
}

func isReady(status string) bool {
	for _, s := range strings.Split(status, ",") {
		if s == "Ready" {
			return true
		}
	}
	return false
}
