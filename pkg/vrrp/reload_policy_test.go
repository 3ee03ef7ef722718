package vrrp_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/vipd-project/vipd/pkg/config"
)

// config.RestartRequired is the one list of what a reload cannot change (vipd's reload and
// bootstrap call it); Router.Reconfigure keeps its own guard. They must agree on every vrrp
// field: a change the list lets through must be one Reconfigure applies, and the reverse.
func TestReloadPolicyAgreesWithReconfigure(t *testing.T) {
	const base = "vrrp:\n  interface: eth0\n  vips: [10.0.0.100/24]\n  unicast_peers: [10.0.0.2]\n"
	changes := map[string]string{
		"priority":         "  priority: 90\n",
		"advert_interval":  "  advert_interval: 1s\n",
		"preempt":          "  preempt: false\n",
		"preempt_delay":    "  preempt_delay: 5s\n",
		"garp":             "  garp: {count: 3, interval: 100ms, refresh: 0s}\n",
		"peers":            "  unicast_peers: [10.0.0.3]\n",
		"max_peer":         "  max_peer_advert_interval: 2s\n",
		"interface":        "  interface: eth1\n",
		"vrid":             "  vrid: 52\n",
		"version":          "  version: 2\n  advert_interval: 1s\n",
		"vips":             "  vips: [10.0.0.101/24]\n",
		"unicast_source":   "  unicast_source: 10.0.0.1\n",
		"multicast":        "  unicast_peers: []\n",
		"track_interface":  "  track_interface: false\n",
		"source_mac_check": "  source_mac_check: false\n",
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
	for name, change := range changes {
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
		if restart != refused {
			t.Errorf("%s: RestartRequired says restart=%v, Reconfigure refuses=%v", name, restart, refused)
		}
	}
}
