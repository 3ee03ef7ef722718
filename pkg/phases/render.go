package phases

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/vipd-project/vipd/pkg/config"
	"github.com/vipd-project/vipd/pkg/topology"
	"github.com/vipd-project/vipd/pkg/vipdpkg"
)

// Paths on the hosts.
const (
	VipdBinaryPath  = vipdpkg.BinaryPath // installed by the vipd package
	VipdUnitPath    = vipdpkg.UnitPath
	VipdConfigDir   = "/etc/vipd"
	VipdConfigPath  = "/etc/vipd/vipd.yaml"
	VipdAuthPath    = "/etc/vipd/vrrp-pass"
	VipdGossipKey   = "/etc/vipd/gossip.key"
	KubeadmConfig   = "/etc/kubernetes/kubeadm-config.yaml"
	AdminConf       = "/etc/kubernetes/admin.conf"
	KubeletConf     = "/etc/kubernetes/kubelet.conf"
	ModulesConf     = "/etc/modules-load.d/k8s.conf"
	SysctlConf      = "/etc/sysctl.d/k8s.conf"
	ContainerdToml  = "/etc/containerd/config.toml"
	KubernetesList  = "/etc/apt/sources.list.d/kubernetes.list"
	ContainerdList  = "/etc/apt/sources.list.d/containerd.list"
	CNIManifestPath = "/etc/kubernetes/cni-manifest.yaml"
)

