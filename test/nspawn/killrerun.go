package nspawn

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kill-and-rerun: `bootstrap up` interrupted as a user's closed terminal or Ctrl-C would
// (SIGKILL or SIGINT), then run again. The e2e test and bench/killrerun share these helpers.

// KillPlan says when to interrupt `bootstrap up`.
type KillPlan struct {
	Signal syscall.Signal // syscall.SIGKILL or syscall.SIGINT
	// After is the time from the start of up to the signal (when InJoinOf is empty).
	After time.Duration
	// InJoinOf names a host: the signal goes Delay after bootstrap wrote the host's kubeadm
	// join configuration (pkg/phases JoinConfig, written just before `kubeadm join` starts).
	InJoinOf string
	Delay    time.Duration
}

func (p KillPlan) String() string {
	sig := "SIGKILL"
	if p.Signal == syscall.SIGINT {
		sig = "SIGINT"
	}
	if p.InJoinOf != "" {
		return fmt.Sprintf("%s %v into %s's kubeadm join", sig, p.Delay.Round(time.Millisecond), p.InJoinOf)
	}
	return fmt.Sprintf("%s at %v", sig, p.After.Round(time.Millisecond))
}

// KillResult is what an interrupted up did.
type KillResult struct {
	Killed bool          // false: up ended before the kill point
	At     time.Duration // time from the start of up to the signal (or to its end)
	Exit   int           // up's exit code (-1: killed by the signal)
	Output string
}

// guestJoinConfig is pkg/phases.JoinConfig (this package does not import bootstrap's).
const guestJoinConfig = "/run/bootstrap/kubeadm-join.yaml"

// UpAndKill runs `bootstrap up -f <topology>` in the operator namespace and interrupts it
// as the plan says.
func (c *ClusterLab) UpAndKill(ctx context.Context, bootstrap string, p KillPlan, extra ...string) (KillResult, error) {
	var join string
	if p.InJoinOf != "" {
		h := c.Host(p.InJoinOf)
		if h == nil || h.initPID == 0 {
			return KillResult{}, fmt.Errorf("kill plan: no running lab host %q", p.InJoinOf)
		}
		// The guest's /run seen from here, without entering the guest.
		join = filepath.Join("/proc", strconv.Itoa(h.initPID), "root", guestJoinConfig)
	}
	cmd := c.OperatorCommand(ctx, bootstrap, append([]string{"up", "-f", c.Topology}, extra...)...)
	var out upOutput
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return KillResult{}, fmt.Errorf("start bootstrap up: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	res := KillResult{}
	finish := func(err error) (KillResult, error) {
		res.Output = out.String()
		var ee *exec.ExitError
		switch {
		case err == nil:
			res.Exit = 0
		case errors.As(err, &ee):
			res.Exit = ee.ExitCode()
		default:
			return res, fmt.Errorf("bootstrap up: %w", err)
		}
		if !res.Killed {
			res.At = time.Since(start)
		}
		return res, nil
	}
	var fire <-chan time.Time
	if join == "" {
		fire = time.After(p.After)
	} else {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
	wait:
		for {
			select {
			case err := <-done:
				return finish(err)
			case <-ctx.Done():
				_ = cmd.Process.Kill()
				<-done
				return res, ctx.Err()
			case <-tick.C:
				if _, err := os.Stat(join); err == nil {
					break wait
				}
			}
		}
		fire = time.After(p.Delay)
	}
	select {
	case err := <-done:
		return finish(err)
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return res, ctx.Err()
	case <-fire:
	}
	// `ip netns exec` execs bootstrap: the process is bootstrap itself.
	res.Killed, res.At = true, time.Since(start)
	if err := cmd.Process.Signal(p.Signal); err != nil {
		return res, fmt.Errorf("signal bootstrap: %w", err)
	}
	select {
	case err := <-done:
		return finish(err)
	case <-time.After(2 * time.Minute):
		// SIGINT must end it: bootstrap cancels what it runs and returns.
		_ = cmd.Process.Kill()
		<-done
		res.Output = out.String()
		return res, fmt.Errorf("bootstrap up still running 2 minutes after %v", p)
	}
}

type upOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *upOutput) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *upOutput) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// PhaseHosts maps each phase of a complete up's output ("[host] phase: message" lines) to
// the hosts it printed a line for, in the order the phases appeared.
type PhaseHosts struct {
	Order []string
	Hosts map[string]map[string]bool
}

var upLine = regexp.MustCompile(`^\[([^\]]+)\] ([a-z-]+): `)

