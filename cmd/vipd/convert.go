package main

import (
	"fmt"
	"slices"

	"github.com/vipd-project/vipd/pkg/health"
	"github.com/vipd-project/vipd/pkg/stats"
	"github.com/vipd-project/vipd/pkg/tcpproxy"
	"github.com/vipd-project/vipd/pkg/vrrp"
)

// This file maps each package's snapshot onto the stats model. (The configuration is mapped
// onto each package's Config by pkg/config.)

func vrrpView(s vrrp.Status) stats.VRRPView {
	v := stats.VRRPView{
		State:             s.State.String(),
		Priority:          int(s.Priority),
		EffectivePriority: int(s.EffectivePriority),
		HoldsVIP:          s.HoldsVIP,
		Interface:         s.Interface,
		VRID:              int(s.VRID),
		ProtoVersion:      s.Version,
		AdvertInterval:    stats.Duration(s.AdvertInterval),
		Since:             s.Since,
		AdvertsSent:       s.AdvertsSent,
		AdvertsReceived:   s.AdvertsReceived,
		GARPsSent:         s.GARPsSent,
		Drops:             s.Drops,
		SourceTable:       s.SourceTable,
		SourcesBound:      s.SourcesBound,
		Faults:            faults(s),
	}
	if s.MasterAddr.IsValid() {
		v.MasterAddr = s.MasterAddr.String()
	}
	for _, p := range s.VIPs {
		v.VIPs = append(v.VIPs, p.String())
	}
	for _, t := range s.Transitions {
		v.Transitions = append(v.Transitions, stats.Transition{From: t.From.String(), To: t.To.String(), At: t.At, Reason: t.Reason})
	}
	v.TransitionsTotal = s.TransitionsTotal
	return v
}

// faults lists why this router is in FAULT or below its configured priority: the router's
// faults (link down, weight-0 tracks) and the failing tracks that lower the priority.
func faults(s vrrp.Status) []string {
	out := slices.Clone(s.Faults)
	for _, t := range s.Tracks {
		if t.Failing && t.Weight > 0 {
			out = append(out, fmt.Sprintf("track %s lowers the priority by %d: %s", t.Name, t.Weight, t.Reason))
		}
	}
	return out
}

func frontendView(st tcpproxy.Stats) *stats.FrontendView {
	f := st.Frontend
	return &stats.FrontendView{
		Listen:       f.Listen,
		Listening:    f.Listen != "",
		CurrentConns: f.CurrentSessions,
		TotalConns:   f.TotalSessions,
		RefusedByCap: f.RefusedByCap,
		MaxConns:     int64(f.MaxConns),
		BytesIn:      f.BytesIn,
		BytesOut:     f.BytesOut,
		Errors:       f.ConnErrors,

		RefusedPerSource:  f.RefusedBySource,
		MaxConnsPerSource: int64(f.MaxConnsPerSource),
		TimedOut:          f.TimedOut,
	}
}

// backendViews joins the proxy's counters and the health monitor's view, in the proxy's
// order (configured, then removed-but-draining).
func backendViews(ps tcpproxy.Stats, hs []health.BackendStatus) []stats.BackendView {
	byAddr := make(map[string]health.BackendStatus, len(hs))
	for _, h := range hs {
		byAddr[h.Addr] = h
	}
	out := make([]stats.BackendView, 0, len(ps.Backends))
	for _, b := range ps.Backends {
		h := byAddr[b.Addr]
		v := stats.BackendView{
			Addr:          b.Addr,
			Up:            h.Up,
			Since:         h.Since,
			LastCheck:     h.LastCheck,
			LastResult:    h.LastResult,
			LastLatency:   stats.Duration(h.LastLatency),
			CheckFailures: h.Failures,
			Transitions:   h.Transitions,
			CurrentConns:  b.CurrentSessions,
			TotalConns:    b.TotalSessions,
			BytesIn:       b.BytesIn,
			BytesOut:      b.BytesOut,
			ConnErrors:    b.ConnErrors,
			Retries:       b.Retries,
			Admin:         b.Admin.State.String(),
			Weight:        b.Admin.Weight,
			DrainEnds:     b.Admin.GraceEnd,
		}
		switch {
		case b.Admin.State == tcpproxy.AdminMaint:
			v.Status = stats.BackendMaint
		case b.Admin.State == tcpproxy.AdminDrain, b.Removed:
			v.Status = stats.BackendDrain
		case h.State == health.StateUnknown:
			v.Status = stats.BackendUnknown
		}
		out = append(out, v)
	}
	return out
}
