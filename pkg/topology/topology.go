// Package topology owns the bootstrap tool's input file (topology.yaml): its schema, strict
// decoding, defaults and validation, and the values derived from it (the apt channel, the
// per-host SSH settings, the hosts by role). It does no I/O besides reading the file.
package topology

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Roles a host can have.
const (
	RoleMaster = "master"
	RoleWorker = "worker"
	RoleLB     = "lb"
)

// Defaults applied by Parse when a field is empty.
const (
	DefaultKubernetesVersion = "1.33.6"
	DefaultPodCIDR           = "10.10.0.0/16"
	DefaultServiceCIDR       = "10.96.0.0/12"
	DefaultCNI               = "calico"
	DefaultCalicoVersion     = "v3.30.3"
	DefaultVRID              = 51
	DefaultAPIPort           = 6443
	DefaultStatsPort         = 8404
	DefaultAdvertInterval    = 200 * time.Millisecond // vipd's default: ~0.7 s failover
	DefaultVRRPVersion       = 3
	DefaultHealthCheck       = "https"
	DefaultSSHUser           = "root"
	DefaultSSHPort           = 22
	DefaultKnownHosts        = "~/.ssh/known_hosts"
	DefaultConnectTimeout    = 10 * time.Second
	DefaultConnectPatience   = 30 * time.Second
	DefaultPasswordEnv       = "BOOTSTRAP_SSH_PASSWORD"
	DefaultSudoPasswordEnv   = "BOOTSTRAP_SUDO_PASSWORD"
	DefaultContainerdPackage = "containerd"
	DefaultGossipPort        = 7946
	DefaultSplitBrain        = SplitBrainResignLower
	FirstLBPriority          = 100
	LBPriorityStep           = 10
)

// Topology is the whole topology.yaml.
type Topology struct {
	Cluster      Cluster      `yaml:"cluster"`
	LoadBalancer LoadBalancer `yaml:"loadBalancer"`
	SSH          SSH          `yaml:"ssh"`
	Hosts        []Host       `yaml:"hosts"`
	Packages     Packages     `yaml:"packages"`

	// File is the path the topology was read from ("" when parsed from memory); used in
	// messages and in the rerun hint.
	File string `yaml:"-"`
}

// Cluster holds the Kubernetes settings.
type Cluster struct {
	Name              string    `yaml:"name"`
	KubernetesVersion string    `yaml:"kubernetesVersion"`
	PodCIDR           string    `yaml:"podCIDR"`
	ServiceCIDR       string    `yaml:"serviceCIDR"`
	CNI               CNI       `yaml:"cni"`
	KubeProxy         KubeProxy `yaml:"kubeProxy"`
}

// KubeProxy tunes kube-proxy through the KubeProxyConfiguration bootstrap hands kubeadm.
type KubeProxy struct {
	// ConntrackMaxPerCore is kube-proxy's conntrack.maxPerCore: connection-tracking entries
	// per CPU core; kube-proxy raises the node's nf_conntrack_max to this times the cores
	// (and exits when it cannot write it). 0 leaves nf_conntrack_max as the node has it:
	// needed where that sysctl is read-only, such as nodes that are containers (kind sets
	// 0). Unset: kube-proxy's default (32768).
	ConntrackMaxPerCore *int `yaml:"conntrackMaxPerCore"`
}

// CNI selects the pod network add-on.
type CNI struct {
	// Name is "calico", "bridge" or "none" (no CNI phase). bridge is the CNI reference
	// plugins bridge + host-local (kubernetes-cni, in /opt/cni/bin): no manifest and no
	// image, so it works offline. Each node's pods get the /24 of podCIDR numbered by the
	// last byte of the node's address (10.10.12.0/24 for 192.168.10.12), and every node
	// routes the other nodes' /24s to them, so the nodes must share a network; no network
	// policy, pod traffic leaving the pod network is not masqueraded.
	Name    string `yaml:"name"`
	Version string `yaml:"version"`
	// Manifest is a URL (fetched on the first master) or a local path (uploaded).
	// Default: Calico's manifest for Version on GitHub.
	Manifest string `yaml:"manifest"`
}

