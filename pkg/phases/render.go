package phases

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/vipd-project/vipd/pkg/topology"
)

// Paths on the hosts.
const (
	VipdBinaryPath  = "/usr/local/bin/vipd"
	VipdConfigDir   = "/etc/vipd"
	VipdConfigPath  = "/etc/vipd/vipd.yaml"
	VipdUnitPath    = "/etc/systemd/system/vipd.service"
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

// The vipd configuration as bootstrap renders it: the subset of vipd's schema
// (deploy/vipd.yaml, snake_case) that the topology sets; vipd's defaults do the rest.
type vipdConfig struct {
	NodeName string       `yaml:"node_name"`
	LogLevel string       `yaml:"log_level"`
	VRRP     vipdVRRP     `yaml:"vrrp"`
	Proxy    vipdProxy    `yaml:"proxy"`
	Health   vipdHealth   `yaml:"health"`
	Stats    vipdStats    `yaml:"stats"`
	Cluster  *vipdCluster `yaml:"cluster,omitempty"`
}

type vipdVRRP struct {
	Interface      string   `yaml:"interface"`
	VRID           int      `yaml:"vrid"`
	Priority       int      `yaml:"priority"`
	Version        int      `yaml:"version"`
	AdvertInterval string   `yaml:"advert_interval"`
	Preempt        bool     `yaml:"preempt"`
	VIPs           []string `yaml:"vips"`
	UnicastPeers   []string `yaml:"unicast_peers,omitempty"`
	UnicastSource  string   `yaml:"unicast_source,omitempty"`
	AuthPassFile   string   `yaml:"auth_pass_file,omitempty"`
}

type vipdProxy struct {
	Listen   string   `yaml:"listen"`
	Backends []string `yaml:"backends"`
	Balance  string   `yaml:"balance"`
}

type vipdHealth struct {
	Type string   `yaml:"type"`
	Path string   `yaml:"path,omitempty"`
	TLS  *vipdTLS `yaml:"tls,omitempty"`
}

type vipdTLS struct {
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

type vipdStats struct {
	Listen string `yaml:"listen"`
}

type vipdCluster struct {
	Enabled    bool     `yaml:"enabled"`
	Bind       string   `yaml:"bind"`
	Peers      []string `yaml:"peers"`
	KeyFile    string   `yaml:"key_file"`
	SplitBrain string   `yaml:"split_brain"`
}

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
	c := vipdConfig{
		NodeName: h.Name,
		LogLevel: "info",
		VRRP: vipdVRRP{
			Interface:      iface,
			VRID:           lb.VRID,
			Priority:       t.LBPriority(h),
			Version:        lb.VRRPVersion,
			AdvertInterval: lb.AdvertInterval.String(),
			Preempt:        lb.Preempt == nil || *lb.Preempt,
			VIPs:           []string{t.VIPPrefix().String()},
		},
		Proxy: vipdProxy{
			Listen:  ":" + strconv.Itoa(lb.APIPort),
			Balance: lb.Balance,
		},
		Stats: vipdStats{Listen: ":" + strconv.Itoa(lb.StatsPort)},
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
		cl := &vipdCluster{Enabled: true, Bind: net.JoinHostPort(h.Address, port), KeyFile: VipdGossipKey, SplitBrain: lb.Gossip.SplitBrain}
		for _, o := range t.LBs() {
			if o.Name != h.Name {
				cl.Peers = append(cl.Peers, net.JoinHostPort(o.Address, port))
			}
		}
		c.Cluster = cl
	}
	switch lb.HealthCheck {
	case "tcp":
		c.Health = vipdHealth{Type: "tcp"}
	default:
		// kube-apiserver's serving certificate (kubeadm's) is not issued for the LB's view of
		// the masters, and /readyz answers anonymous requests.
		c.Health = vipdHealth{Type: "https", Path: "/readyz", TLS: &vipdTLS{InsecureSkipVerify: true}}
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
	fmt.Fprintf(&b, "clusterName: %s\n", t.Cluster.Name)
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
