package vrrp

import (
	"sort"
	"strings"
	"time"
)

// Tracks: what lowers the priority the router advertises (the proxy's health, a link).

// Track is a condition that lowers the router's priority by its weight
// while it fails (weight 0: FAULT while it fails). Create with Router.Track.
type Track struct {
	r       *Router
	name    string
	weight  int
	failing bool
	reason  string
}

// Track registers (or returns the existing) tracked condition name. While
// failing, the effective priority is lowered by weight (floor 1); weight 0
// means FAULT: the router gives up the VIP and does not become master until
// the condition clears. A negative weight is taken as its absolute value.
// A new Track starts as not failing.
func (r *Router) Track(name string, weight int) *Track {
	if weight < 0 {
		weight = -weight
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.tracks {
		if t.name == name {
			t.weight = weight
			return t
		}
	}
	t := &Track{r: r, name: name, weight: weight}
	r.tracks = append(r.tracks, t)
	return t
}

// Set reports whether the condition fails now, with a reason for logs and
// Status.
func (t *Track) Set(failing bool, reason string) {
	t.r.mu.Lock()
	changed := t.failing != failing
	t.failing, t.reason = failing, reason
	t.r.mu.Unlock()
	if changed {
		t.r.log.Info("tracked condition changed", "track", t.name, "failing", failing, "reason", reason, "weight", t.weight)
		t.r.kick()
	}
}

func (r *Router) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// effective computes the effective priority and the fault reasons (r.mu held).
func (r *Router) effectiveLocked() (uint8, []string) {
	var faults []string
	if !r.linkUp {
		faults = append(faults, "link "+r.cfg.Interface+" down")
	}
	sum := 0
	for _, t := range r.tracks {
		if !t.failing {
			continue
		}
		if t.weight == 0 {
			faults = append(faults, "track "+t.name+": "+t.reason)
			continue
		}
		sum += t.weight
	}
	p := int(r.cfg.Priority) - sum
	if p < 1 {
		p = 1
	}
	sort.Strings(faults)
	return uint8(p), faults
}

// reevaluate recomputes the effective priority and faults and feeds changes
// to the machine.
func (r *Router) reevaluate() {
	r.mu.Lock()
	prio, faults := r.effectiveLocked()
	r.mu.Unlock()
	now := time.Now()
	if h := r.hold.Load(); h != r.m.Held() {
		r.apply(now, r.m.Handle(now, Event{Kind: EvHold, Hold: h}))
		r.log.Info("maintenance", "on", h)
	}
	if len(faults) > 0 && r.m.State() != StateFault {
		r.apply(now, r.m.Handle(now, Event{Kind: EvPriority, Priority: prio}))
		r.apply(now, r.m.Handle(now, Event{Kind: EvFault, Reason: strings.Join(faults, "; ")}))
	} else if len(faults) == 0 && r.m.State() == StateFault {
		r.apply(now, r.m.Handle(now, Event{Kind: EvPriority, Priority: prio}))
		r.apply(now, r.m.Handle(now, Event{Kind: EvFaultClear}))
	} else {
		r.apply(now, r.m.Handle(now, Event{Kind: EvPriority, Priority: prio}))
	}
	r.updatePrioStatus(prio, faults)
}

func (r *Router) updatePrioStatus(prio uint8, faults []string) {
	r.mu.Lock()
	changed := r.st.EffectivePriority != prio || strings.Join(r.st.Faults, "\n") != strings.Join(faults, "\n")
	r.st.EffectivePriority = prio
	r.st.Faults = faults
	r.mu.Unlock()
	if changed {
		r.notify()
	}
}
