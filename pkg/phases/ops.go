package phases

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vipd-project/vipd/pkg/topology"
	"github.com/vipd-project/vipd/pkg/vipdpkg"
)

// HostStatus is what `bootstrap status` shows for a host.
type HostStatus struct {
	Name, Role, Address string
	Reachable           bool
	Error               string   // why the host is unreachable or a probe failed
	HalfDone            string   // what an interrupted run left half-done (the next up repairs it)
	Done                []string // phases done on the host
	Todo                []string // phases not done
	Node                string   // node status as the cluster reports it ("Ready"), "" when not a node
	HoldsVIP            bool
	VipdActive          string // lb: systemctl is-active vipd
}

// Status probes every host (read-only): reachable, which phases are done, node status, VIP.
func (r *Runner) Status(ctx context.Context) []HostStatus {
	hosts := r.t.Hosts
	out := make([]HostStatus, len(hosts))
	var nodes map[string]string
	var nodesErr error
	if _, err := r.Host(ctx, r.firstMaster()); err == nil {
		_, nodes, nodesErr = r.clusterNodes(ctx)
	}
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := HostStatus{Name: h.Name, Role: h.Role, Address: h.Address}
			defer func() { out[i] = s }()
			if _, err := r.Host(ctx, h); err != nil {
				s.Error = err.Error()
				return
			}
			s.Reachable = true
			var phases []Phase
			switch h.Role {
			case topology.RoleLB:
				phases = []Phase{lbPhase{}}
				s.HoldsVIP, _ = r.holdsVIP(ctx, h)
				o, _, _ := r.probe(ctx, h, "status/vipd", "systemctl is-active vipd")
				s.VipdActive = strings.TrimSpace(o)
			case topology.RoleMaster:
				phases = []Phase{commonPhase{}}
				if runsOn(r, imagesPhase{}, h) {
					phases = append(phases, imagesPhase{})
				}
				if h.Name == r.firstMaster().Name {
					phases = append(phases, initPhase{})
				}
				if runsOn(r, cniPhase{}, h) {
					phases = append(phases, cniPhase{})
				}
				if h.Name != r.firstMaster().Name {
					phases = append(phases, joinMastersPhase{})
				}
			case topology.RoleWorker:
				phases = []Phase{commonPhase{}}
				if runsOn(r, imagesPhase{}, h) {
					phases = append(phases, imagesPhase{})
				}
				if runsOn(r, cniPhase{}, h) {
					phases = append(phases, cniPhase{})
				}
				phases = append(phases, joinWorkersPhase{})
			}
			for _, p := range phases {
				st, err := p.Probe(ctx, r, h)
				switch {
				case err != nil:
					s.Todo = append(s.Todo, p.Name()+"!")
					if s.Error == "" {
						s.Error = p.Name() + ": " + err.Error()
					}
				case st.Done:
					s.Done = append(s.Done, p.Name())
				case st.HalfDone != "":
					s.Todo = append(s.Todo, p.Name()+"!")
					s.HalfDone = p.Name() + ": " + st.HalfDone
				default:
					s.Todo = append(s.Todo, p.Name())
				}
			}
			if h.Role != topology.RoleLB {
				switch {
				case nodesErr != nil:
					s.Node = "?"
				case nodes == nil:
					s.Node = "-"
				default:
					s.Node = nodes[h.Name]
					if s.Node == "" {
						s.Node = "not a node"
					}
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// FormatStatus renders the status table.
func FormatStatus(sts []HostStatus, vip string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-16s %-7s %-16s %-9s %-30s %-12s %s\n", "HOST", "ROLE", "ADDRESS", "REACHABLE", "DONE (TODO)", "NODE", "VIP "+vip)
	holders := 0
	for _, s := range sts {
		reach := "yes"
		if !s.Reachable {
			reach = "NO"
		}
		done := strings.Join(s.Done, ",")
		if len(s.Todo) > 0 {
			done += " (" + strings.Join(s.Todo, ",") + ")"
		}
		node, vipCol := s.Node, ""
		if s.Role == topology.RoleLB {
			node = "vipd " + s.VipdActive
			if s.HoldsVIP {
				vipCol = "holder"
				holders++
			}
		}
		fmt.Fprintf(&b, "%-16s %-7s %-16s %-9s %-30s %-12s %s\n", s.Name, s.Role, s.Address, reach, strings.TrimSpace(done), node, vipCol)
	}
	for _, s := range sts {
		if s.Error != "" {
			fmt.Fprintf(&b, "%s: %s\n", s.Name, s.Error)
		}
		if s.HalfDone != "" {
			fmt.Fprintf(&b, "%s: HALF-DONE %s\n", s.Name, s.HalfDone)
		}
	}
	switch holders {
	case 0:
		fmt.Fprintf(&b, "no lb holds the VIP %s\n", vip)
	case 1:
	default:
		fmt.Fprintf(&b, "WARNING: %d lbs hold the VIP %s (split brain)\n", holders, vip)
	}
	return b.String()
}

// ---- reset

// Reset undoes `up` as the reference's Cleanup does: kubeadm reset -f on the nodes; vipd
// stopped, disabled and removed with its files and user on the lb hosts; a stuck VIP removed.
// Packages installed by the common phase stay.
func (r *Runner) Reset(ctx context.Context) error {
	return forEach(r.t.Hosts, func(h topology.Host) error {
		start := time.Now()
		var err error
		var msg string
		if h.Role == topology.RoleLB {
			msg, err = r.resetLB(ctx, h)
		} else {
			msg, err = r.resetNode(ctx, h)
		}
		if err != nil {
			r.reportFailureNoRerun(h.Name, "reset", err, time.Since(start))
			return &PhaseError{Host: h.Name, Phase: "reset", Err: err}
		}
		r.Line(h.Name, "reset", msg, time.Since(start))
		return nil
	})
}

func (r *Runner) reportFailureNoRerun(host, step string, err error, elapsed time.Duration) {
	e := failedEvent(host, step, err, elapsed, "")
	e.ExitCode = nil
	r.Report(e)
}

func (r *Runner) resetNode(ctx context.Context, h topology.Host) (string, error) {
	out, _, err := r.probe(ctx, h, "reset", `command -v kubeadm >/dev/null 2>&1 && echo kubeadm; for f in /etc/kubernetes/kubelet.conf /etc/kubernetes/admin.conf `+KubeadmConfig+` /var/lib/etcd/member /etc/kubernetes/manifests/kube-apiserver.yaml `+BridgeConflist+` `+PodRoutesUnit+`; do [ -e "$f" ] && echo "has $f"; done; true`)
	if err != nil {
		return "", err
	}
	if !strings.Contains(out, "has ") {
		return "nothing to reset", nil
	}
	cmd := "rm -f " + KubeadmConfig + " " + CNIManifestPath + " " + JoinConfig + " /root/.kube/config"
	if strings.Contains(out, "kubeadm") {
		cmd = "kubeadm reset -f && " + cmd
	}
	// kubeadm reset leaves the CNI configuration ("The reset process does not clean CNI
	// configuration"): cni bridge's files, routes and bridge are bootstrap's to remove.
	if strings.Contains(out, "has "+PodRoutesUnit) {
		cmd += " && systemctl disable --now bootstrap-pod-routes && rm -f " + PodRoutesUnit + " && systemctl daemon-reload"
	}
	if strings.Contains(out, "has "+BridgeConflist) {
		cmd += " && rm -f " + BridgeConflist + " && { ! ip link show cni0 >/dev/null 2>&1 || ip link delete cni0; }"
	}
	if _, err := r.change(ctx, h, "kubeadm reset", cmd); err != nil {
		return "", err
	}
	return "kubeadm reset -f done", nil
}

func (r *Runner) resetLB(ctx context.Context, h topology.Host) (string, error) {
	vip := r.t.VIPAddr()
	out, _, err := r.probe(ctx, h, "reset", fmt.Sprintf(`for f in %s %s %s; do [ -e "$f" ] && echo "has $f"; done
dpkg-query -W -f='${db:Status-Abbrev}' %s 2>/dev/null | grep -q '^.[^n ]' && echo "has package"
id -u vipd >/dev/null 2>&1 && echo "has user"
ip -o -4 addr show | awk -v v=%s/ 'index($4, v) == 1 {print "vip " $2}'
true`, legacyUnitPath, legacyBinaryPath, VipdConfigDir, vipdpkg.Name, vip))
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(out) == "" {
		return "nothing to reset", nil
	}
	// The package's purge stops vipd (which takes its VIP away), removes /etc/vipd and the
	// user; the rest is for an install from before the package and for a VIP left behind.
	script := fmt.Sprintf(`if dpkg-query -W -f='${db:Status-Abbrev}' %[6]s 2>/dev/null | grep -q '^.[^n ]'; then
(
%[7]s
) || exit 1
fi
if [ -e %[1]s ]; then systemctl disable --now vipd || true; fi
rm -f %[1]s %[2]s
rm -rf %[3]s
systemctl daemon-reload
systemctl reset-failed vipd >/dev/null 2>&1 || true
for i in $(ip -o -4 addr show | awk -v v=%[4]s/ 'index($4, v) == 1 {print $2}'); do ip addr del %[5]s dev "$i"; done
if id -u vipd >/dev/null 2>&1; then userdel vipd; fi`, legacyUnitPath, legacyBinaryPath, VipdConfigDir, vip, r.t.VIPPrefix(), vipdpkg.Name,
		aptRun(fmt.Sprintf("DEBIAN_FRONTEND=noninteractive dpkg --purge %s", vipdpkg.Name)))
	if _, err := r.change(ctx, h, "remove vipd", script); err != nil {
		return "", err
	}
	msg := "vipd stopped, disabled and removed"
	if strings.Contains(out, "vip ") {
		msg += "; VIP " + r.t.VIPPrefix().String() + " removed"
	}
	return msg, nil
}

// ---- kubeconfig

var reServer = regexp.MustCompile(`(?m)^(\s*server:\s*).*$`)

// Kubeconfig returns the admin kubeconfig of the first master with its server rewritten to
// https://VIP:apiPort.
func (r *Runner) Kubeconfig(ctx context.Context) ([]byte, error) {
	fm := r.firstMaster()
	out, ok, err := r.probe(ctx, fm, "kubeconfig", "cat "+AdminConf)
	if err != nil {
		return nil, err
	}
	if !ok || !strings.Contains(out, "server:") {
		return nil, fmt.Errorf("%s has no %s: run `bootstrap up` first", fm.Name, AdminConf)
	}
	return []byte(reServer.ReplaceAllString(out, "${1}"+r.t.APIServerURL())), nil
}

// ---- drill

// DrillResult is one line of the drill report.
type DrillResult struct {
	Step    string
	Pass    bool
	Skipped bool
	Outage  time.Duration // longest time without an answer through the VIP (-1: not measured)
	Detail  string
}

// DrillOptions tune the drill.
type DrillOptions struct {
	// MaxOutage fails a step whose measured outage is longer (default 15s).
	MaxOutage time.Duration
	// Settle is how long the master stays stopped (default 8s: long enough for vipd's health
	// checks to mark it down).
	Settle time.Duration
	// Wait bounds each wait (VIP moves, API answers again; default 60s; a master's API coming
	// back: 3 x Wait).
	Wait time.Duration
	// Baseline is how long the poller runs before and after each action (default 1s).
	Baseline time.Duration
	// Poll is the interval of bootstrap's own checks (VIP holder, default 100ms).
	Poll time.Duration
}

const drillStop = "/run/bootstrap-drill.stop"

// poller polls /healthz through the VIP every 100ms from a host until stopped.
type poller struct {
	r    *Runner
	h    topology.Host
	done chan struct{}
	out  string
	err  error
}

func (r *Runner) startPoller(ctx context.Context, h topology.Host, max time.Duration) *poller {
	p := &poller{r: r, h: h, done: make(chan struct{})}
	script := fmt.Sprintf(`rm -f %[1]s; end=$(( $(date +%%s) + %[2]d ))
while [ ! -e %[1]s ] && [ "$(date +%%s)" -lt "$end" ]; do
  t=$(date +%%s%%N); r=$(curl -ks --max-time 1 %[3]s/healthz 2>/dev/null); echo "$t ${r:-fail}"; sleep 0.1
done
rm -f %[1]s`, drillStop, int(max.Seconds()), r.t.APIServerURL())
	go func() {
		defer close(p.done)
		p.out, _, p.err = r.probe(ctx, h, "drill/poll", script)
	}()
	return p
}

// stop ends the poller and returns the longest gap between answers and whether any request
// failed.
func (p *poller) stop(ctx context.Context) (gap time.Duration, failures int, answers int, err error) {
	_, _ = p.r.run(ctx, p.h, changeCmd("drill/poll-stop", "touch "+drillStop))
	select {
	case <-p.done:
	case <-ctx.Done():
		return 0, 0, 0, ctx.Err()
	}
	if p.err != nil {
		return 0, 0, 0, p.err
	}
	gap, failures, answers = analyzePoll(p.out)
	return gap, failures, answers, nil
}

// analyzePoll reads the poller's "unix-nanos result" lines: the longest gap between two
// answers, the failed polls and the answers.
func analyzePoll(out string) (gap time.Duration, failures, answers int) {
	var last int64
	for _, line := range strings.Split(out, "\n") {
		fs := strings.Fields(line)
		if len(fs) < 2 {
			continue
		}
		t, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			continue
		}
		if fs[1] != "ok" {
			failures++
			continue
		}
		answers++
		if last != 0 && time.Duration(t-last) > gap {
			gap = time.Duration(t - last)
		}
		last = t
	}
	return gap, failures, answers
}

func (r *Runner) waitFor(ctx context.Context, limit time.Duration, every time.Duration, cond func() (bool, error)) (time.Duration, error) {
	start := time.Now()
	for {
		ok, err := cond()
		if err != nil {
			return time.Since(start), err
		}
		if ok {
			return time.Since(start), nil
		}
		if time.Since(start) > limit {
			return time.Since(start), fmt.Errorf("not within %s", limit)
		}
		if err := sleep(ctx, every); err != nil {
			return time.Since(start), err
		}
	}
}

func (r *Runner) healthzVia(ctx context.Context, h topology.Host, url string) (bool, error) {
	out, _, err := r.probe(ctx, h, "drill/healthz", "curl -ks --max-time 2 "+url+"/healthz")
	return strings.TrimSpace(out) == "ok", err
}

// Drill automates the reference README's "Testing High Availability": stop vipd on the VIP
// holder (the VIP must move and the API keep answering through it), restore it; stop the
// kubelet and the apiserver on a master (the API must keep answering through the VIP),
// restore them. Every step is measured from a master polling /healthz through the VIP every
// 100ms. Everything stopped is restarted even when a step fails.
func (r *Runner) Drill(ctx context.Context, o DrillOptions) ([]DrillResult, error) {
	if o.MaxOutage == 0 {
		o.MaxOutage = 15 * time.Second
	}
	if o.Settle == 0 {
		o.Settle = 8 * time.Second
	}
	if o.Wait == 0 {
		o.Wait = 60 * time.Second
	}
	if o.Baseline == 0 {
		o.Baseline = time.Second
	}
	if o.Poll == 0 {
		o.Poll = 100 * time.Millisecond
	}
	masters, lbs := r.t.Masters(), r.t.LBs()
	var res []DrillResult
	pollHost := masters[len(masters)-1]
	start := time.Now()
	if ok, err := r.healthzVia(ctx, pollHost, r.t.APIServerURL()); err != nil || !ok {
		return nil, fmt.Errorf("before the drill: /healthz through the VIP does not answer ok from %s (run `bootstrap verify`/`status`): %v", pollHost.Name, err)
	}
	r.Line(pollHost.Name, "drill", "/healthz through the VIP answers; polling it every 100ms from here", time.Since(start))

	// Step 1: vipd on the VIP holder.
	if len(lbs) < 2 {
		res = append(res, DrillResult{Step: "stop vipd on the VIP holder", Skipped: true, Outage: -1, Detail: "one lb: no VIP failover to test"})
	} else {
		rs, err := r.drillVipd(ctx, o, pollHost)
		res = append(res, rs...)
		if err != nil {
			return res, err
		}
	}
	// Step 2: kubelet + apiserver on a master.
	if len(masters) < 2 {
		res = append(res, DrillResult{Step: "stop kubelet + apiserver on a master", Skipped: true, Outage: -1, Detail: "one master: no API failover to test"})
	} else {
		rs, err := r.drillMaster(ctx, o, masters[0], pollHost)
		res = append(res, rs...)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

func outageOf(gap time.Duration, failures int) time.Duration {
	if failures == 0 {
		return 0
	}
	return gap
}

func (r *Runner) drillVipd(ctx context.Context, o DrillOptions, pollHost topology.Host) ([]DrillResult, error) {
	holders, err := r.VIPHolders(ctx)
	if err != nil {
		return nil, err
	}
	if len(holders) != 1 {
		return nil, fmt.Errorf("before the drill: %d lbs hold the VIP (%s), want exactly one", len(holders), strings.Join(holders, ", "))
	}
	holder, _ := r.t.Host(holders[0])
	step := fmt.Sprintf("stop vipd on %s (VIP holder)", holder.Name)
	res := DrillResult{Step: step, Outage: -1}
	restored := false
	restore := func() {
		if !restored {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_, _ = r.change(rctx, holder, "drill/restore-vipd", "systemctl start vipd")
			restored = true
		}
	}
	defer restore()

	p := r.startPoller(ctx, pollHost, 4*o.Wait)
	if err := sleep(ctx, o.Baseline); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if _, err := r.change(ctx, holder, "drill/stop-vipd", "systemctl stop vipd"); err != nil {
		p.stop(ctx)
		return []DrillResult{{Step: step, Outage: -1, Detail: err.Error()}}, err
	}
	r.Line(holder.Name, "drill", "vipd stopped", time.Since(t0))
	var newHolder string
	moved, werr := r.waitFor(ctx, o.Wait, o.Poll, func() (bool, error) {
		hs, err := r.VIPHolders(ctx)
		if len(hs) == 1 && hs[0] != holder.Name {
			newHolder = hs[0]
			return true, nil
		}
		return false, err
	})
	if werr != nil {
		p.stop(ctx)
		res.Detail = "the VIP did not move: " + werr.Error()
		return []DrillResult{res}, nil
	}
	r.Line(newHolder, "drill", "holds the VIP now", moved)
	back, werr := r.waitFor(ctx, o.Wait, o.Poll, func() (bool, error) { return r.healthzVia(ctx, pollHost, r.t.APIServerURL()) })
	sleep(ctx, o.Baseline)
	gap, fails, answers, perr := p.stop(ctx)
	if perr != nil {
		return nil, perr
	}
	res.Outage = outageOf(gap, fails)
	res.Pass = werr == nil && answers > 0 && res.Outage <= o.MaxOutage
	res.Detail = fmt.Sprintf("VIP moved to %s in %s; /healthz through the VIP: %d failed polls, longest gap %s, answering again %s after the stop", newHolder, fmtDur(moved), fails, fmtMS(gap), fmtDur(moved+back))
	if werr != nil {
		res.Detail = fmt.Sprintf("VIP moved to %s after %s but /healthz through the VIP did not answer: %v", newHolder, fmtDur(moved), werr)
	}
	out := []DrillResult{res}

	// Restore (failback when preempt is on).
	p = r.startPoller(ctx, pollHost, 4*o.Wait)
	sleep(ctx, o.Baseline)
	restore()
	var final string
	took, werr := r.waitFor(ctx, o.Wait, o.Poll, func() (bool, error) {
		_, active, err := r.probe(ctx, holder, "drill/vipd-active", "systemctl is-active vipd")
		if err != nil || !active {
			return false, err
		}
		hs, err := r.VIPHolders(ctx)
		if len(hs) == 1 {
			final = hs[0]
			if *r.t.LoadBalancer.Preempt {
				return final == holder.Name, err
			}
			return true, err
		}
		return false, err
	})
	sleep(ctx, o.Baseline+o.Baseline/2)
	gap, fails, answers, perr = p.stop(ctx)
	if perr != nil {
		return out, perr
	}
	rr := DrillResult{Step: fmt.Sprintf("restore vipd on %s", holder.Name), Outage: outageOf(gap, fails)}
	rr.Pass = werr == nil && answers > 0 && rr.Outage <= o.MaxOutage
	rr.Detail = fmt.Sprintf("vipd active again; VIP on %s after %s (%d failed polls, longest gap %s)", final, fmtDur(took), fails, fmtMS(gap))
	if werr != nil {
		rr.Detail = fmt.Sprintf("after restarting vipd the VIP did not settle on one lb: %v", werr)
	}
	return append(out, rr), nil
}

const stopMasterScript = `systemctl stop kubelet
if command -v crictl >/dev/null 2>&1; then ids=$(crictl ps -q --name kube-apiserver 2>/dev/null); if [ -n "$ids" ]; then crictl stop $ids >/dev/null; fi; fi
if systemctl cat kube-apiserver.service >/dev/null 2>&1; then systemctl stop kube-apiserver.service; fi`

const startMasterScript = `if systemctl cat kube-apiserver.service >/dev/null 2>&1; then systemctl start kube-apiserver.service; fi
systemctl start kubelet`

func (r *Runner) drillMaster(ctx context.Context, o DrillOptions, m, pollHost topology.Host) ([]DrillResult, error) {
	step := fmt.Sprintf("stop kubelet + apiserver on %s", m.Name)
	restored := false
	restore := func() {
		if !restored {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_, _ = r.change(rctx, m, "drill/restore-master", startMasterScript)
			restored = true
		}
	}
	defer restore()
	own := fmt.Sprintf("https://%s:%d", m.Address, r.t.LoadBalancer.APIPort)

	p := r.startPoller(ctx, pollHost, 4*o.Wait)
	sleep(ctx, o.Baseline)
	t0 := time.Now()
	if _, err := r.change(ctx, m, "drill/stop-master", stopMasterScript); err != nil {
		p.stop(ctx)
		return []DrillResult{{Step: step, Outage: -1, Detail: err.Error()}}, err
	}
	r.Line(m.Name, "drill", "kubelet and apiserver stopped", time.Since(t0))
	down, derr := r.waitFor(ctx, o.Wait/3, o.Poll, func() (bool, error) {
		ok, err := r.healthzVia(ctx, pollHost, own)
		return !ok, err
	})
	sleep(ctx, o.Settle)
	_, apiOK, kerr := r.probe(ctx, r.firstMaster(), "drill/kubectl", r.viaVIP()+" get nodes --no-headers")
	gap, fails, answers, perr := p.stop(ctx)
	if perr != nil {
		return nil, perr
	}
	res := DrillResult{Step: step, Outage: outageOf(gap, fails)}
	res.Pass = derr == nil && kerr == nil && apiOK && answers > 0 && res.Outage <= o.MaxOutage
	res.Detail = fmt.Sprintf("%s's apiserver down after %s; /healthz through the VIP: %d failed polls, longest gap %s; kubectl get nodes through the VIP: %s",
		m.Name, fmtDur(down), fails, fmtMS(gap), map[bool]string{true: "ok", false: "FAILED"}[apiOK && kerr == nil])
	if derr != nil {
		res.Detail = fmt.Sprintf("%s's apiserver still answered on %s after stopping kubelet and the apiserver: %v", m.Name, own, derr)
	}
	out := []DrillResult{res}

	restore()
	took, werr := r.waitFor(ctx, 3*o.Wait, o.Poll, func() (bool, error) { return r.healthzVia(ctx, pollHost, own) })
	rr := DrillResult{Step: fmt.Sprintf("restore kubelet + apiserver on %s", m.Name), Outage: -1, Pass: werr == nil}
	rr.Detail = fmt.Sprintf("%s/healthz ok again after %s", own, fmtDur(took))
	if werr != nil {
		rr.Detail = fmt.Sprintf("%s/healthz did not answer ok: %v", own, werr)
	}
	return append(out, rr), nil
}

func fmtMS(d time.Duration) string {
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// FormatDrill renders the drill report table.
func FormatDrill(rs []DrillResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-44s %-7s %-8s %s\n", "DRILL STEP", "RESULT", "OUTAGE", "DETAIL")
	for _, r := range rs {
		result := "FAIL"
		switch {
		case r.Skipped:
			result = "skipped"
		case r.Pass:
			result = "pass"
		}
		outage := "-"
		if r.Outage >= 0 {
			outage = fmtMS(r.Outage)
		}
		fmt.Fprintf(&b, "%-44s %-7s %-8s %s\n", r.Step, result, outage, r.Detail)
	}
	return b.String()
}

// DrillPassed reports whether no step failed.
func DrillPassed(rs []DrillResult) bool {
	for _, r := range rs {
		if !r.Pass && !r.Skipped {
			return false
		}
	}
	return true
}

// runsOn tells whether a phase runs on h (cni: the first master, or every node with cni
// bridge).
func runsOn(r *Runner, p Phase, h topology.Host) bool {
	for _, o := range p.Hosts(r) {
		if o.Name == h.Name {
			return true
		}
	}
	return false
}
