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
