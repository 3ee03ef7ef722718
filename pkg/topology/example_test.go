package topology

import "testing"

func TestReferenceExampleParses(t *testing.T) {
	top, warns, err := Load("../../deploy/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings on the reference example: %v", warns)
	}
	if got := len(top.Masters()); got != 3 {
		t.Errorf("masters = %d, want 3", got)
	}
	if got := top.APIEndpoint(); got != "192.168.10.100:6443" {
		t.Errorf("endpoint = %s", got)
	}
	if got := top.SSHFor(top.Hosts[4]).User; got != "ha" {
		t.Errorf("lb1 user = %q, want ha", got)
	}
	if !top.GossipEnabled() || top.LoadBalancer.Gossip.Port != 7946 || top.LoadBalancer.Gossip.SplitBrain != "resign-lower" {
		t.Errorf("gossip = %v %+v, want on, 7946, resign-lower", top.GossipEnabled(), top.LoadBalancer.Gossip)
	}
	if got := top.Channel(); got != "v1.33" {
		t.Errorf("channel = %q", got)
	}
}
