package phases

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vipd-project/vipd/pkg/sshx"
	"github.com/vipd-project/vipd/pkg/topology"
)

// DrainTimeout bounds `kubectl drain` of a node (remove, upgrade): pods that cannot be
// evicted within it (a PodDisruptionBudget that never allows it) fail the step, naming
// the node, instead of hanging.
const DrainTimeout = 5 * time.Minute

// opMaster is the master bootstrap runs kubectl and etcdctl on while it works on h: the
// first master of the file other than h.
func (r *Runner) opMaster(h topology.Host) (topology.Host, error) {
	for _, m := range r.t.Masters() {
		if m.Name != h.Name {
			return m, nil
		}
	}
	return topology.Host{}, fmt.Errorf("%s is the only master of the file: removing it would remove the cluster (use `bootstrap reset`)", h.Name)
}

// nodesOn lists the cluster's nodes (name -> status) with kubectl on master m.
func (r *Runner) nodesOn(ctx context.Context, m topology.Host) (map[string]string, error) {
	out, ok, err := r.probe(ctx, m, "cluster/nodes", kubectl+" get nodes --no-headers")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &StepError{Step: "list the nodes on " + m.Name, Err: fmt.Errorf("`kubectl get nodes` fails"),
			Fix: fmt.Sprintf("check the API through the VIP and %s on %s", AdminConf, m.Name)}
	}
	return parseNodes(out), nil
}

// etcdMember is one line of `etcdctl member list`.
type etcdMember struct {
	ID, Name, PeerURL string
}

// membersOn lists the etcd members through master m's etcd pod.
func (r *Runner) membersOn(ctx context.Context, m topology.Host) ([]etcdMember, error) {
	c, err := r.Host(ctx, m)
	if err != nil {
		return nil, err
	}
	res, err := c.Run(ctx, probeCmd("join/etcd-members", etcdctl(m, "member list")))
	if code, err := exitCode(err); err != nil {
		return nil, fmt.Errorf("probe etcd members: %w", err)
	} else if code != 0 {
		return nil, &StepError{Step: "list the etcd members on " + m.Name, Err: fmt.Errorf("etcdctl member list failed: %s", sshx.Tail(res.Stderr, 3))}
	}
	var ms []etcdMember
	for _, line := range strings.Split(res.Stdout, "\n") {
		// ID, STATUS, NAME, PEER ADDRS, CLIENT ADDRS, IS LEARNER
		f := strings.Split(line, ", ")
		if len(f) >= 4 {
			ms = append(ms, etcdMember{ID: strings.TrimSpace(f[0]), Name: f[2], PeerURL: f[3]})
		}
	}
	return ms, nil
}

func memberOf(ms []etcdMember, h topology.Host) (etcdMember, bool) {
	peer := "https://" + h.Address + ":2380"
	for _, m := range ms {
		if m.Name == h.Name || strings.Contains(m.PeerURL, peer) {
			return m, true
		}
	}
	return etcdMember{}, false
}

// checkQuorum refuses to remove host's etcd member when the members left could not form a
// quorum: the cluster would stop taking writes (and a kubeadm cluster with it). healthy
// tells, per member name, whether it answers now.
func checkQuorum(host string, members []etcdMember, healthy map[string]bool) error {
	left := len(members) - 1
	if left <= 0 {
		return fmt.Errorf("%s holds the last etcd member: removing it would delete the cluster's data (use `bootstrap reset`)", host)
	}
	need := left/2 + 1
	var ok, bad []string
	for _, m := range members {
		if m.Name == host {
			continue
		}
		if healthy[m.Name] {
			ok = append(ok, m.Name)
		} else {
			bad = append(bad, m.Name)
		}
	}
	if len(ok) >= need {
		return nil
	}
	return &StepError{Step: "check etcd quorum",
		Err: fmt.Errorf("removing %s would leave %d etcd members of which %d healthy (%s); etcd needs %d of %d for quorum",
			host, left, len(ok), strings.Join(ok, ", "), need, left),
		Fix: fmt.Sprintf("bring %s back first (their apiserver's /readyz must answer ok), then rerun", strings.Join(bad, ", "))}
}