// LoadBalancer holds the VIP and the vipd settings exposed in the topology.
type LoadBalancer struct {
	// VIP with its prefix length, e.g. 192.168.10.100/24.
	VIP string `yaml:"vip"`
	// Interface carrying the VIP. Empty: the interface holding the host's address (facts).
	Interface      string        `yaml:"interface"`
	VRID           int           `yaml:"vrid"`
	APIPort        int           `yaml:"apiPort"`
	StatsPort      int           `yaml:"statsPort"`
	AdvertInterval time.Duration `yaml:"advertInterval"`
	VRRPVersion    int           `yaml:"vrrpVersion"`
	// Unicast (default true; read it with UnicastMode) makes each vipd send its adverts to
	// the other LB hosts and accept adverts only from them (vrrp.unicast_peers): a host that
	// is not one of the LB hosts cannot take the VIP. false: multicast 224.0.0.18, where
	// every host on the link may join the election (RFC 5798 has no authentication).
	Unicast *bool `yaml:"unicast"`
	// HealthCheck is "https" (GET /readyz) or "tcp" (connect only, like the reference).
	HealthCheck string `yaml:"healthCheck"`
	// AuthPassEnv names an environment variable holding the VRRPv2 PASS password.
	AuthPassEnv string `yaml:"authPassEnv"`
	// Preempt: a higher-priority LB takes the VIP back when it returns (default true).
	Preempt *bool `yaml:"preempt"`
	// Balance is roundrobin (default) or leastconn.
	Balance string `yaml:"balance"`
	// Gossip is vipd's memberlist cluster between the lb hosts.
	Gossip Gossip `yaml:"gossip"`
}

// UnicastMode says whether the LB hosts' vipd use unicast peers: loadBalancer.unicast, true
// unless the topology says false.
func (lb *LoadBalancer) UnicastMode() bool { return lb.Unicast == nil || *lb.Unicast }

// Split-brain resolutions of vipd's gossip cluster (cluster.split_brain).
const (
	// SplitBrainNone only reports two masters (alarm, log, metric).
	SplitBrainNone = "none"
	// SplitBrainResignLower makes the lower-priority master give up the VIP while both are
	// master and alive on the gossip path.
	SplitBrainResignLower = "resign-lower"
)

// Gossip configures vipd's gossip cluster between the lb hosts (vipd's cluster section):
// split-brain and blocked-VRRP detection, config drift, one stats view of the tier, and the
// reset of clients' connections after an lb crash. Traffic is encrypted with a key that
// bootstrap generates once and keeps on the lb hosts (/etc/vipd/gossip.key), never in this file.
type Gossip struct {
	// Enabled: default true when there are two or more lb hosts (false with one: no peer).
	Enabled *bool `yaml:"enabled"`
	// Port for gossip, TCP and UDP, on each lb host's address (default 7946).
	Port int `yaml:"port"`
	// SplitBrain is none or resign-lower (default).
	SplitBrain string `yaml:"splitBrain"`
}

// GossipEnabled reports whether vipd's gossip cluster is on. Valid after Parse.
func (t *Topology) GossipEnabled() bool {
	g := t.LoadBalancer.Gossip.Enabled
	return g != nil && *g
}

// SSH holds connection settings: the top-level block is the default, a host's ssh block
// overrides the fields it sets.
type SSH struct {
	// Address to connect to when it differs from the host's cluster address (NAT, lab).
	Address      string `yaml:"address"`
	User         string `yaml:"user"`
	Port         int    `yaml:"port"`
	IdentityFile string `yaml:"identityFile"`
	// Agent: use ssh-agent (SSH_AUTH_SOCK). Default: when SSH_AUTH_SOCK is set.
	Agent *bool `yaml:"agent"`
	// PasswordEnv names the environment variable holding the SSH password.
	PasswordEnv string `yaml:"passwordEnv"`
	// SudoPasswordEnv names the variable holding the sudo password (default: the SSH password).
	SudoPasswordEnv string    `yaml:"sudoPasswordEnv"`
	KnownHosts      string    `yaml:"knownHosts"`
	JumpHost        *JumpHost `yaml:"jumpHost"`
	// ConnectTimeout bounds one connection attempt (TCP connect and SSH handshake).
	ConnectTimeout time.Duration `yaml:"connectTimeout"`
	// ConnectPatience is how long a host that refuses or drops connections (sshd
	// restarting, a reboot finishing, a short network outage) is retried before bootstrap
	// gives up with exit code 3 (default 30s). It applies to every reconnect, also in the
	// middle of a phase.
	ConnectPatience time.Duration `yaml:"connectPatience"`

	// userDefaulted, portDefaulted: User and Port are the defaults, not written in the file
	// (bootstrap then takes them from ~/.ssh/config when it has them for the host).
	userDefaulted, portDefaulted bool
}

