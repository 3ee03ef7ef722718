package phases

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/vipd-project/vipd/pkg/topology"
)

// cluster.cni.name: bridge: the CNI reference plugins (kubernetes-cni) configured on every
// node, no manifest, no image. The cni phase writes each node's conflist and a unit that
// routes the other nodes' pod /24s to them (topology.CNI documents the addressing).
const (
	BridgeConflist = "/etc/cni/net.d/10-bootstrap-bridge.conflist"
	PodRoutesUnit  = "/etc/systemd/system/bootstrap-pod-routes.service"
)

// NodePodCIDR is the pod /24 of a node with cni bridge: the /24 of podCIDR numbered by the
// last byte of the node's address (topology validation guarantees a /16 or larger IPv4
// podCIDR and distinct last bytes).
func NodePodCIDR(t *topology.Topology, h topology.Host) netip.Prefix {
	pod := netip.MustParsePrefix(t.Cluster.PodCIDR).Masked()
	a := netip.MustParseAddr(h.Address).As4()
	b := pod.Addr().As4()
	b[2], b[3] = a[3], 0
	return netip.PrefixFrom(netip.AddrFrom4(b), 24)
}

// RenderBridgeConflist renders the node's CNI configuration: a bridge cni0 that is the pods'
// gateway, host-local addresses from the node's /24, portmap for hostPort.
func RenderBridgeConflist(t *topology.Topology, h topology.Host) []byte {
	return []byte(fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "bootstrap-bridge",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "%s"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, NodePodCIDR(t, h)))
}

// podRoutes returns "cidr via address" for every other node.
func podRoutes(t *topology.Topology, h topology.Host) [][2]string {
	var out [][2]string
	for _, n := range t.Nodes() {
		if n.Name != h.Name {
			out = append(out, [2]string{NodePodCIDR(t, n).String(), n.Address})
		}
	}
	return out
}

// RenderPodRoutesUnit renders the oneshot unit that (re)adds the routes to the other
// nodes' pod /24s at every boot.
func RenderPodRoutesUnit(t *topology.Topology, h topology.Host) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Routes to the other nodes' pods (cluster.cni.name: bridge), written by bootstrap.\n")
	b.WriteString("[Unit]\nDescription=Routes to the pod networks of the other Kubernetes nodes (bootstrap)\nWants=network-online.target\nAfter=network-online.target\nBefore=kubelet.service\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\n")
	for _, r := range podRoutes(t, h) {
		fmt.Fprintf(&b, "ExecStart=/sbin/ip route replace %s via %s\n", r[0], r[1])
	}
	for _, r := range podRoutes(t, h) {
		fmt.Fprintf(&b, "ExecStop=-/sbin/ip route del %s via %s\n", r[0], r[1])
	}
	b.WriteString("\n[Install]\nWantedBy=multi-user.target\n")
	return []byte(b.String())
}

func probeBridge(ctx context.Context, r *Runner, h topology.Host) (Status, error) {
	conf, unit := RenderBridgeConflist(r.t, h), RenderPodRoutesUnit(r.t, h)
	var script strings.Builder
	for _, f := range []string{BridgeConflist, PodRoutesUnit} {
		fmt.Fprintf(&script, "[ -f %[1]s ] && echo \"file %[1]s $(sha256sum < %[1]s | cut -d' ' -f1)\"\n", f)
	}
	script.WriteString("echo \"enabled $(systemctl is-enabled bootstrap-pod-routes 2>/dev/null)\"\n")
	for _, rt := range podRoutes(r.t, h) {
		fmt.Fprintf(&script, "ip -4 route show %s | grep -q 'via %s ' || echo missing %s\n", rt[0], rt[1], rt[0])
	}
	script.WriteString("true")
	out, _, err := r.probe(ctx, h, "cni/bridge", script.String())
	if err != nil {
		return Status{}, err
	}
	sums := map[string]string{}
	enabled, missing := false, 0
	for _, line := range strings.Split(out, "\n") {
		fs := strings.Fields(line)
		switch {
		case len(fs) == 3 && fs[0] == "file":
			sums[fs[1]] = fs[2]
		case len(fs) == 2 && fs[0] == "enabled":
			enabled = fs[1] == "enabled"
		case len(fs) == 2 && fs[0] == "missing":
			missing++
		}
	}
	var todo []string
	if sums[BridgeConflist] != sha(conf) {
		todo = append(todo, fmt.Sprintf("write %s (bridge cni0, pods in %s)", BridgeConflist, NodePodCIDR(r.t, h)))
	}
	if sums[PodRoutesUnit] != sha(unit) || !enabled || missing > 0 {
		todo = append(todo, fmt.Sprintf("write %s and start it: routes to the %d other nodes' pod networks", PodRoutesUnit, len(podRoutes(r.t, h))))
	}
	if len(todo) == 0 {
		return Status{Done: true, Detail: fmt.Sprintf("bridge: pods in %s, routes to %d nodes", NodePodCIDR(r.t, h), len(podRoutes(r.t, h)))}, nil
	}
	return Status{Todo: todo}, nil
}

func runBridge(ctx context.Context, r *Runner, h topology.Host) (string, error) {
	if _, err := r.change(ctx, h, "cni/dir", "install -d -m 0755 /etc/cni/net.d"); err != nil {
		return "", err
	}
	if err := r.upload(ctx, h, BridgeConflist, RenderBridgeConflist(r.t, h), 0o644, "root:root"); err != nil {
		return "", err
	}
	if err := r.upload(ctx, h, PodRoutesUnit, RenderPodRoutesUnit(r.t, h), 0o644, "root:root"); err != nil {
		return "", err
	}
	if _, err := r.change(ctx, h, "cni/routes", "systemctl daemon-reload && systemctl enable bootstrap-pod-routes && systemctl restart bootstrap-pod-routes"); err != nil {
		return "", err
	}
	return fmt.Sprintf("bridge: pods in %s, routes to %d nodes", NodePodCIDR(r.t, h), len(podRoutes(r.t, h))), nil
}
