package vrrp

import (
	"testing"
	"time"
)

func kinds(acts []Action) []ActionKind {
	out := make([]ActionKind, 0, len(acts))
	for _, a := range acts {
		out = append(out, a.Kind)
	}
	return out
}

func masterHarness(t *testing.T) *harness {
	h := newHarness(t, MachineConfig{Priority: 100, Preempt: true})
	h.ev(Event{Kind: EvPriority, Priority: 100})
	h.ev(Event{Kind: EvStartup})
	h.advance(4 * time.Second)
	if h.m.State() != StateMaster {
		t.Fatalf("state %v, want MASTER", h.m.State())
	}
	return h
}

// A planned handover keeps the VIP (no release) while it advertises priority 0, and gives it
// up only when the new master's advert arrives. The old code released with the first
// priority-0 advert.
func TestResignKeepsVIPUntilPeerIsMaster(t *testing.T) {
	h := masterHarness(t)
	acts := h.ev(Event{Kind: EvResign, Interval: 10 * time.Second, Release: true, Reason: "shutdown"})
	if len(acts) != 1 || acts[0].Kind != ActSendAdvert || acts[0].Priority != 0 {
		t.Fatalf("resign: %v, want one priority-0 advert and no release", kinds(acts))
	}
	acts = h.advance(2500 * time.Millisecond)
	if has(acts, ActRelease) || h.m.State() != StateMaster {
		t.Fatalf("released before a peer took over: %v", kinds(acts))
	}
	for _, a := range acts {
		if a.Kind == ActSendAdvert && a.Priority != 0 {
			t.Fatalf("advertised priority %d while handing over", a.Priority)
		}
	}
	h.ev(Event{Kind: EvPriority, Priority: 90}) // tracking must not end the handover
	if acts := h.advert(0, addrB, time.Second); len(acts) != 0 {
		t.Fatalf("another priority-0 advert: %v, want nothing", kinds(acts))
	}
	acts = h.advert(90, addrB, time.Second)
	if !has(acts, ActRelease) || h.m.State() != StateBackup || h.m.MasterAddr() != addrB {
		t.Fatalf("peer's advert: %v, state %v, master %v; want release, BACKUP under %v", kinds(acts), h.m.State(), h.m.MasterAddr(), addrB)
	}
}

// Without a peer taking over: a stopping router (Release) gives the VIP up at the bound; one
// entering maintenance keeps it and goes on as master.
func TestResignBound(t *testing.T) {
	h := masterHarness(t)
	h.ev(Event{Kind: EvResign, Interval: 3 * time.Second, Release: true, Reason: "shutdown"})
	if acts := h.advance(3500 * time.Millisecond); !has(acts, ActRelease) || h.m.State() != StateBackup {
		t.Fatalf("bound over, release: %v state %v", kinds(acts), h.m.State())
	}
	h = masterHarness(t)
	h.ev(Event{Kind: EvResign, Interval: 3 * time.Second, Reason: "maintenance"})
	acts := h.advance(3500 * time.Millisecond)
	if has(acts, ActRelease) || h.m.State() != StateMaster || !has(acts, ActAnnounce) {
		t.Fatalf("bound over, keep: %v state %v; want MASTER, an advert at priority 100 and a GARP burst", kinds(acts), h.m.State())
	}
	if acts := h.advance(1500 * time.Millisecond); len(acts) == 0 || acts[0].Priority != 100 {
		t.Fatalf("after the handover gave up: %v", acts)
	}
}

// Held (maintenance), a backup never takes over: not when the master goes silent, not on a
// priority-0 advert, not by preempting a lower priority; released, it does.
func TestHoldStaysBackup(t *testing.T) {
	h := newHarness(t, MachineConfig{Priority: 255, Preempt: true})
	h.ev(Event{Kind: EvHold, Hold: true})
	h.ev(Event{Kind: EvPriority, Priority: 255})
	h.ev(Event{Kind: EvStartup})
	if h.m.State() != StateBackup {
		t.Fatalf("held at startup with priority 255: %v, want BACKUP", h.m.State())
	}
	h.ev(Event{Kind: EvPriority, Priority: 100})
	h.advert(90, addrB, time.Second) // lower priority: would preempt
	h.advert(0, addrB, time.Second)  // master resigns: would take over
	if acts := h.advance(10 * time.Second); has(acts, ActAcquire) || h.m.State() != StateBackup {
		t.Fatalf("held: %v, state %v; want BACKUP", kinds(acts), h.m.State())
	}
	h.ev(Event{Kind: EvHold, Hold: false})
	if acts := h.advance(5 * time.Second); !has(acts, ActAcquire) || h.m.State() != StateMaster {
		t.Fatalf("released, no master heard: %v, state %v; want MASTER", kinds(acts), h.m.State())
	}
}