// memberHealth asks, from master m, each member's apiserver /readyz (which includes its
// etcd check on a real control plane; kubeadm stacks one etcd member per master).
func (r *Runner) memberHealth(ctx context.Context, m topology.Host, ms []etcdMember) (map[string]bool, error) {
	health := map[string]bool{}
	for _, mb := range ms {
		u, err := url.Parse(mb.PeerURL)
		if err != nil || u.Hostname() == "" {
			health[mb.Name] = false
			continue
		}
		api := "https://" + net.JoinHostPort(u.Hostname(), strconv.Itoa(r.t.LoadBalancer.APIPort)) + "/readyz"
		out, _, err := r.probe(ctx, m, "remove/member-health", "curl -ks --max-time 3 "+api)
		if err != nil {
			return nil, err
		}
		health[mb.Name] = strings.TrimSpace(out) == "ok"
	}
	return health, nil
}

// RemoveOptions tune `bootstrap remove`.
type RemoveOptions struct {
	// HostGone: the host is dead or unreachable for good. Its node is not drained (its pods
	// could never finish) and kubeadm reset is not run on it; wipe it before reusing it.
	HostGone bool
}

// Remove takes a master or worker out of the cluster: the etcd quorum checked (a master),
// the node drained, its backend drained on every lb through vipd's runtime control and
// then removed from every vipd.yaml with a reload, kubeadm reset on the host, the stale
// etcd member and the node object removed. Every step is skipped when already done, so a
// run killed anywhere is finished by running it again. The host stays in the file; until
// it is deleted from it, `bootstrap up` would join it again.
func (r *Runner) Remove(ctx context.Context, name string, o RemoveOptions) error {
	h, ok := r.t.Host(name)
	if !ok {
		return fmt.Errorf("remove: %s is not a host of %s (put it back in the file to remove it)", name, r.t.File)
	}
	if h.Role == topology.RoleLB {
		return fmt.Errorf("remove: %s is a load balancer; remove handles masters and workers (delete an lb from the file and stop vipd on it: `systemctl disable --now vipd`)", name)
	}
	start := time.Now()
	err := r.remove(ctx, h, o)
	if err != nil {
		r.reportFailureNoRerun(h.Name, "remove", err, time.Since(start))
		return &PhaseError{Host: h.Name, Phase: "remove", Err: err}
	}
	return nil
}

func (r *Runner) remove(ctx context.Context, h topology.Host, o RemoveOptions) error {
	control := h.Role == topology.RoleMaster
	op, err := r.opMaster(h)
	if err != nil {
		if !control {
			return err
		}
		return &StepError{Step: "choose a master to work from", Err: err}
	}
	nodes, err := r.nodesOn(ctx, op)
	if err != nil {
		return err
	}
	_, listed := nodes[h.Name]
	var member etcdMember
	var hasMember bool
	if control {
		ms, err := r.membersOn(ctx, op)
		if err != nil {
			return err
		}
		if member, hasMember = memberOf(ms, h); hasMember {
			health, err := r.memberHealth(ctx, op, ms)
			if err != nil {
				return err
			}
			if err := checkQuorum(h.Name, ms, health); err != nil {
				return err
			}
			r.Line(h.Name, "remove", fmt.Sprintf("etcd keeps a quorum without it (%d members left)", len(ms)-1), -1)
		}
	}
	// 1. Drain the node: no new pods, the running ones evicted.
	if listed && o.HostGone {
		r.Line(h.Name, "remove", "node not drained (--host-gone: its pods are deleted with the node)", -1)
	} else if listed {
		t0 := time.Now()
		cmd := fmt.Sprintf("%s drain %s --ignore-daemonsets --delete-emptydir-data --timeout=%ds", kubectl, sshx.Quote(h.Name), int(DrainTimeout.Seconds()))
		if _, err := r.change(ctx, op, "kubectl drain", cmd); err != nil {
			return err
		}
		r.Line(h.Name, "remove", "node drained (kubectl drain on "+op.Name+")", time.Since(t0))
	}
	// 2. A master's apiserver leaves every vipd: drained (open connections finish), then
	// gone from vipd.yaml with a reload (the VIP stays where it is).
	if control {
		if err := r.drainBackend(ctx, h); err != nil {
			return err
		}
		if err := r.withoutHost(h).reloadLBs(ctx, r.backendOf(h)); err != nil {
			return err
		}
	}
	// 3. kubeadm reset on the host (stops kubelet and the control plane, removes its own
	// etcd member when it can reach the cluster).
	if o.HostGone {
		r.Line(h.Name, "remove", "kubeadm reset not run (--host-gone): wipe the host before reusing it", -1)
	} else {
		t0 := time.Now()
		msg, err := r.resetNode(ctx, h)
		if err != nil {
			return err
		}
		r.Line(h.Name, "remove", msg, time.Since(t0))
	}
	// 4. The etcd member kubeadm reset could not remove, and the node object.
	if hasMember {
		ms, err := r.membersOn(ctx, op)
		if err != nil {
			return err
		}
		if m, still := memberOf(ms, h); still {
			if _, err := r.change(ctx, op, "remove/etcd-member", etcdctl(op, "member remove "+sshx.Quote(m.ID))); err != nil {
				return err
			}
			r.Line(h.Name, "remove", "etcd member "+m.ID+" removed (etcdctl on "+op.Name+")", -1)
		} else {
			r.Line(h.Name, "remove", "etcd member "+member.ID+" removed (by kubeadm reset)", -1)
		}
	}
	if nodes, err = r.nodesOn(ctx, op); err != nil {
		return err
	}
	if _, ok := nodes[h.Name]; ok {
		if _, err := r.change(ctx, op, "remove/delete-node", kubectl+" delete node --ignore-not-found "+sshx.Quote(h.Name)); err != nil {
			return err
		}
	}
	r.Line(h.Name, "remove", fmt.Sprintf("removed from the cluster; delete it from %s now, or `bootstrap up` joins it again", r.t.File), -1)
	return nil
}

