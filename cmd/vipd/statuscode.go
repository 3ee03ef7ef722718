package main

import (
	"fmt"
	"strings"

	"github.com/vipd-project/vipd/pkg/stats"
)

// Exit codes of `vipd status` beyond 0 (all well) and 2 (usage), for scripts and monitoring
// plugins. When several apply, the highest wins.
const (
	statusNotAnswering = 3 // the daemon does not answer (UNKNOWN)
	statusAlarm        = 4 // an alarm is raised, or this host is in FAULT
	statusVIP          = 5 // the VIP is held by no host, or by two
)

const statusExitText = `Exit status: 0 all is well; 3 the daemon does not answer; 4 an alarm is
raised (a cluster alarm: split_brain, blocked_vrrp, config_drift, backend_disagreement,
peer_lost, gossip_key) or this host is in FAULT; 5 the VIP is held by no host or by two; 2 a
usage error. When several apply, the highest wins; the reason is printed on stderr.
Who holds the VIP: with gossip (cluster.enabled) from every live member's report. Without
gossip a host knows only itself and the master it hears: "no host" is this host not holding
the VIP and hearing no master's adverts for a master-down interval; two holders cannot be seen from one host (run vipd
status on each, or enable gossip).`

// statusCode judges a snapshot: the exit code and why.
func statusCode(s *stats.Snapshot) (int, string) {
	var holders []string
	known := false
	if c := s.Cluster; c != nil && c.Enabled && len(c.Members) > 0 {
		known = true
		for _, m := range c.Members {
			if m.Alive && m.HoldsVIP {
				holders = append(holders, m.Name)
			}
		}
	}
	if !known {
		switch {
		case s.VRRP.HoldsVIP:
			holders = []string{s.Node}
		case s.VRRP.MasterAddr != "":
			holders = []string{s.VRRP.MasterAddr}
		case !s.Time.IsZero() && s.Time.Sub(s.VRRP.Since) < 4*s.VRRP.AdvertInterval.Std():
			// Just started or just changed state: a master's advert may not have come yet
			// (a master-down interval is at most 4 advert intervals). No verdict.
			holders = []string{"unknown yet"}
		}
	}
	switch {
	case len(holders) == 0:
		return statusVIP, fmt.Sprintf("the VIP %s is held by no host (this host: %s)", strings.Join(s.VRRP.VIPs, ", "), s.VRRP.State)
	case len(holders) > 1:
		return statusVIP, fmt.Sprintf("the VIP %s is held by %d hosts: %s", strings.Join(s.VRRP.VIPs, ", "), len(holders), strings.Join(holders, ", "))
	}
	var alarms []string
	if s.Cluster != nil {
		for _, a := range s.Cluster.Alarms {
			alarms = append(alarms, a.Kind+": "+a.Message)
		}
	}
	if s.VRRP.State == stats.StateFault {
		alarms = append(alarms, "this host is in FAULT: "+strings.Join(s.VRRP.Faults, "; "))
	}
	if len(alarms) > 0 {
		return statusAlarm, "alarm: " + strings.Join(alarms, "; ")
	}
	return 0, ""
}
