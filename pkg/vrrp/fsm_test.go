package vrrp

import (
	"net/netip"
	"testing"
	"time"
)

var (
	addrA = netip.MustParseAddr("10.0.0.1")
	addrB = netip.MustParseAddr("10.0.0.2")
	t0    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// harness drives a Machine with a fake clock.
type harness struct {
	t    *testing.T
	m    *Machine
	now  time.Time
	acts []Action
}

func newHarness(t *testing.T, cfg MachineConfig) *harness {
	if cfg.Version == 0 {
		cfg.Version = 3
	}
	if cfg.AdvertInterval == 0 {
		cfg.AdvertInterval = time.Second
	}
	if !cfg.PrimaryAddr.IsValid() {
		cfg.PrimaryAddr = addrA
	}
	return &harness{t: t, m: NewMachine(cfg), now: t0}
}

func (h *harness) ev(e Event) []Action {
	h.acts = h.m.Handle(h.now, e)
	return h.acts
}

// advance moves the clock by d, firing timers as they come due.
func (h *harness) advance(d time.Duration) []Action {
	end := h.now.Add(d)
	var all []Action
	for {
		dl := h.m.NextDeadline()
		if dl.IsZero() || dl.After(end) {
			break
		}
		h.now = dl
		all = append(all, h.m.Handle(h.now, Event{Kind: EvTimer})...)
	}
	h.now = end
	h.acts = all
	return all
}

func (h *harness) advert(prio uint8, src netip.Addr, ival time.Duration) []Action {
	return h.ev(Event{Kind: EvAdvert, Priority: prio, Src: src, Interval: ival})
}

func (h *harness) wantState(s State) {
	h.t.Helper()
	if h.m.State() != s {
		h.t.Fatalf("state %v, want %v (last actions %+v)", h.m.State(), s, h.acts)
	}
}

func has(acts []Action, k ActionKind) bool {
	for _, a := range acts {
		if a.Kind == k {
			return true
		}
	}
	return false
}

func sentPrio(acts []Action) (uint8, bool) {
	for _, a := range acts {
		if a.Kind == ActSendAdvert {
			return a.Priority, true
		}
	}
	return 0, false
}

func TestSkewAndMasterDown(t *testing.T) {
	h := newHarness(t, MachineConfig{Priority: 100, AdvertInterval: time.Second})
	// v3: Skew = ((256-100) * 1s) / 256 = 609.375ms; down = 3s + skew.
	if got, want := h.m.SkewTime(), 156*time.Second/256; got != want {
		t.Fatalf("skew %v want %v", got, want)
	}
	if got, want := h.m.MasterDownInterval(), 3*time.Second+156*time.Second/256; got != want {
		t.Fatalf("down %v want %v", got, want)
	}
	h2 := newHarness(t, MachineConfig{Version: 2, Priority: 90, AdvertInterval: 2 * time.Second})
	// v2: Skew = (256-90)/256 s independent of the interval; down = 3*2s + skew.
	if got, want := h2.m.MasterDownInterval(), 6*time.Second+166*time.Second/256; got != want {
		t.Fatalf("v2 down %v want %v", got, want)
	}
}

func TestStartupBackupThenMaster(t *testing.T) {
	h := newHarness(t, MachineConfig{Priority: 100, Preempt: true})
	h.ev(Event{Kind: EvStartup})
	h.wantState(StateBackup)
	down := h.m.MasterDownInterval()
	h.advance(down - time.Millisecond)
	h.wantState(StateBackup)
	acts := h.advance(time.Millisecond)
	h.wantState(StateMaster)
	if p, ok := sentPrio(acts); !ok || p != 100 || !has(acts, ActAcquire) {
		t.Fatalf("becoming master: %+v", acts)
	}
	// Adverts every interval while master.
	acts = h.advance(3 * time.Second)
	n := 0
	for _, a := range acts {
		if a.Kind == ActSendAdvert {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d adverts in 3 intervals", n)
	}
}

func TestOwnerStartsMaster(t *testing.T) {
	h := newHarness(t, MachineConfig{Priority: 255})
	acts := h.ev(Event{Kind: EvStartup})
	h.wantState(StateMaster)
	if !has(acts, ActAcquire) {
		t.Fatal("owner did not acquire")
	}
	// A 254 advert does not move an owner.
	h.advert(254, addrB, time.Second)
	h.wantState(StateMaster)
}

func TestBackupStaysWhileHigherMasterAdvertises(t *testing.T) {
	h := newHarness(t, MachineConfig{Priority: 90, Preempt: true})
	h.ev(Event{Kind: EvStartup})
	for i := 0; i < 20; i++ {
		h.advance(time.Second)
		h.advert(100, addrB, time.Second)
		h.wantState(StateBackup)
	}
	if h.m.MasterAddr() != addrB {
		t.Fatalf("master addr %v", h.m.MasterAddr())
	}
	// Master dies: takeover after Master_Down_Interval (3s + (256-90)/256 s).
	h.advance(3*time.Second + 166*time.Second/256 - time.Millisecond)
	h.wantState(StateBackup)
	h.advance(time.Millisecond)
	h.wantState(StateMaster)
}

func TestPreemption(t *testing.T) {
	for _, preempt := range []bool{true, false} {
		h := newHarness(t, MachineConfig{Priority: 100, Preempt: preempt})
		h.ev(Event{Kind: EvStartup})
		acts := h.advert(90, addrB, time.Second)
		if preempt {
			h.wantState(StateMaster)
			if !has(acts, ActAcquire) {
				t.Fatalf("preempt: %+v", acts)
			}
		} else {
			h.wantState(StateBackup)
			// Keeps accepting the lower-priority master.
			for i := 0; i < 10; i++ {
				h.advance(time.Second)
				h.advert(90, addrB, time.Second)
			}
			h.wantState(StateBackup)
		}
	}
}

func TestPreemptDelay(t *testing.T) {
	h := newHarness(t, MachineConfig{Priority: 100, Preempt: true, PreemptDelay: 5 * time.Second})
	h.ev(Event{Kind: EvStartup})
	for i := 0; i < 4; i++ {
		h.advance(time.Second)
		h.advert(90, addrB, time.Second)
		h.wantState(StateBackup)
	}
	h.advance(1500 * time.Millisecond) // 5.5 s after startup
	h.advert(90, addrB, time.Second)
	h.wantState(StateMaster)
}

func TestResignWaitKeepsPriorityOrder(t *testing.T) {
	// Two backups hearing the same resignation: the higher priority waits less, and
	// both wait at most 100 ms.
	hi := newHarness(t, MachineConfig{Priority: 200, Preempt: true})
	lo := newHarness(t, MachineConfig{Priority: 50, Preempt: true})
	for _, h := range []*harness{hi, lo} {
		h.ev(Event{Kind: EvStartup})
		h.advert(250, addrB, time.Second)
	}
	if !(hi.m.ResignWait() < lo.m.ResignWait()) || lo.m.ResignWait() > 100*time.Millisecond {
		t.Fatalf("ResignWait hi=%s lo=%s", hi.m.ResignWait(), lo.m.ResignWait())
	}
}

func TestPriorityZero(t *testing.T) {
	// Backup: a priority-0 advert sets Master_Down_Timer to ResignWait:
	// Skew_Time's fraction (256-90)/256 of at most 100 ms, not of the 1 s
	// interval (0.65 s, RFC 5798's and Keepalived's figure).
	h := newHarness(t, MachineConfig{Priority: 90, Preempt: true})
	h.ev(Event{Kind: EvStartup})
	h.advert(100, addrB, time.Second)
	h.advance(500 * time.Millisecond)
	h.advert(0, addrB, time.Second)
	skew := 166 * 100 * time.Millisecond / 256
	if got := h.m.ResignWait(); got != skew {
		t.Fatalf("ResignWait = %s, want %s", got, skew)
	}
	h.advance(skew - time.Millisecond)
	h.wantState(StateBackup)
	h.advance(time.Millisecond)
	h.wantState(StateMaster)

	// Master: shutdown sends priority 0 and releases.
	acts := h.ev(Event{Kind: EvShutdown})
	h.wantState(StateInit)
	if p, ok := sentPrio(acts); !ok || p != 0 || !has(acts, ActRelease) {
		t.Fatalf("shutdown: %+v", acts)
	}

	// Master receiving priority 0 sends an advert at once and stays.
	m := newHarness(t, MachineConfig{Priority: 255})
	m.ev(Event{Kind: EvStartup})
	acts = m.advert(0, addrB, time.Second)
	m.wantState(StateMaster)
	if _, ok := sentPrio(acts); !ok {
		t.Fatalf("no advert after priority 0: %+v", acts)
	}
}

func TestEqualPriorityTieBreak(t *testing.T) {
	// We (10.0.0.1) are master; an equal-priority advert from 10.0.0.2
	// wins; one from 10.0.0.0 does not.
	h := newHarness(t, MachineConfig{Priority: 100, Preempt: true})
	h.ev(Event{Kind: EvStartup})
	h.advance(h.m.MasterDownInterval())
	h.wantState(StateMaster)
	h.advance(announceGap) // past the announce rate limit
	acts := h.advert(100, netip.MustParseAddr("10.0.0.0"), time.Second)
	h.wantState(StateMaster)
	if !has(acts, ActAnnounce) {
		t.Fatalf("lower address advert while master should re-announce: %+v", acts)
	}
	acts = h.advert(100, addrB, time.Second)
	h.wantState(StateBackup)
	if !has(acts, ActRelease) || h.m.MasterAddr() != addrB {
		t.Fatalf("tie-break: %+v master %v", acts, h.m.MasterAddr())
	}
	// Parting advert after the release, with our priority.
	if p, ok := sentPrio(acts); !ok || p != 100 || acts[len(acts)-1].Kind != ActSendAdvert {
		t.Fatalf("no parting advert after stepping down: %+v", acts)
	}
	// Equal priority in backup with preempt: accepted, no preemption.
	for i := 0; i < 5; i++ {
		h.advance(time.Second)
		h.advert(100, addrB, time.Second)
	}
	h.wantState(StateBackup)
}

func TestIntervalAdoption(t *testing.T) {
	h := newHarness(t, MachineConfig{Priority: 90, AdvertInterval: time.Second, Preempt: true})
	h.ev(Event{Kind: EvStartup})
	h.advert(100, addrB, 100*time.Millisecond)
	if h.m.MasterAdverInterval() != 100*time.Millisecond {
		t.Fatalf("Master_Adver_Interval %v", h.m.MasterAdverInterval())
	}
	// Down = 3*100ms + (166*100ms)/256 = 364.84375ms.
	want := 300*time.Millisecond + 166*100*time.Millisecond/256
	if h.m.MasterDownInterval() != want {
		t.Fatalf("down %v want %v", h.m.MasterDownInterval(), want)
	}
	h.advance(want - time.Millisecond)
	h.wantState(StateBackup)
	h.advance(time.Millisecond)
	h.wantState(StateMaster)
	// As master we advertise our own interval.
	if h.m.NextDeadline() != h.now.Add(time.Second) {
		t.Fatalf("adver timer %v", h.m.NextDeadline().Sub(h.now))
	}

	// v2 does not adopt.
	h2 := newHarness(t, MachineConfig{Version: 2, Priority: 90, AdvertInterval: time.Second})
	h2.ev(Event{Kind: EvStartup})
	h2.advert(100, addrB, 3*time.Second)
	if h2.m.MasterAdverInterval() != time.Second {
		t.Fatalf("v2 adopted %v", h2.m.MasterAdverInterval())
	}
}

func TestTrackingHandsOver(t *testing.T) {
	// We are master at 100; the peer (90, preempt) is backup. Tracking
	// lowers us to 80: we advertise 80 at once, the peer preempts with 90,
	// we go backup.
	me := newHarness(t, MachineConfig{Priority: 100, Preempt: true, PrimaryAddr: addrA})
	peer := newHarness(t, MachineConfig{Priority: 90, Preempt: true, PrimaryAddr: addrB})
	me.ev(Event{Kind: EvStartup})
	peer.ev(Event{Kind: EvStartup})
	me.advance(me.m.MasterDownInterval())
	me.wantState(StateMaster)
	peer.advert(100, addrA, time.Second)
	peer.wantState(StateBackup)

	acts := me.ev(Event{Kind: EvPriority, Priority: 80})
	p, ok := sentPrio(acts)
	if !ok || p != 80 {
		t.Fatalf("priority change did not send an advert at once: %+v", acts)
	}
	pacts := peer.advert(80, addrA, time.Second)
	peer.wantState(StateMaster)
	pp, _ := sentPrio(pacts)
	me.advert(pp, addrB, time.Second)
	me.wantState(StateBackup)
	if !has(me.acts, ActRelease) {
		t.Fatal("old master did not release the VIP")
	}
	// Priority restored: we preempt back on the next advert.
	me.ev(Event{Kind: EvPriority, Priority: 100})
	me.advert(90, addrB, time.Second)
	me.wantState(StateMaster)
}

func TestFault(t *testing.T) {
	h := newHarness(t, MachineConfig{Priority: 100, Preempt: true})
	h.ev(Event{Kind: EvStartup})
	h.advance(h.m.MasterDownInterval())
	h.wantState(StateMaster)
	acts := h.ev(Event{Kind: EvFault, Reason: "link down"})
	h.wantState(StateFault)
	if p, ok := sentPrio(acts); !ok || p != 0 || !has(acts, ActRelease) {
		t.Fatalf("fault while master: %+v", acts)
	}
	// In fault: no timers, adverts ignored, never master.
	h.advance(time.Minute)
	h.advert(50, addrB, time.Second)
	h.wantState(StateFault)
	h.ev(Event{Kind: EvFaultClear})
	h.wantState(StateBackup)
	h.advance(h.m.MasterDownInterval())
	h.wantState(StateMaster)

	// Fault before startup keeps us out of the election.
	f := newHarness(t, MachineConfig{Priority: 255})
	f.ev(Event{Kind: EvFault, Reason: "track"})
	f.ev(Event{Kind: EvStartup})
	f.wantState(StateFault)
	f.ev(Event{Kind: EvFaultClear})
	f.wantState(StateMaster)
}

func TestAnnounceRateLimited(t *testing.T) {
	h := newHarness(t, MachineConfig{Priority: 255, AdvertInterval: 100 * time.Millisecond})
	h.ev(Event{Kind: EvStartup})
	h.advance(2 * time.Second)
	n := 0
	for i := 0; i < 1000; i++ {
		n += countKind(h.advance(time.Millisecond), ActAnnounce)
		n += countKind(h.advert(10, addrB, time.Second), ActAnnounce)
	}
	// 1 s of flood: one announce per 250 ms.
	if n < 4 || n > 5 {
		t.Fatalf("%d announces during a 1 s flood, want 4-5", n)
	}
}

func TestAnnounceDeferredNotDropped(t *testing.T) {
	// Just became master (burst sent), then a lower-priority advert arrives
	// within the gap: the re-announce must still happen, at the gap's end.
	h := newHarness(t, MachineConfig{Priority: 100, Preempt: true, AdvertInterval: time.Second})
	h.ev(Event{Kind: EvStartup})
	h.advance(h.m.MasterDownInterval())
	h.wantState(StateMaster)
	h.advance(100 * time.Millisecond)
	if has(h.advert(90, addrB, time.Second), ActAnnounce) {
		t.Fatal("announce inside the gap")
	}
	if got := h.m.NextDeadline().Sub(h.now); got != announceGap-100*time.Millisecond {
		t.Fatalf("next deadline in %v, want %v", got, announceGap-100*time.Millisecond)
	}
	if !has(h.advance(announceGap), ActAnnounce) {
		t.Fatal("deferred announce never came")
	}
}

func countKind(acts []Action, k ActionKind) int {
	n := 0
	for _, a := range acts {
		if a.Kind == k {
			n++
		}
	}
	return n
}

func TestSolePeerResignTakesOverAtOnce(t *testing.T) {
	h := newHarness(t, MachineConfig{Priority: 90, Preempt: true, SolePeer: true})
	h.ev(Event{Kind: EvStartup})
	h.advert(100, addrB, time.Second)
	acts := h.advert(0, addrB, time.Second)
	h.wantState(StateMaster)
	if !has(acts, ActAcquire) {
		t.Fatalf("%+v", acts)
	}
}