// UserDefaulted reports whether the user is the default (root), not set in the topology.
func (s SSH) UserDefaulted() bool { return s.userDefaulted }

// PortDefaulted reports whether the port is the default (22), not set in the topology.
func (s SSH) PortDefaulted() bool { return s.portDefaulted }

// JumpHost is an SSH bastion the connections go through.
type JumpHost struct {
	Address      string `yaml:"address"`
	Port         int    `yaml:"port"`
	User         string `yaml:"user"`
	IdentityFile string `yaml:"identityFile"`
}

// Host is one machine of the topology.
type Host struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	Role    string `yaml:"role"`
	// Priority is the VRRP priority of an lb host (default 100 for the first, 90, 80...).
	Priority int `yaml:"priority"`
	// SSH overrides the top-level ssh block for this host.
	SSH *SSH `yaml:"ssh"`
}

// Packages says where the software comes from.
type Packages struct {
	// KubernetesRepo is the apt repository (flat, "deb [signed-by=...] URL /").
	// Default: https://pkgs.k8s.io/core:/stable:/<channel>/deb/.
	KubernetesRepo string `yaml:"kubernetesRepo"`
	// KubernetesKey is the URL of the repository's ASCII-armored signing key.
	// Default: KubernetesRepo + "Release.key".
	KubernetesKey string     `yaml:"kubernetesKey"`
	Containerd    Containerd `yaml:"containerd"`
	// ImageBundle is a local image bundle directory (`bootstrap bundle` writes one; pkg/bundle
	// says what it holds), relative to the working directory like cluster.cni.manifest. When
	// set, bootstrap checks it covers the images kubeadm needs before touching a host, then
	// uploads its image archives to every node and imports them into containerd before
	// kubeadm runs: no node pulls from a registry (air-gapped installs). Default: none (the
	// nodes pull from registry.k8s.io).
	ImageBundle string `yaml:"imageBundle"`
}

// Containerd says which package provides containerd and from where.
type Containerd struct {
	Package string `yaml:"package"`
	// Repo is an extra apt source line; empty: the OS's own repositories. It may refer to
	// the key below as /etc/apt/keyrings/containerd-apt-keyring.gpg.
	Repo string `yaml:"repo"`
	// Key is the URL of the ASCII-armored key signing Repo (optional).
	Key string `yaml:"key"`
}

// Apt keyring paths on the hosts.
const (
	KubernetesKeyring = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg"
	ContainerdKeyring = "/etc/apt/keyrings/containerd-apt-keyring.gpg"
)

// Masters returns the master hosts in file order; the first is the one kubeadm init runs on.
func (t *Topology) Masters() []Host { return t.byRole(RoleMaster) }

// Workers returns the worker hosts in file order.
func (t *Topology) Workers() []Host { return t.byRole(RoleWorker) }

// LBs returns the load-balancer hosts in file order.
func (t *Topology) LBs() []Host { return t.byRole(RoleLB) }

// Nodes returns the Kubernetes nodes: masters then workers.
func (t *Topology) Nodes() []Host { return append(t.Masters(), t.Workers()...) }

