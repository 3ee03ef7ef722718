package main

import (
	"net/netip"
	"testing"

	"github.com/vipd-project/vipd/pkg/vrrp"
)

// The stats page and vipd_vrrp_transitions_total count every transition, not only the last
// 32 the router keeps with timestamps.
func TestVRRPViewCountsAllTransitions(t *testing.T) {
	st := vrrp.Status{State: vrrp.StateMaster, Priority: 100, EffectivePriority: 50,
		MasterAddr: netip.MustParseAddr("10.0.0.1"), TransitionsTotal: 40,
		VIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.100/24")}}
	for range 32 {
		st.Transitions = append(st.Transitions, vrrp.Transition{From: vrrp.StateBackup, To: vrrp.StateMaster})
	}
	v := vrrpView(st)
	if v.TransitionsTotal != 40 || len(v.Transitions) != 32 {
		t.Fatalf("transitions_total %d (want 40), list %d (want 32)", v.TransitionsTotal, len(v.Transitions))
	}
	if v.State != "MASTER" || v.EffectivePriority != 50 || v.MasterAddr != "10.0.0.1" || v.VIPs[0] != "10.0.0.100/24" {
		t.Fatalf("view: %+v", v)
	}
}

// /stats names every reason the priority is down: a weighted track (the proxy that cannot
// serve) as well as the router's own faults, each once.
func TestVRRPViewFaults(t *testing.T) {
	st := vrrp.Status{
		Faults: []string{"track split-brain: resigning"},
		Tracks: []vrrp.TrackStatus{
			{Name: "proxy", Weight: 50, Failing: true, Reason: "0 of 3 backends UP, need 1"},
			{Name: "split-brain", Weight: 0, Failing: true, Reason: "resigning"},
			{Name: "other", Weight: 10, Failing: false},
		},
	}
	got := vrrpView(st).Faults
	want := []string{"track split-brain: resigning", "track proxy lowers the priority by 50: 0 of 3 backends UP, need 1"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("faults %q, want %q", got, want)
	}
}

// The source MAC table's counters reach /stats and /metrics (they were counted, never shown).
func TestVRRPViewSourceTable(t *testing.T) {
	st := vrrp.Status{SourceTable: map[string]uint64{"source_table_full": 3, "source_evicted": 2, "source_expired": 1}, SourcesBound: 64}
	v := vrrpView(st)
	if v.SourcesBound != 64 || v.SourceTable["source_table_full"] != 3 || v.SourceTable["source_evicted"] != 2 || v.SourceTable["source_expired"] != 1 {
		t.Fatalf("view: source table %v, %d bound", v.SourceTable, v.SourcesBound)
	}
}
