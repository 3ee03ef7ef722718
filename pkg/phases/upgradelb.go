package phases

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/vipd-project/vipd/pkg/topology"
)

// MaintenanceWait bounds `vipd maintenance on --wait`: how long the VIP holder waits to hear
// its peer as MASTER before it gives the VIP up anyway (a few advert intervals).
const MaintenanceWait = 30 * time.Second

// MaintenanceRetry bounds how long upgrade-lb asks again when vipd refuses maintenance for
// want of a known peer, before it falls back to the restart's own handover.
const MaintenanceRetry = 20 * time.Second

// UpgradeLB replaces vipd (and whatever else the lb phase finds stale: unit, configuration)
// on the lb hosts one at a time: the hosts without the VIP first, the VIP holder last. The
// holder is put in maintenance first (`vipd maintenance on --wait`: it hands the VIP to a
// peer, which holds it before the holder lets go, and keeps serving its open connections
// meanwhile), then replaced and restarted, then taken out of maintenance. An lb already
// up to date is skipped, so a rerun finishes an interrupted run.
func (r *Runner) UpgradeLB(ctx context.Context) error {
	holders, err := r.VIPHolders(ctx)
	if err != nil {
		return err
	}
	var order []topology.Host
	var holder *topology.Host
	for _, lb := range r.t.LBs() {
		if len(holders) == 1 && lb.Name == holders[0] {
			h := lb
			holder = &h
			continue
		}
		order = append(order, lb)
	}
	if holder != nil {
		order = append(order, *holder)
	}
	p := lbPhase{}
	for _, lb := range order {
		start := time.Now()
		st, err := p.Probe(ctx, r, lb)
		if err != nil {
			return r.lbFailed(lb, err, start)
		}
		isHolder := holder != nil && lb.Name == holder.Name
		if st.Done {
			// An interrupted run may have left it in maintenance.
			if isHolder || r.o.DryRun {
				r.Line(lb.Name, "upgrade-lb", st.Detail, time.Since(start))
				continue
			}
			if _, err := r.maintenance(ctx, lb, "off"); err != nil {
				return r.lbFailed(lb, err, start)
			}
			r.Line(lb.Name, "upgrade-lb", st.Detail, time.Since(start))
			continue
		}
		if r.o.DryRun {
			if isHolder {
				r.Line(lb.Name, "upgrade-lb", fmt.Sprintf("would vipd maintenance on --wait %s (hand the VIP to a peer)", MaintenanceWait), -1)
			}
			for _, t := range st.Todo {
				r.Line(lb.Name, "upgrade-lb", "would "+t, -1)
			}
			r.Line(lb.Name, "upgrade-lb", "would vipd maintenance off; wait for one VIP holder", -1)
			continue
		}
		if isHolder && len(r.t.LBs()) > 1 {
			// vipd refuses maintenance at once while it knows no peer to hand over to (a peer
			// just restarted is forgotten until it is heard again): refusals are retried, the
			// holder staying MASTER meanwhile, for at most the VIP timeout.
			var ok, refused bool
			var merr error
			_, err := r.waitFor(ctx, MaintenanceRetry, time.Second, func() (bool, error) {
				ok, merr = r.maintenance(ctx, lb, "on", "--wait", MaintenanceWait.String())
				refused = merr != nil && strings.Contains(merr.Error(), "no peer took the VIP over")
				if refused {
					r.log.Debug("maintenance refused, no peer yet; retrying", "host", lb.Name)
					return false, nil
				}
				return true, merr
			})
			switch {
			case refused:
				// vipd in multicast mode learns a peer from its adverts; a BACKUP peer just
				// restarted sends none, so the master may not know it again for a long time.
				r.warn(lb.Name, "upgrade-lb", fmt.Sprintf("vipd refused maintenance for %s (it knows no peer to hand the VIP to): the VIP moves when vipd stops instead", MaintenanceRetry))
			case err != nil:
				return r.lbFailed(lb, err, start)
			}
			if ok {
				r.Line(lb.Name, "upgrade-lb", "in maintenance: the VIP handed to a peer", time.Since(start))
			}
		}
		msg, err := p.Run(ctx, r, lb, st)
		if err != nil {
			return r.lbFailed(lb, err, start)
		}
		if _, err := r.maintenance(ctx, lb, "off"); err != nil {
			return r.lbFailed(lb, err, start)
		}
		if _, _, err := p.Finish(ctx, r); err != nil {
			return r.lbFailed(lb, err, start)
		}
		if !isHolder && holder != nil {
			// The holder's maintenance needs a peer ready to take the VIP over: this one's
			// vipd must be BACKUP and hearing the master before the next host is touched.
			if err := r.waitBackup(ctx, lb); err != nil {
				return r.lbFailed(lb, err, start)
			}
		}
		r.Line(lb.Name, "upgrade-lb", msg, time.Since(start))
	}
	return nil
}

