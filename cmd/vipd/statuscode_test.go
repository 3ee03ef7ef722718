package main

import (
	"testing"
	"time"

	"github.com/vipd-project/vipd/pkg/stats"
)

// vipd status exits non-zero when the VIP is on no host or two, or an alarm is raised; the old
// command exited 0 whenever the daemon answered.
func TestStatusCode(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	member := func(name string, alive, holds bool) stats.MemberView {
		return stats.MemberView{Name: name, Alive: alive, HoldsVIP: holds}
	}
	cluster := func(alarms []stats.Alarm, ms ...stats.MemberView) *stats.ClusterView {
		return &stats.ClusterView{Enabled: true, Members: ms, Alarms: alarms}
	}
	for _, c := range []struct {
		name string
		s    stats.Snapshot
		want int
	}{
		{"master, no gossip", stats.Snapshot{VRRP: stats.VRRPView{State: "MASTER", HoldsVIP: true}}, 0},
		{"backup hearing a master", stats.Snapshot{VRRP: stats.VRRPView{State: "BACKUP", MasterAddr: "10.0.0.2"}}, 0},
		{"backup hearing no master", stats.Snapshot{VRRP: stats.VRRPView{State: "BACKUP"}}, statusVIP},
		{"backup hearing no master for 1 s", stats.Snapshot{Time: t0.Add(time.Second), VRRP: stats.VRRPView{State: "BACKUP", Since: t0, AdvertInterval: stats.Duration(200 * time.Millisecond)}}, statusVIP},
		{"backup just started", stats.Snapshot{Time: t0.Add(300 * time.Millisecond), VRRP: stats.VRRPView{State: "BACKUP", Since: t0, AdvertInterval: stats.Duration(200 * time.Millisecond)}}, 0},
		{"fault, master heard", stats.Snapshot{VRRP: stats.VRRPView{State: "FAULT", MasterAddr: "10.0.0.2"}}, statusAlarm},
		{"gossip: one holder", stats.Snapshot{Cluster: cluster(nil, member("a", true, true), member("b", true, false))}, 0},
		{"gossip: two holders", stats.Snapshot{VRRP: stats.VRRPView{HoldsVIP: true}, Cluster: cluster(nil, member("a", true, true), member("b", true, true))}, statusVIP},
		{"gossip: none alive holds it", stats.Snapshot{VRRP: stats.VRRPView{MasterAddr: "10.0.0.2"}, Cluster: cluster(nil, member("a", true, false), member("b", false, true))}, statusVIP},
		{"gossip: alarm", stats.Snapshot{Cluster: cluster([]stats.Alarm{{Kind: "config_drift"}}, member("a", true, true))}, statusAlarm},
	} {
		if got, why := statusCode(&c.s); got != c.want {
			t.Errorf("%s: exit %d (%s), want %d", c.name, got, why, c.want)
		}
	}
}
