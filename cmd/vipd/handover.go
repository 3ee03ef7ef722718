package main

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"time"
)

// stop hands the VIP over and stops: while this host is master and a peer can take over, the
// VIP stays here and the proxy keeps accepting until the peer is heard as MASTER (bounded by
// the router's HandoverBound); then the router stops (the VIP goes), the proxy stops accepting
// and drains its connections for proxy.drain_grace. Connections to the VIP are closed one
// second after it left: their clients' packets now reach the peer, so they cannot finish here
// (without this a stop waited the whole drain_grace for them).
func (d *daemon) stop(vcancel, cancel context.CancelFunc) {
	ctx, done := context.WithTimeout(context.Background(), d.router.HandoverBound()+2*time.Second)
	defer done()
	start := time.Now()
	if handed, err := d.router.Handover(ctx, "shutdown", true); handed {
		d.log.Info("VIP handed over before stopping", "took", time.Since(start).Round(time.Millisecond))
	} else if err != nil {
		d.log.Warn("handover before stopping failed", "err", err)
	}
	vcancel()
	cancel()
	if d.proxy == nil {
		return
	}
	var vips []netip.Addr
	for _, p := range d.cfg.VRRPConfig().VIPs {
		vips = append(vips, p.Addr())
	}
	time.AfterFunc(time.Second, func() {
		if n := d.proxy.CloseLocal(vips); n > 0 {
			d.log.Info("closed connections to the VIP this host gave up (their clients now reach the peer)", "connections", n)
		}
	})
}

// handleMaintenance applies `vipd maintenance on|off`.
func (d *daemon) handleMaintenance(r *http.Request, who peer) (ctlResult, error) {
	log := d.log.With(append([]any{"component", "control"}, who.logAttrs()...)...)
	switch mode := r.PathValue("mode"); mode {
	case "on":
		d.maint.Store(true)
		d.router.SetHold(true)
		start := time.Now()
		handed, err := d.router.Handover(r.Context(), "maintenance", false)
		if err != nil {
			return ctlResult{}, err
		}
		st := d.router.Status()
		if !handed && st.HoldsVIP {
			// No peer took over: keep serving rather than leave the VIP on no host.
			d.maint.Store(false)
			d.router.SetHold(false)
			log.Warn("maintenance refused: no peer took the VIP over; this host stays MASTER", "waited", time.Since(start).Round(time.Millisecond))
			return ctlResult{}, &ctlError{http.StatusConflict, fmt.Sprintf("maintenance refused: no peer took the VIP over within %s; this host stays MASTER (is the peer running? vipd status on it)", d.router.HandoverBound())}
		}
		msg := "maintenance on: this host stays BACKUP until `vipd maintenance off`"
		if handed {
			msg = fmt.Sprintf("maintenance on: VIP handed over to %s in %s; this host stays BACKUP until `vipd maintenance off`", st.MasterAddr, time.Since(start).Round(time.Millisecond))
		}
		log.Info("maintenance on by request", "handed_over", handed, "master", st.MasterAddr.String())
		return d.saved(ctlResult{Message: msg})
	case "off":
		d.maint.Store(false)
		d.router.SetHold(false)
		log.Info("maintenance off by request")
		return d.saved(ctlResult{Message: "maintenance off: this host takes part in the election again (with preempt and the highest priority it takes the VIP back)"})
	default:
		return ctlResult{}, &ctlError{http.StatusNotFound, fmt.Sprintf("maintenance %q: want on or off", mode)}
	}
}

// saved writes state_file after a change and says so in the answer when it could not.
func (d *daemon) saved(res ctlResult) (ctlResult, error) {
	if err := d.saveState(); err != nil {
		d.log.Error("control: cannot save the run-time state; the change is applied but a restart will not keep it", "state_file", d.stateFile(), "err", err)
		res.Message += fmt.Sprintf(" (WARNING: not saved to %s: %v; a restart will undo it)", d.stateFile(), err)
	}
	return res, nil
}