// RenderVipdConfig renders /etc/vipd/vipd.yaml for an lb host. iface is the interface that
// carries the VIP (the topology's, or the one holding the host's address from facts).
func RenderVipdConfig(t *topology.Topology, h topology.Host, iface string) ([]byte, error) {
	if h.Role != topology.RoleLB {
		return nil, fmt.Errorf("render vipd config: %s is not an lb host", h.Name)
	}
	lb := t.LoadBalancer
	if lb.Interface != "" {
		iface = lb.Interface
	}
	if iface == "" {
		return nil, fmt.Errorf("render vipd config for %s: no interface (set loadBalancer.interface, or facts found none holding %s)", h.Name, h.Address)
	}
	// vipd's own schema (pkg/config), written with only what the topology decides: every key
	// left out takes vipd's default, so a default has one owner.
	preempt := lb.Preempt == nil || *lb.Preempt
	c := config.Config{
		NodeName: h.Name,
		LogLevel: "info",
		VRRP: config.VRRP{
			Interface:      iface,
			VRID:           lb.VRID,
			Priority:       t.LBPriority(h),
			Version:        lb.VRRPVersion,
			AdvertInterval: config.Duration(lb.AdvertInterval),
			Preempt:        &preempt,
			VIPs:           []string{t.VIPPrefix().String()},
		},
		Proxy: &config.Proxy{
			Listen:  ":" + strconv.Itoa(lb.APIPort),
			Balance: lb.Balance,
		},
		Stats: config.Stats{Listen: ":" + strconv.Itoa(lb.StatsPort)},
	}
	// Unicast unless the topology says multicast: vipd then accepts adverts only from the
	// other LB hosts (TTL 255, their MAC), so no other host on the link can take the VIP. With
	// a single LB host there is no peer to name, and vipd runs in multicast mode.
	if lb.UnicastMode() {
		for _, o := range t.LBs() {
			if o.Name != h.Name {
				c.VRRP.UnicastPeers = append(c.VRRP.UnicastPeers, o.Address)
			}
		}
		if len(c.VRRP.UnicastPeers) > 0 {
			c.VRRP.UnicastSource = h.Address
		}
	}
	if lb.VRRPVersion == 2 && lb.AuthPassEnv != "" {
		c.VRRP.AuthPassFile = VipdAuthPath
	}
	for _, m := range t.Masters() {
		c.Proxy.Backends = append(c.Proxy.Backends, net.JoinHostPort(m.Address, strconv.Itoa(lb.APIPort)))
	}
	if t.GossipEnabled() {
		port := strconv.Itoa(lb.Gossip.Port)
		c.Cluster = config.Cluster{Enabled: true, Bind: net.JoinHostPort(h.Address, port), KeyFile: VipdGossipKey, SplitBrain: lb.Gossip.SplitBrain}
		for _, o := range t.LBs() {
			if o.Name != h.Name {
				c.Cluster.Peers = append(c.Cluster.Peers, net.JoinHostPort(o.Address, port))
			}
		}
	}
	switch lb.HealthCheck {
	case "tcp":
		c.Health = config.Health{Type: "tcp"}
	default:
		// kube-apiserver's serving certificate (kubeadm's) is not issued for the LB's view of
		// the masters, and /readyz answers anonymous requests.
		skip := true
		c.Health = config.Health{Type: "https", Path: "/readyz", TLS: config.TLS{InsecureSkipVerify: &skip}}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# vipd configuration for %s, rendered by bootstrap from the topology of cluster %q.\n", h.Name, t.Cluster.Name)
	fmt.Fprintf(&b, "# Edit the topology and rerun `bootstrap up --only lb`: changes made here are overwritten.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("render vipd config for %s: %w", h.Name, err)
	}
	enc.Close()
	// What vipd would refuse is not uploaded: the same loader judges the rendered file (the
	// host's interface and files are checked by vipd check on the host, ExecStartPre).
	if _, err := config.Parse(VipdConfigPath, b.Bytes()); err != nil {
		return nil, fmt.Errorf("render vipd config for %s: vipd would refuse it: %w", h.Name, err)
	}
	return b.Bytes(), nil
}

// KubeadmAPIVersion returns the kubeadm config API for a Kubernetes minor version:
// v1beta4 from 1.31, v1beta3 before.
func KubeadmAPIVersion(minor int) string {
	if minor >= 31 {
		return "kubeadm.k8s.io/v1beta4"
	}
	return "kubeadm.k8s.io/v1beta3"
}

// RenderKubeadmConfig renders the kubeadm init configuration for the first master:
// InitConfiguration, ClusterConfiguration and KubeletConfiguration. Certificates are shared
// with the other masters by `kubeadm init --upload-certs`.
func RenderKubeadmConfig(t *topology.Topology, first topology.Host) []byte {
	api := KubeadmAPIVersion(t.MinorVersion())
	port := t.LoadBalancer.APIPort
	sans := []string{t.VIPAddr()}
	for _, m := range t.Masters() {
		sans = append(sans, m.Address)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# kubeadm configuration for cluster %q, rendered by bootstrap. Used once by\n", t.Cluster.Name)
	fmt.Fprintf(&b, "# `kubeadm init --config %s --upload-certs` on %s.\n", KubeadmConfig, first.Name)
	fmt.Fprintf(&b, "apiVersion: %s\nkind: InitConfiguration\n", api)
	fmt.Fprintf(&b, "localAPIEndpoint:\n  advertiseAddress: %s\n  bindPort: %d\n", first.Address, port)
	fmt.Fprintf(&b, "nodeRegistration:\n  name: %s\n  criSocket: unix:///var/run/containerd/containerd.sock\n", first.Name)
	fmt.Fprintf(&b, "---\napiVersion: %s\nkind: ClusterConfiguration\n", api)
	fmt.Fprintf(&b, "clusterName: %q\n", t.Cluster.Name)
	fmt.Fprintf(&b, "kubernetesVersion: v%s\n", t.Cluster.KubernetesVersion)
	fmt.Fprintf(&b, "controlPlaneEndpoint: %q\n", t.APIEndpoint())
	fmt.Fprintf(&b, "networking:\n  podSubnet: %s\n  serviceSubnet: %s\n", t.Cluster.PodCIDR, t.Cluster.ServiceCIDR)
	fmt.Fprintf(&b, "apiServer:\n  certSANs:\n")
	for _, s := range sans {
		fmt.Fprintf(&b, "    - %q\n", s)
	}
	fmt.Fprintf(&b, "---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n")
	if n := t.Cluster.KubeProxy.ConntrackMaxPerCore; n != nil {
		fmt.Fprintf(&b, "---\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nconntrack:\n  maxPerCore: %d\n", *n)
	}
	return []byte(b.String())
}
