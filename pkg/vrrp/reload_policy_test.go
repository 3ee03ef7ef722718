package vrrp_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/vipd-project/vipd/pkg/config"
)

// vrrp.RestartFields is the one list of the vrrp settings a reload cannot change: vipd's
// reload and bootstrap see it through config.RestartRequired, Router.Reconfigure refuses by
// it. Each setting is asserted as a user would expect it (live: priority, timers, peers;
// restart: the sockets, the VIPs, the router's identity), and both views must agree.
func TestReloadPolicyAgreesWithReconfigure(t *testing.T) {
	const base = "vrrp:\n  interface: eth0\n  vips: [10.0.0.100/24]\n  unicast_peers: [10.0.0.2]\n"
	changes := map[string]struct {
		yaml    string
		restart bool
	}{
		"priority":         {"  priority: 90\n", false},
		"advert_interval":  {"  advert_interval: 1s\n", false},
		"preempt":          {"  preempt: false\n", false},
		"preempt_delay":    {"  preempt_delay: 5s\n", false},
		"garp":             {"  garp: {count: 3, interval: 100ms, refresh: 0s}\n", false},
		"peers":            {"  unicast_peers: [10.0.0.3]\n", false},
		"max_peer":         {"  max_peer_advert_interval: 2s\n", false},
		"interface":        {"  interface: eth1\n", true},
		"vrid":             {"  vrid: 52\n", true},
		"version":          {"  version: 2\n  advert_interval: 1s\n", true},
		"vips":             {"  vips: [10.0.0.101/24]\n", true},
		"unicast_source":   {"  unicast_source: 10.0.0.1\n", true},
		"multicast":        {"  unicast_peers: []\n", true},
		"track_interface":  {"  track_interface: false\n", true},
		"source_mac_check": {"  source_mac_check: false\n", true},
	}
	parse := func(s string) *config.Config {
		t.Helper()
		c, err := config.Parse("t.yaml", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	old := parse(base)
	for name, c := range changes {
		change := c.yaml
		// A later key replaces the earlier one: drop the line being changed from base.
		key := strings.TrimSpace(strings.SplitN(change, ":", 2)[0])
		var lines []string
		for _, l := range strings.SplitAfter(base, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), key+":") {
				lines = append(lines, l)
			}
		}
		nc := parse(strings.Join(lines, "") + change)
		restart := slices.ContainsFunc(config.RestartRequired(old, nc), func(f string) bool { return strings.HasPrefix(f, "vrrp.") })
		refused := old.VRRPConfig().Reconfigurable(nc.VRRPConfig()) != nil
		if restart != c.restart {
			t.Errorf("%s: RestartRequired says restart=%v, want %v", name, restart, c.restart)
		}
		if restart != refused {
			t.Errorf("%s: RestartRequired says restart=%v, Reconfigure refuses=%v", name, restart, refused)
		}
	}
}
