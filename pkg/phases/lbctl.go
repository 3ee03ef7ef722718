package phases

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/vipd-project/vipd/pkg/sshx"
	"github.com/vipd-project/vipd/pkg/topology"
)

// BackendDrainGrace is how long vipd lets a drained master's open connections finish before
// it closes them (vipd backend drain --grace), in seconds of wall time: long enough for a
// request in flight, short enough that a watch held open does not stall an upgrade or a
// removal (the apiserver going away would close it anyway; clients re-establish watches).
const BackendDrainGrace = 10 * time.Second

// backendOf is a master's backend exactly as the lb phase writes it into vipd.yaml.
func (r *Runner) backendOf(m topology.Host) string {
	return net.JoinHostPort(m.Address, strconv.Itoa(r.t.LoadBalancer.APIPort))
}

// vipdServes reports whether the vipd running on lb has backend be (in `vipd status --json`,
// which shows the configuration vipd runs with, not the file).
func (r *Runner) vipdServes(ctx context.Context, lb topology.Host, be string) (bool, error) {
	_, ok, err := r.probe(ctx, lb, "lb/backend-known", fmt.Sprintf("vipd status --json 2>/dev/null | grep -qF -e %s -e %s",
		sshx.Quote(`"addr": "`+be+`"`), sshx.Quote(`"addr":"`+be+`"`)))
	return ok, err
}

// lbBackend runs `vipd backend ACTION BACKEND [args]` (vipd's runtime control, over its
// control socket) on every lb host, one at a time. A vipd that does not run the backend (not
// in its configuration) is skipped; a vipd without the
// runtime commands (exit 2: an older vipd) is reported as a warning and skipped, since its
// health checks still take a stopped apiserver out of rotation.
func (r *Runner) lbBackend(ctx context.Context, action string, m topology.Host, args ...string) error {
	be := r.backendOf(m)
	for _, lb := range r.t.LBs() {
		start := time.Now()
		known, err := r.vipdServes(ctx, lb, be)
		if err != nil {
			return err
		}
		if !known {
			continue
		}
		cmd := strings.Join(append([]string{"vipd", "backend", action, sshx.Quote(be)}, args...), " ")
		_, err = r.run(ctx, lb, changeCmd("vipd backend "+action, cmd))
		code, cerr := exitCode(err)
		switch {
		case cerr != nil:
			return stepErr("vipd backend "+action+" "+be+" on "+lb.Name, cerr)
		case code == 2:
			r.warn(lb.Name, "lb", fmt.Sprintf("`%s` refused (exit 2: this vipd has no runtime backend control; upgrade-lb installs one): %s stays in rotation until its health check fails", cmd, be))
			continue
		case code != 0:
			return &StepError{Step: "vipd backend " + action + " " + be + " on " + lb.Name, Err: err,
				Fix: fmt.Sprintf("look at `vipd backend list` and `journalctl -u vipd` on %s", lb.Name)}
		}
		r.Line(lb.Name, "lb", fmt.Sprintf("backend %s %s", be, pastTense(action)), time.Since(start))
	}
	return nil
}

func pastTense(action string) string {
	switch action {
	case "drain":
		return "drained (no new connections)"
	case "enable":
		return "enabled"
	case "disable":
		return "disabled"
	}
	return action
}

// drainBackend drains m's backend on every lb and waits for its connections to end (at most
// BackendDrainGrace, after which vipd closes them).
func (r *Runner) drainBackend(ctx context.Context, m topology.Host) error {
	return r.lbBackend(ctx, "drain", m, "--grace", BackendDrainGrace.String(), "--wait")
}

// enableBackend puts m's backend back into rotation on every lb.
func (r *Runner) enableBackend(ctx context.Context, m topology.Host) error {
	return r.lbBackend(ctx, "enable", m)
}

// waitReadyz waits until the apiserver of master m answers ok on /readyz (asked on m
// itself), at most limit.
func (r *Runner) waitReadyz(ctx context.Context, m topology.Host, limit time.Duration) error {
	url := "https://" + r.backendOf(m) + "/readyz"
	var last string
	_, err := r.waitFor(ctx, limit, r.o.Poll, func() (bool, error) {
		out, _, err := r.probe(ctx, m, "readyz", "curl -ksS --max-time 3 "+url+" 2>&1")
		last = strings.TrimSpace(out)
		return last == "ok", err
	})
	if err != nil {
		return &StepError{Step: "wait for " + url, Err: fmt.Errorf("%w (last answer %q)", err, sshx.Tail(last, 2)),
			Fix: fmt.Sprintf("check the control plane on %s (journalctl -u kubelet; crictl ps)", m.Name)}
	}
	return nil
}

// enableLeftDrained enables m's backend on the lbs where it is not READY: a run killed
// between the drain and the enable leaves it drained, and vipd keeps that state across
// reloads and restarts. A vipd without runtime control has nothing to undo.
func (r *Runner) enableLeftDrained(ctx context.Context, m topology.Host) error {
	be := r.backendOf(m)
	for _, lb := range r.t.LBs() {
		out, ok, err := r.probe(ctx, lb, "lb/backends", "vipd backend list --json")
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		var bs []struct {
			Addr  string `json:"addr"`
			Admin string `json:"admin"`
		}
		if err := json.Unmarshal([]byte(out), &bs); err != nil {
			return &StepError{Step: "vipd backend list on " + lb.Name, Err: fmt.Errorf("decode: %w", err)}
		}
		for _, b := range bs {
			if b.Addr == be && b.Admin != "" && b.Admin != "READY" {
				if _, err := r.change(ctx, lb, "vipd backend enable", "vipd backend enable "+sshx.Quote(be)); err != nil {
					return err
				}
				r.Line(lb.Name, "lb", fmt.Sprintf("backend %s was %s (left by an interrupted run): enabled", be, b.Admin), -1)
			}
		}
	}
	return nil
}