func (r *Runner) lbFailed(lb topology.Host, err error, start time.Time) error {
	r.reportFailureNoRerun(lb.Name, "upgrade-lb", err, time.Since(start))
	return &PhaseError{Host: lb.Name, Phase: "upgrade-lb", Err: err}
}

// maintenance runs `vipd maintenance on|off` on lb and reports whether vipd has it. A vipd
// without it (exit 2: older than the runtime commands) is warned about: "on" then falls back
// to the restart's own handover (vipd gives the VIP up on SIGTERM), "off" has nothing to undo.
func (r *Runner) maintenance(ctx context.Context, lb topology.Host, args ...string) (bool, error) {
	cmd := "vipd maintenance " + strings.Join(args, " ")
	_, err := r.run(ctx, lb, changeCmd("vipd maintenance "+args[0], cmd))
	code, cerr := exitCode(err)
	switch {
	case cerr != nil:
		return false, stepErr(cmd, cerr)
	case code == 2:
		if args[0] == "on" {
			r.warn(lb.Name, "upgrade-lb", fmt.Sprintf("`%s` refused (exit 2: this vipd has no maintenance mode): the VIP moves when vipd stops instead", cmd))
		}
		return false, nil
	case code != 0:
		return false, &StepError{Step: cmd, Err: err, Fix: fmt.Sprintf("look at `vipd status` and `journalctl -u vipd` on %s", lb.Name)}
	}
	return true, nil
}

// waitBackup waits (at most the VIP timeout) until vipd on lb is BACKUP, names the master it
// hears and has a backend up (vipd status --json): ready to take the VIP and serve.
func (r *Runner) waitBackup(ctx context.Context, lb topology.Host) error {
	var last string
	_, err := r.waitFor(ctx, r.o.VIPTimeout, r.o.Poll/2, func() (bool, error) {
		out, _, err := r.probe(ctx, lb, "lb/vrrp-state", "vipd status --json")
		if err != nil {
			return false, err
		}
		var st struct {
			VRRP struct {
				State      string `json:"state"`
				MasterAddr string `json:"master_addr"`
			} `json:"vrrp"`
			Backends []struct {
				Up bool `json:"up"`
			} `json:"backends"`
		}
		if json.Unmarshal([]byte(out), &st) != nil {
			last = "no answer"
			return false, nil
		}
		up := 0
		for _, b := range st.Backends {
			if b.Up {
				up++
			}
		}
		last = fmt.Sprintf("%s, %d of %d backends up", st.VRRP.State, up, len(st.Backends))
		// Its proxy must be able to serve (a backend up) before it may get the VIP: just
		// restarted, its health checks have not passed yet and it would refuse connections.
		return st.VRRP.State == "BACKUP" && st.VRRP.MasterAddr != "" && (up > 0 || len(st.Backends) == 0), nil
	})
	if err != nil {
		return &StepError{Step: "wait for vipd on " + lb.Name + " to be BACKUP", Err: fmt.Errorf("%w (state %s)", err, last),
			Fix: "look at `vipd status` and `journalctl -u vipd` on " + lb.Name}
	}
	return nil
}
