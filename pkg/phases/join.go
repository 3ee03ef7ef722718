package phases

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/vipd-project/vipd/pkg/sshx"
	"github.com/vipd-project/vipd/pkg/topology"
)

// JoinConfig is where a joining node's kubeadm JoinConfiguration (with the bootstrap token
// and, for a master, the certificate key) is written, 0600 in a 0700 directory on a tmpfs, and
// removed when kubeadm join ends: the secrets never appear on a command line (ps, sudo's
// log) and do not outlive the join, not even a reboot.
const (
	JoinConfigDir = "/run/bootstrap"
	JoinConfig    = JoinConfigDir + "/kubeadm-join.yaml"
)

// ---- joins

type joinSecrets struct {
	token, caHash, certKey string
}

var (
	reToken   = regexp.MustCompile(`--token\s+(\S+)`)
	reCAHash  = regexp.MustCompile(`--discovery-token-ca-cert-hash\s+(\S+)`)
	reCertKey = regexp.MustCompile(`(?m)^([0-9a-f]{64})\s*$`)
)

// secrets makes (once per run) a fresh bootstrap token and, for masters, a certificate key
// on the first master. They are kept in memory only.
func (r *Runner) secrets(ctx context.Context, control bool) (*joinSecrets, error) {
	r.joinMu.Lock()
	defer r.joinMu.Unlock()
	fm := r.firstMaster()
	if r.join == nil {
		out, err := r.change(ctx, fm, "join/token", "kubeadm token create --ttl 1h --print-join-command")
		if err != nil {
			return nil, err
		}
		t, h := reToken.FindStringSubmatch(out), reCAHash.FindStringSubmatch(out)
		if t == nil || h == nil {
			return nil, &StepError{Step: "kubeadm token create", Err: fmt.Errorf("no --token and --discovery-token-ca-cert-hash in its output")}
		}
		r.join = &joinSecrets{token: t[1], caHash: h[1]}
	}
	if control && r.join.certKey == "" {
		// With init's configuration: without it kubeadm derives the API server's bind address
		// from the default route (a host without one fails: `cannot use "0.0.0.0" as the bind
		// address for the API Server`) and looks the version up on the internet.
		out, err := r.change(ctx, fm, "join/certificate-key", fmt.Sprintf("if [ -f %[1]s ]; then kubeadm init phase upload-certs --upload-certs --config %[1]s; else kubeadm init phase upload-certs --upload-certs; fi", KubeadmConfig))
		if err != nil {
			return nil, err
		}
		k := reCertKey.FindAllStringSubmatch(out, -1)
		if k == nil {
			return nil, &StepError{Step: "kubeadm init phase upload-certs", Err: fmt.Errorf("no certificate key in its output")}
		}
		r.join.certKey = k[len(k)-1][1]
	}
	return r.join, nil
}

// etcdctl runs etcdctl in the etcd static pod of a master (kubeadm's stacked etcd: the image
// carries etcdctl and the pod mounts the etcd certificates).
func etcdctl(master topology.Host, args string) string {
	return fmt.Sprintf("%s -n kube-system exec %s -- etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/server.crt --key /etc/kubernetes/pki/etcd/server.key %s",
		kubectl, sshx.Quote("etcd-"+master.Name), args)
}

// staleMember returns the ID of h's etcd member, asked of the first master's etcd: a member
// named h or with h's peer URL. "" when there is none.
func (r *Runner) staleMember(ctx context.Context, h topology.Host) (string, error) {
	c, err := r.Host(ctx, r.firstMaster())
	if err != nil {
		return "", err
	}
	res, err := c.Run(ctx, probeCmd("join/etcd-members", etcdctl(r.firstMaster(), "member list")))
	out := res.Stdout
	if code, err := exitCode(err); err != nil {
		return "", fmt.Errorf("probe join/etcd-members: %w", err)
	} else if code != 0 {
		return "", &StepError{Step: "list the etcd members on " + r.firstMaster().Name, Err: fmt.Errorf("etcdctl member list failed: %s", sshx.Tail(res.Stderr, 3)),
			Fix: fmt.Sprintf("check the etcd pod on %s (kubectl -n kube-system get pod etcd-%s)", r.firstMaster().Name, r.firstMaster().Name)}
	}
	peer := "https://" + h.Address + ":2380"
	for _, line := range strings.Split(out, "\n") {
		// ID, STATUS, NAME, PEER ADDRS, CLIENT ADDRS, IS LEARNER
		f := strings.Split(line, ", ")
		if len(f) >= 4 && (f[2] == h.Name || strings.Contains(f[3], peer)) {
			return strings.TrimSpace(f[0]), nil
		}
	}
	return "", nil
}