// ParsePhases reads up's output (a host's FAILED report does not count as its line).
func ParsePhases(out string) PhaseHosts {
	ph := PhaseHosts{Hosts: map[string]map[string]bool{}}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		m := upLine.FindStringSubmatch(sc.Text())
		if m == nil || strings.HasPrefix(sc.Text()[len(m[0]):], "FAILED") {
			continue // a failure report (SIGINT cancels the running phase) is not the phase done
		}
		if ph.Hosts[m[2]] == nil {
			ph.Order = append(ph.Order, m[2])
			ph.Hosts[m[2]] = map[string]bool{}
		}
		ph.Hosts[m[2]][m[1]] = true
	}
	return ph
}

// PhaseAt names the phase an interrupted up's output shows running: the first phase of the
// complete run (full) whose hosts have not all printed their line yet. "done" when all had.
func (full PhaseHosts) PhaseAt(out string) string {
	got := ParsePhases(out)
	for _, p := range full.Order {
		for h := range full.Hosts[p] {
			if !got.Hosts[p][h] {
				return p
			}
		}
	}
	return "done"
}

// K8sConverged checks the real cluster is what a complete up makes: every node Ready, one
// etcd member per master (started, named after it, not a learner), asked on the first
// master. It returns what is wrong, or nil.
func (c *ClusterLab) K8sConverged(ctx context.Context) error {
	var masters, nodes []string
	for _, h := range c.Hosts {
		switch h.Role {
		case "master":
			masters = append(masters, h.Name)
			nodes = append(nodes, h.Name)
		case "worker":
			nodes = append(nodes, h.Name)
		}
	}
	if len(masters) == 0 {
		return errors.New("no masters in the lab")
	}
	const kc = "kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout 10s "
	out, err := c.Exec(ctx, masters[0], "sh", "-c", kc+"get nodes --no-headers")
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	var problems []string
	listed := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			listed[f[0]] = f[1]
		}
	}
	for _, n := range nodes {
		if listed[n] != "Ready" {
			problems = append(problems, fmt.Sprintf("node %s is %q, want Ready", n, listed[n]))
		}
	}
	if len(listed) != len(nodes) {
		problems = append(problems, fmt.Sprintf("%d nodes listed, want %d", len(listed), len(nodes)))
	}
	members, err := c.EtcdMembers(ctx)
	if err != nil {
		return err
	}
	names := map[string]int{}
	for _, m := range members {
		names[m.Name]++
		if m.Status != "started" || m.Learner {
			problems = append(problems, fmt.Sprintf("etcd member %s (%s) is %s, learner %v", m.ID, m.Name, m.Status, m.Learner))
		}
	}
	for _, m := range masters {
		if names[m] != 1 {
			problems = append(problems, fmt.Sprintf("%d etcd members named %s, want 1", names[m], m))
		}
	}
	if len(members) != len(masters) {
		problems = append(problems, fmt.Sprintf("%d etcd members, want %d (kubernetes/kubeadm#2095: a stale member)", len(members), len(masters)))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// EtcdMember is a line of `etcdctl member list`.
type EtcdMember struct {
	ID, Status, Name, PeerURLs string
	Learner                    bool
}

// EtcdMembers asks the first master's etcd (its static pod's etcdctl) for the members.
func (c *ClusterLab) EtcdMembers(ctx context.Context) ([]EtcdMember, error) {
	var fm string
	for _, h := range c.Hosts {
		if h.Role == "master" {
			fm = h.Name
			break
		}
	}
	out, err := c.Exec(ctx, fm, "sh", "-c", "kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout 10s -n kube-system exec etcd-"+fm+
		" -- etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/server.crt --key /etc/kubernetes/pki/etcd/server.key member list")
	if err != nil {
		return nil, fmt.Errorf("etcd member list on %s: %w", fm, err)
	}
	var ms []EtcdMember
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, ", ")
		if len(f) < 6 {
			continue
		}
		ms = append(ms, EtcdMember{ID: f[0], Status: f[1], Name: f[2], PeerURLs: f[3], Learner: strings.TrimSpace(f[5]) == "true"})
	}
	return ms, nil
}

// RunBootstrap runs bootstrap in the operator namespace and returns its output and exit code.
func (c *ClusterLab) RunBootstrap(ctx context.Context, bootstrap string, args ...string) (string, int, error) {
	cmd := c.OperatorCommand(ctx, bootstrap, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), ee.ExitCode(), nil
	}
	if err != nil {
		return out.String(), -1, fmt.Errorf("run bootstrap %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), 0, nil
}