// withoutHost returns a runner over a copy of the topology without h, sharing r's
// connections (used one at a time, never beside r).
func (r *Runner) withoutHost(h topology.Host) *Runner {
	t := *r.t
	t.Hosts = nil
	for _, o := range r.t.Hosts {
		if o.Name != h.Name {
			t.Hosts = append(t.Hosts, o)
		}
	}
	return r.withTopology(&t)
}

// withTopology returns a runner over t sharing r's connections and options.
func (r *Runner) withTopology(t *topology.Topology) *Runner {
	o := r.o
	o.Topology = t
	o.Connect = func(ctx context.Context, h topology.Host) (Host, error) { return r.Host(ctx, h) }
	return NewRunner(o)
}

// reloadLBs runs the lb phase on every lb, one at a time (a configuration that only
// changes backends is reloaded, not restarted: vipd keeps the VIP and its connections).
// A vipd.yaml already up to date whose vipd still serves the backend gone (a run killed
// between the upload and the reload) is reloaded.
func (r *Runner) reloadLBs(ctx context.Context, gone string) error {
	p := lbPhase{}
	for _, lb := range r.t.LBs() {
		t0 := time.Now()
		st, err := p.Probe(ctx, r, lb)
		if err != nil {
			return err
		}
		if st.Done {
			serves, err := r.vipdServes(ctx, lb, gone)
			if err != nil {
				return err
			}
			if !serves {
				r.Line(lb.Name, "lb", "vipd.yaml already up to date", time.Since(t0))
				continue
			}
			if _, err := r.change(ctx, lb, "lb/systemctl", "systemctl reload vipd"); err != nil {
				return err
			}
			r.Line(lb.Name, "lb", "vipd configuration reloaded (the file was up to date, vipd still served "+gone+")", time.Since(t0))
			continue
		}
		if s, ok := st.data.(*lbState); ok && !s.configOnly() {
			return &StepError{Step: "update vipd.yaml on " + lb.Name, Err: fmt.Errorf("more than the backends differ from the file (%s)", strings.Join(st.Todo, "; ")),
				Fix: "run `bootstrap up --only lb` first so that the lbs match the file, then rerun"}
		}
		msg, err := p.Run(ctx, r, lb, st)
		if err != nil {
			return err
		}
		r.Line(lb.Name, "lb", msg, time.Since(t0))
	}
	return nil
}