// leftoversScript prints the files an interrupted kubeadm init or join leaves behind (which
// make its next run fail its preflight checks), kubelet.conf aside.
const leftoversScript = `for f in /etc/kubernetes/pki/ca.crt /etc/kubernetes/manifests/kube-apiserver.yaml /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/bootstrap-kubelet.conf /var/lib/etcd/member; do [ -e "$f" ] && echo "$f"; done
`

// joinRepair is what a rerun undoes before joining a host an interrupted run left half-done.
type joinRepair struct {
	stop       string // PID of the kubeadm join of an interrupted run, still running (orphan.go)
	reset      bool   // kubeadm reset -f on the host (it has kubelet.conf)
	deleteNode bool   // the cluster lists the node but the host is not joined
	member     string // ID of the host's stale etcd member (masters)
}

// probeJoin tells whether h is a member: kubelet.conf on the host and the node listed by the
// first master. Anything in between, or a master's etcd member without its node, is a
// half-joined host (a join killed or failed half-way, kubernetes/kubeadm#2095): the plan
// repairs it (kubeadm reset -f, the stale node and etcd member removed) before joining again.
func (r *Runner) probeJoin(ctx context.Context, h topology.Host, control bool) (Status, error) {
	out, hasKubelet, err := r.probe(ctx, h, "join", orphanProbe+leftoversScript+"test -f "+KubeletConf)
	if err != nil {
		return Status{}, err
	}
	orphan, out := splitOrphan(out)
	leftovers := strings.Fields(out)
	exists, nodes, err := r.clusterNodes(ctx)
	if err != nil {
		return Status{}, err
	}
	_, listed := nodes[h.Name]
	fm := r.firstMaster()
	rerun := fmt.Sprintf("; then rerun %s --only %s", r.o.RerunHint, map[bool]string{true: PhaseJoinMasters, false: PhaseJoinWorkers}[control])
	switch {
	case hasKubelet && listed && orphan == "":
		return Status{Done: true, Detail: fmt.Sprintf("already a member (%s)", nodes[h.Name])}, nil
	case hasKubelet && !exists:
		return Status{}, &StepError{Step: "check membership", Err: fmt.Errorf("%s has %s but there is no cluster on %s", h.Name, KubeletConf, fm.Name),
			Fix: fmt.Sprintf("run `kubeadm reset -f` on %s%s", h.Name, rerun)}
	}
	rep := &joinRepair{stop: orphan, reset: hasKubelet || len(leftovers) > 0 || orphan != "", deleteNode: listed}
	if control && exists {
		if rep.member, err = r.staleMember(ctx, h); err != nil {
			return Status{}, err
		}
	}
	var todo, found []string
	if orphan != "" {
		found = append(found, orphanNote("kubeadm join", orphan))
		todo = append(todo, "stop it (SIGTERM, SIGKILL after 10s)")
	}
	switch {
	case hasKubelet && !listed:
		found = append(found, fmt.Sprintf("%s exists but the cluster has no node %s", KubeletConf, h.Name))
	case len(leftovers) > 0:
		found = append(found, "leftovers of an interrupted kubeadm join: "+strings.Join(leftovers, " "))
	}
	if rep.member != "" {
		found = append(found, fmt.Sprintf("etcd has a member %s for %s", rep.member, h.Name))
		todo = append(todo, fmt.Sprintf("etcdctl member remove %s (the stale etcd member of %s, through etcd-%s), before kubeadm reset stops its etcd", rep.member, h.Name, fm.Name))
	}
	if rep.reset {
		todo = append(todo, "kubeadm reset -f (undo the half-done join)")
	}
	if rep.deleteNode {
		if !hasKubelet {
			found = append(found, fmt.Sprintf("the cluster lists node %s but %s has no %s", h.Name, h.Name, KubeletConf))
		}
		todo = append(todo, fmt.Sprintf("kubectl delete node %s (on %s)", h.Name, fm.Name))
	}
	role, extra := "worker", ""
	if control {
		role = "control-plane"
		extra = fmt.Sprintf(", control plane on %s:%d, certificate key", h.Address, r.t.LoadBalancer.APIPort)
	}
	todo = append(todo, fmt.Sprintf("kubeadm join --config %s (0600, removed after: endpoint %s, fresh token, CA hash%s, node name %s) as %s", JoinConfig, r.t.APIEndpoint(), extra, h.Name, role))
	st := Status{Todo: todo, data: rep}
	if len(found) > 0 {
		st.Detail = "half-joined: " + strings.Join(found, "; ") + "; the rerun repairs it"
		st.HalfDone = st.Detail
	}
	return st, nil
}

