package phases

import (
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/vipd-project/vipd/pkg/config"
	"github.com/vipd-project/vipd/pkg/topology"
)

// TestRenderVipdVRRPUnicastByDefault: bootstrap knows every LB host, so unless the topology
// says multicast (loadBalancer.unicast: false) it renders unicast peers: each vipd then
// accepts adverts only from the other LB hosts, and a stranger on the link cannot take the VIP
// (test/e2e TestVRRPStrangerCannotTakeVIP). Before, a topology without the key got multicast,
// which trusts every host on the link.
func TestRenderVipdVRRPUnicastByDefault(t *testing.T) {
	ref, err := os.ReadFile("../../deploy/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	key := regexp.MustCompile(`(?m)^  unicast: .*\n`)
	if !key.Match(ref) {
		t.Fatal("deploy/topology.yaml has no loadBalancer.unicast line")
	}
	for _, tc := range []struct {
		name, line string
		peers      map[string][]string // lb -> its unicast peers; nil: multicast
	}{
		{"unset", "", map[string][]string{"lb1": {"192.168.10.143"}, "lb2": {"192.168.10.141"}}},
		{"true", "  unicast: true\n", map[string][]string{"lb1": {"192.168.10.143"}, "lb2": {"192.168.10.141"}}},
		{"false", "  unicast: false\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top, _, err := topology.Parse(key.ReplaceAll(ref, []byte(tc.line)), "topology.yaml")
			if err != nil {
				t.Fatal(err)
			}
			for _, lb := range top.LBs() {
				b, err := RenderVipdConfig(top, lb, "ens33")
				if err != nil {
					t.Fatal(err)
				}
				c, err := config.Parse(lb.Name+".yaml", b)
				if err != nil {
					t.Fatalf("vipd rejects the rendered config: %v\n%s", err, b)
				}
				want := tc.peers[lb.Name]
				if !slices.Equal(c.VRRP.UnicastPeers, want) {
					t.Errorf("%s: unicast_peers %v, want %v (nil: multicast)\n%s", lb.Name, c.VRRP.UnicastPeers, want, b)
				}
				if wantSrc := map[bool]string{true: lb.Address}[want != nil]; c.VRRP.UnicastSource != wantSrc {
					t.Errorf("%s: unicast_source %q, want %q", lb.Name, c.VRRP.UnicastSource, wantSrc)
				}
			}
		})
	}
	// A single LB host has no peer to name: multicast, and still a valid config.
	top, _, err := topology.Parse(key.ReplaceAll(ref, nil), "topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lb1, _ := top.Host("lb1")
	var hosts []topology.Host
	for _, h := range top.Hosts {
		if h.Role != topology.RoleLB || h.Name == "lb1" {
			hosts = append(hosts, h)
		}
	}
	top.Hosts = hosts
	off := false
	top.LoadBalancer.Gossip.Enabled = &off // (gossip needs a peer too)
	b, err := RenderVipdConfig(top, lb1, "ens33")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := config.Parse("lb1.yaml", b); err != nil || len(c.VRRP.UnicastPeers) != 0 || c.VRRP.UnicastSource != "" {
		t.Fatalf("single LB host: %v\n%s", err, b)
	}
}