// Host returns the host with that name.
func (t *Topology) Host(name string) (Host, bool) {
	for _, h := range t.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

func (t *Topology) byRole(role string) []Host {
	var out []Host
	for _, h := range t.Hosts {
		if h.Role == role {
			out = append(out, h)
		}
	}
	return out
}

// VIPPrefix returns the VIP with its prefix length. Valid after Parse.
func (t *Topology) VIPPrefix() netip.Prefix {
	p, _ := netip.ParsePrefix(t.LoadBalancer.VIP)
	return p
}

// VIPAddr returns the VIP without prefix length, e.g. "192.168.10.100".
func (t *Topology) VIPAddr() string { return t.VIPPrefix().Addr().String() }

// APIEndpoint returns VIP:apiPort, the controlPlaneEndpoint.
func (t *Topology) APIEndpoint() string {
	return netip.AddrPortFrom(t.VIPPrefix().Addr(), uint16(t.LoadBalancer.APIPort)).String()
}

// APIServerURL returns https://VIP:apiPort.
func (t *Topology) APIServerURL() string { return "https://" + t.APIEndpoint() }

// Channel returns the apt channel of the Kubernetes version: "1.33.6" -> "v1.33".
func Channel(version string) string {
	v := strings.TrimPrefix(version, "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return "v" + v
	}
	return "v" + parts[0] + "." + parts[1]
}

// Channel returns the apt channel of the cluster's version.
func (t *Topology) Channel() string { return Channel(t.Cluster.KubernetesVersion) }

// MinorVersion returns the minor number of the Kubernetes version (33 for 1.33.6).
func (t *Topology) MinorVersion() int {
	_, minor, _, _ := parseVersion(t.Cluster.KubernetesVersion)
	return minor
}

// KubernetesRepoLine returns the apt source line for the Kubernetes packages.
func (t *Topology) KubernetesRepoLine() string {
	return fmt.Sprintf("deb [signed-by=%s] %s /", KubernetesKeyring, t.Packages.KubernetesRepo)
}

// LBPriority returns the VRRP priority of an lb host: its own priority when set, otherwise
// 100 for the first LB in the file, 90 for the next, and so on (never below 1).
func (t *Topology) LBPriority(h Host) int {
	if h.Priority != 0 {
		return h.Priority
	}
	for i, lb := range t.LBs() {
		if lb.Name == h.Name {
			p := FirstLBPriority - i*LBPriorityStep
			if p < 1 {
				p = 1
			}
			return p
		}
	}
	return 0
}

// SSHFor returns the SSH settings for a host: the top-level block with the host's overrides.
func (t *Topology) SSHFor(h Host) SSH {
	s := t.SSH
	if s.JumpHost != nil {
		j := *s.JumpHost
		s.JumpHost = &j
	}
	if o := h.SSH; o != nil {
		if o.Address != "" {
			s.Address = o.Address
		}
		if o.User != "" {
			s.User = o.User
			s.userDefaulted = false
		}
		if o.Port != 0 {
			s.Port = o.Port
			s.portDefaulted = false
		}
		if o.IdentityFile != "" {
			s.IdentityFile = o.IdentityFile
		}
		if o.Agent != nil {
			a := *o.Agent
			s.Agent = &a
		}
		if o.PasswordEnv != "" {
			s.PasswordEnv = o.PasswordEnv
		}
		if o.SudoPasswordEnv != "" {
			s.SudoPasswordEnv = o.SudoPasswordEnv
		}
		if o.KnownHosts != "" {
			s.KnownHosts = o.KnownHosts
		}
		if o.JumpHost != nil {
			j := *o.JumpHost
			s.JumpHost = &j
		}
		if o.ConnectTimeout != 0 {
			s.ConnectTimeout = o.ConnectTimeout
		}
		if o.ConnectPatience != 0 {
			s.ConnectPatience = o.ConnectPatience
		}
	}
	if s.Address == "" {
		s.Address = h.Address
	}
	if s.JumpHost != nil {
		if s.JumpHost.Port == 0 {
			s.JumpHost.Port = DefaultSSHPort
		}
		// The jump host is one machine for every host: its defaults come from the top-level block.
		if s.JumpHost.User == "" {
			s.JumpHost.User = t.SSH.User
		}
		if s.JumpHost.IdentityFile == "" {
			s.JumpHost.IdentityFile = t.SSH.IdentityFile
		}
	}
	return s
}

func parseVersion(v string) (major, minor, patch int, ok bool) {
	v = strings.TrimPrefix(v, "v")
	n, err := fmt.Sscanf(v, "%d.%d.%d", &major, &minor, &patch)
	if err != nil || n != 3 || fmt.Sprintf("%d.%d.%d", major, minor, patch) != v {
		return 0, 0, 0, false
	}
	return major, minor, patch, true
}