// repairJoin undoes a half-done join found by probeJoin.
func (r *Runner) repairJoin(ctx context.Context, h topology.Host, rep *joinRepair) ([]string, error) {
	var did []string
	fm := r.firstMaster()
	if rep.stop != "" {
		if _, err := r.change(ctx, h, "join/stop-orphan", stopOrphanCmd(rep.stop)); err != nil {
			return nil, err
		}
		did = append(did, "the interrupted run's kubeadm join stopped")
	}
	if rep.member != "" {
		// First, while etcd has its quorum: a control-plane join killed after kubeadm promoted
		// the host's learner leaves a voting member whose etcd runs on the host. kubeadm reset
		// stops that etcd, and does not always remove the member (seen on the real cluster): a
		// two-member etcd has then lost its quorum and nothing can remove it any more (the
		// API server, and so `kubectl exec`, needs etcd). Asked again: it may be gone.
		id, err := r.staleMember(ctx, h)
		if err != nil {
			return nil, err
		}
		if id != "" {
			if _, err := r.change(ctx, fm, "join/etcd-member-remove", etcdctl(fm, "member remove "+sshx.Quote(id))); err != nil {
				return nil, err
			}
			did = append(did, "stale etcd member "+id+" removed")
		}
	}
	if rep.reset {
		if _, err := r.change(ctx, h, "join/reset", "rm -f "+JoinConfig+"; kubeadm reset -f"); err != nil {
			return nil, err
		}
		did = append(did, "kubeadm reset -f")
	}
	// The node last, after the reset stopped the host's kubelet (deleted before, the kubelet
	// registers it again at once), and asked again: an interrupted join's kubelet may have
	// registered it since the probe (seen on the real cluster: the next join then fails with
	// `a Node with name ... already exists`).
	if !rep.deleteNode && rep.reset {
		if _, nodes, err := r.clusterNodes(ctx); err == nil {
			_, rep.deleteNode = nodes[h.Name]
		}
	}
	if rep.deleteNode {
		if _, err := r.change(ctx, fm, "join/delete-node", kubectl+" delete node --ignore-not-found "+sshx.Quote(h.Name)); err != nil {
			return nil, err
		}
		did = append(did, "stale node deleted")
	}
	return did, nil
}

// RenderJoinConfig renders the kubeadm JoinConfiguration of a node: discovery through the
// VIP with the token and CA hash, the node name, and for a master its control-plane endpoint
// and the certificate key. Values are YAML-quoted.
func RenderJoinConfig(t *topology.Topology, h topology.Host, sec *joinSecrets, control bool) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# kubeadm join configuration for %s, written by bootstrap; removed when kubeadm join ends.\n", h.Name)
	fmt.Fprintf(&b, "apiVersion: %s\nkind: JoinConfiguration\n", KubeadmAPIVersion(t.MinorVersion()))
	fmt.Fprintf(&b, "discovery:\n  bootstrapToken:\n    apiServerEndpoint: %q\n    token: %q\n    caCertHashes:\n      - %q\n", t.APIEndpoint(), sec.token, sec.caHash)
	fmt.Fprintf(&b, "nodeRegistration:\n  name: %q\n  criSocket: unix:///var/run/containerd/containerd.sock\n", h.Name)
	if control {
		fmt.Fprintf(&b, "controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: %q\n    bindPort: %d\n  certificateKey: %q\n", h.Address, t.LoadBalancer.APIPort, sec.certKey)
	}
	return []byte(b.String())
}

func (r *Runner) joinHost(ctx context.Context, h topology.Host, control bool, st Status) (string, error) {
	var repaired []string
	if rep, ok := st.data.(*joinRepair); ok {
		var err error
		if repaired, err = r.repairJoin(ctx, h, rep); err != nil {
			return "", err
		}
	}
	sec, err := r.secrets(ctx, control)
	if err != nil {
		return "", err
	}
	if _, err := r.change(ctx, h, "join/dir", "install -d -m 0700 "+JoinConfigDir); err != nil {
		return "", err
	}
	if err := r.upload(ctx, h, JoinConfig, RenderJoinConfig(r.t, h, sec, control), 0o600, "root:root"); err != nil {
		return "", err
	}
	cmd := fmt.Sprintf("trap 'rm -f %[1]s' EXIT; trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM; %[2]s", JoinConfig, kubeadmTracked("join --config "+JoinConfig))
	if _, err := r.change(ctx, h, "kubeadm join", cmd); err != nil {
		se := stderrOf(err)
		if strings.Contains(se, "already exists") || strings.Contains(se, "[ERROR") {
			fix := fmt.Sprintf("run `kubeadm reset -f` on %s", h.Name)
			if control && (strings.Contains(se, "Peer URLs already exists") || strings.Contains(se, "etcd")) {
				fix += fmt.Sprintf(" and remove its stale etcd member on %s (etcdctl member list / member remove)", r.firstMaster().Name)
			}
			return "", &StepError{Step: "kubeadm join", Err: err, Fix: fix + ", then rerun"}
		}
		return "", err
	}
	// kubeadm join returns once the node registered; make sure the cluster lists it.
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, nodes, err := r.clusterNodes(ctx)
		if err == nil {
			if _, ok := nodes[h.Name]; ok {
				break
			}
		}
		if time.Now().After(deadline) {
			return "", &StepError{Step: "wait for the node", Err: fmt.Errorf("kubeadm join succeeded but %s does not list node %s after 60s", r.firstMaster().Name, h.Name)}
		}
		if err := sleep(ctx, r.o.Poll); err != nil {
			return "", err
		}
	}
	msg := "joined as worker"
	if control {
		msg = "joined as control-plane"
	}
	if len(repaired) > 0 {
		msg = "half-joined host repaired (" + strings.Join(repaired, ", ") + "), " + msg
	}
	return msg, nil
}

type joinMastersPhase struct{}

func (joinMastersPhase) Name() string   { return PhaseJoinMasters }
func (joinMastersPhase) Title() string  { return "Join the other masters, one at a time" }
func (joinMastersPhase) Parallel() bool { return false }
func (joinMastersPhase) Hosts(r *Runner) []topology.Host {
	return r.t.Masters()[1:]
}
func (joinMastersPhase) Probe(ctx context.Context, r *Runner, h topology.Host) (Status, error) {
	return r.probeJoin(ctx, h, true)
}
func (joinMastersPhase) Run(ctx context.Context, r *Runner, h topology.Host, st Status) (string, error) {
	return r.joinHost(ctx, h, true, st)
}

type joinWorkersPhase struct{}

func (joinWorkersPhase) Name() string                    { return PhaseJoinWorkers }
func (joinWorkersPhase) Title() string                   { return "Join the workers" }
func (joinWorkersPhase) Parallel() bool                  { return true }
func (joinWorkersPhase) Hosts(r *Runner) []topology.Host { return r.t.Workers() }
func (joinWorkersPhase) Probe(ctx context.Context, r *Runner, h topology.Host) (Status, error) {
	return r.probeJoin(ctx, h, false)
}
func (joinWorkersPhase) Run(ctx context.Context, r *Runner, h topology.Host, st Status) (string, error) {
	return r.joinHost(ctx, h, false, st)
}
