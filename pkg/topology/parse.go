package topology

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/vipd-project/vipd/pkg/yamlpos"
	"gopkg.in/yaml.v3"
)

// Problem is one finding of validation, naming the field and the line it is on.
type Problem struct {
	File    string
	Line    int    // 0 when the field is absent from the file (a default was wrong)
	Field   string // e.g. "hosts[2].address"
	Message string
}

func (p Problem) String() string { return yamlpos.Format(p.File, p.Line, p.Field, p.Message) }

// Error is returned by Parse and Load when the topology is invalid; it lists every problem.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	if len(lines) == 1 {
		return "invalid topology: " + lines[0]
	}
	return "invalid topology:\n  " + strings.Join(lines, "\n  ")
}

// Load reads and parses a topology file. Warnings are returned even when err is nil.
func Load(path string) (*Topology, []Problem, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read topology: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes a topology strictly (unknown keys are errors), applies defaults and validates
// it. It returns the warnings (valid but risky: an even number of masters, a single LB...)
// and an *Error listing every problem when the topology cannot be used.
func Parse(data []byte, file string) (*Topology, []Problem, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, &Error{Problems: decodeProblems(file, nil, err)}
	}
	if root.Kind == 0 {
		return nil, nil, &Error{Problems: []Problem{{File: file, Message: "the file is empty"}}}
	}
	// Every key path's line, and a refusal of literal passwords wherever they are.
	var secrets []Problem
	pos := yamlpos.Index(&root, func(path string, k, val *yaml.Node) {
		if isLiteralSecretKey(k.Value) && !(val.Kind == yaml.ScalarNode && val.Value == "") {
			secrets = append(secrets, Problem{File: file, Line: k.Line, Field: path, Message: secretMessage(k.Value)})
		}
	})
	if len(secrets) > 0 {
		return nil, nil, &Error{Problems: secrets}
	}

	var t Topology
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, &Error{Problems: decodeProblems(file, pos, err)}
	}
	t.File = file
	t.applyDefaults()
	v := &validator{t: &t, pos: pos, file: file}
	v.validate()
	if len(v.errs) > 0 {
		return nil, v.warns, &Error{Problems: v.errs}
	}
	return &t, v.warns, nil
}

// decodeProblems turns a yaml.v3 error into problems with their line and field.
func decodeProblems(file string, pos yamlpos.Lines, err error) []Problem {
	var out []Problem
	for _, d := range pos.DecodeErrors(err) {
		msg := strings.ReplaceAll(d.Message, "in type topology.", "in section ")
		if d.UnknownKey != "" {
			msg = fmt.Sprintf("unknown key %q (check the spelling against deploy/topology.yaml)", d.UnknownKey)
		}
		out = append(out, Problem{File: file, Line: d.Line, Field: d.Field, Message: msg})
	}
	return out
}

// isLiteralSecretKey reports whether a key looks like it holds a password itself
// (password, sudoPassword, ansible_ssh_pass, authPass, become_pass...) rather than the name
// of an environment variable holding one.
func isLiteralSecretKey(key string) bool {
	k := strings.ToLower(strings.ReplaceAll(key, "_", ""))
	if strings.HasSuffix(k, "env") || strings.HasSuffix(k, "file") {
		return false
	}
	return strings.Contains(k, "password") || strings.HasSuffix(k, "pass") || strings.HasSuffix(k, "passwd") || k == "secret"
}

func secretMessage(key string) string {
	k := strings.ToLower(strings.ReplaceAll(key, "_", ""))
	switch {
	case strings.Contains(k, "sudo") || strings.Contains(k, "become"):
		return fmt.Sprintf("a literal password is not accepted in the topology file: remove %q and put the sudo password in an environment variable named by ssh.sudoPasswordEnv (default %s), or run bootstrap in a terminal to be prompted for it", key, DefaultSudoPasswordEnv)
	case strings.Contains(k, "auth"):
		return fmt.Sprintf("a literal password is not accepted in the topology file: remove %q and set loadBalancer.authPassEnv to the name of an environment variable holding the VRRP password", key)
	default:
		return fmt.Sprintf("a literal password is not accepted in the topology file: remove %q and put the password in an environment variable named by ssh.passwordEnv (default %s), or run bootstrap in a terminal to be prompted for it", key, DefaultPasswordEnv)
	}
}

func (t *Topology) applyDefaults() {
	c := &t.Cluster
	if c.Name == "" {
		c.Name = "kubernetes"
	}
	if c.KubernetesVersion == "" {
		c.KubernetesVersion = DefaultKubernetesVersion
	}
	c.KubernetesVersion = strings.TrimPrefix(c.KubernetesVersion, "v")
	if c.PodCIDR == "" {
		c.PodCIDR = DefaultPodCIDR
	}
	if c.ServiceCIDR == "" {
		c.ServiceCIDR = DefaultServiceCIDR
	}
	if c.CNI.Name == "" {
		c.CNI.Name = DefaultCNI
	}
	if c.CNI.Name == "calico" {
		if c.CNI.Version == "" {
			c.CNI.Version = DefaultCalicoVersion
		}
		if c.CNI.Manifest == "" {
			c.CNI.Manifest = "https://raw.githubusercontent.com/projectcalico/calico/" + c.CNI.Version + "/manifests/calico.yaml"
		}
	}
	lb := &t.LoadBalancer
	if lb.VRID == 0 {
		lb.VRID = DefaultVRID
	}
	if lb.APIPort == 0 {
		lb.APIPort = DefaultAPIPort
	}
	if lb.StatsPort == 0 {
		lb.StatsPort = DefaultStatsPort
	}
	if lb.VRRPVersion == 0 {
		lb.VRRPVersion = DefaultVRRPVersion
	}
	if lb.AdvertInterval == 0 {
		lb.AdvertInterval = DefaultAdvertInterval
		if lb.VRRPVersion == 2 {
			lb.AdvertInterval = time.Second // VRRPv2 counts whole seconds
		}
	}
	if lb.HealthCheck == "" {
		lb.HealthCheck = DefaultHealthCheck
	}
	if lb.Preempt == nil {
		p := true
		lb.Preempt = &p
	}
	if lb.Balance == "" {
		lb.Balance = "roundrobin"
	}
	s := &t.SSH
	if s.User == "" {
		s.User = DefaultSSHUser
		s.userDefaulted = true
	}
	if s.Port == 0 {
		s.Port = DefaultSSHPort
		s.portDefaulted = true
	}
	if s.KnownHosts == "" {
		s.KnownHosts = DefaultKnownHosts
	}
	if s.ConnectTimeout == 0 {
		s.ConnectTimeout = DefaultConnectTimeout
	}
	if s.ConnectPatience == 0 {
		s.ConnectPatience = DefaultConnectPatience
	}
	if s.PasswordEnv == "" {
		s.PasswordEnv = DefaultPasswordEnv
	}
	if s.SudoPasswordEnv == "" {
		s.SudoPasswordEnv = DefaultSudoPasswordEnv
	}
	p := &t.Packages
	if p.KubernetesRepo == "" {
		p.KubernetesRepo = "https://pkgs.k8s.io/core:/stable:/" + Channel(c.KubernetesVersion) + "/deb/"
	}
	if !strings.HasSuffix(p.KubernetesRepo, "/") {
		p.KubernetesRepo += "/"
	}
	if p.KubernetesKey == "" {
		p.KubernetesKey = p.KubernetesRepo + "Release.key"
	}
	if p.Containerd.Package == "" {
		p.Containerd.Package = DefaultContainerdPackage
	}
	for i := range t.Hosts {
		t.Hosts[i].Role = strings.ToLower(strings.TrimSpace(t.Hosts[i].Role))
	}
	g := &lb.Gossip
	if g.Enabled == nil {
		on := len(t.LBs()) >= 2
		g.Enabled = &on
	}
	if g.Port == 0 {
		g.Port = DefaultGossipPort
	}
	if g.SplitBrain == "" {
		g.SplitBrain = DefaultSplitBrain
	}
}

type validator struct {
	t     *Topology
	pos   yamlpos.Lines
	file  string
	errs  []Problem
	warns []Problem
}

// line returns the line of the field, or of its closest parent present in the file.
func (v *validator) line(field string) int { return v.pos.Find(field) }

func (v *validator) errf(field, format string, args ...any) {
	v.errs = append(v.errs, Problem{File: v.file, Line: v.line(field), Field: field, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) warnf(field, format string, args ...any) {
	v.warns = append(v.warns, Problem{File: v.file, Line: v.line(field), Field: field, Message: fmt.Sprintf(format, args...)})
}

var validName = func(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.'
		if !ok || (i == 0 && (r == '-' || r == '.')) {
			return false
		}
	}
	return true
}

func (v *validator) validate() {
	t := v.t
	// cluster
	if _, _, _, ok := parseVersion(t.Cluster.KubernetesVersion); !ok {
		v.errf("cluster.kubernetesVersion", "%q is not a version like 1.33.6", t.Cluster.KubernetesVersion)
	} else if maj, min, _, _ := parseVersion(t.Cluster.KubernetesVersion); maj != 1 || min < 28 {
		v.errf("cluster.kubernetesVersion", "%s is not supported (1.28 or later; pkgs.k8s.io channels start at v1.24 and kubeadm v1beta3/v1beta4 configs are rendered)", t.Cluster.KubernetesVersion)
	}
	pod, perr := netip.ParsePrefix(t.Cluster.PodCIDR)
	if perr != nil || pod.Masked() != pod {
		v.errf("cluster.podCIDR", "%q is not a network in CIDR form like 10.10.0.0/16", t.Cluster.PodCIDR)
	}
	svc, serr := netip.ParsePrefix(t.Cluster.ServiceCIDR)
	if serr != nil || svc.Masked() != svc {
		v.errf("cluster.serviceCIDR", "%q is not a network in CIDR form like 10.96.0.0/12", t.Cluster.ServiceCIDR)
	}
	if perr == nil && serr == nil && pod.Overlaps(svc) {
		v.errf("cluster.serviceCIDR", "%s overlaps cluster.podCIDR %s", svc, pod)
	}
	if !validName(t.Cluster.Name) {
		v.errf("cluster.name", "%q is not a valid cluster name (lower-case letters, digits, '-' and '.')", t.Cluster.Name)
	}
	switch t.Cluster.CNI.Name {
	case "calico", "none":
	case "bridge":
		if perr == nil && (!pod.Addr().Is4() || pod.Bits() > 16) {
			v.errf("cluster.podCIDR", "%s: cni bridge numbers each node's /24 by the last byte of its address, so the pod network must be an IPv4 /16 or larger", t.Cluster.PodCIDR)
		}
		seen := map[byte]string{}
		for _, h := range t.Nodes() {
			a, err := netip.ParseAddr(h.Address)
			if err != nil || !a.Is4() {
				continue // reported with the host
			}
			last := a.As4()[3]
			if o, dup := seen[last]; dup {
				v.errf("cluster.cni.name", "bridge: nodes %s and %s both end in .%d, so they would get the same pod /24", o, h.Name, last)
			}
			seen[last] = h.Name
		}
	default:
		v.errf("cluster.cni.name", "unknown CNI %q (calico, bridge or none)", t.Cluster.CNI.Name)
	}
	if n := t.Cluster.KubeProxy.ConntrackMaxPerCore; n != nil && *n < 0 {
		v.errf("cluster.kubeProxy.conntrackMaxPerCore", "%d is negative (0 leaves nf_conntrack_max alone)", *n)
	}

	// load balancer
	lb := t.LoadBalancer
	vip, verr := netip.ParsePrefix(lb.VIP)
	if lb.VIP == "" {
		v.errf("loadBalancer.vip", "missing: the virtual IP with its prefix length, e.g. 192.168.10.100/24")
	} else if verr != nil || !vip.Addr().Is4() {
		v.errf("loadBalancer.vip", "%q is not an IPv4 address with prefix length, e.g. 192.168.10.100/24", lb.VIP)
	}
	if lb.Interface != "" && !validInterface(lb.Interface) {
		v.errf("loadBalancer.interface", "%q is not a network interface name (1-15 characters, no spaces, '/' or ':')", lb.Interface)
	}
	if lb.VRID < 1 || lb.VRID > 255 {
		v.errf("loadBalancer.vrid", "%d is out of range 1-255", lb.VRID)
	}
	if lb.APIPort < 1 || lb.APIPort > 65535 {
		v.errf("loadBalancer.apiPort", "%d is not a port", lb.APIPort)
	}
	if lb.StatsPort < 1 || lb.StatsPort > 65535 {
		v.errf("loadBalancer.statsPort", "%d is not a port", lb.StatsPort)
	}
	if lb.StatsPort == lb.APIPort {
		v.errf("loadBalancer.statsPort", "%d is also loadBalancer.apiPort", lb.StatsPort)
	}
	switch lb.VRRPVersion {
	case 3:
		if lb.AdvertInterval < 10*time.Millisecond || lb.AdvertInterval > 40950*time.Millisecond || lb.AdvertInterval%(10*time.Millisecond) != 0 {
			v.errf("loadBalancer.advertInterval", "%s: VRRPv3 needs a multiple of 10ms between 10ms and 40.95s", lb.AdvertInterval)
		}
		if lb.AuthPassEnv != "" {
			v.warnf("loadBalancer.authPassEnv", "ignored with vrrpVersion 3 (RFC 5798 has no authentication)")
		}
	case 2:
		if lb.AdvertInterval < time.Second || lb.AdvertInterval > 255*time.Second || lb.AdvertInterval%time.Second != 0 {
			v.errf("loadBalancer.advertInterval", "%s: VRRPv2 needs whole seconds between 1s and 255s", lb.AdvertInterval)
		}
	default:
		v.errf("loadBalancer.vrrpVersion", "%d: must be 2 or 3", lb.VRRPVersion)
	}
	if lb.AuthPassEnv != "" && !validEnvName(lb.AuthPassEnv) {
		v.errf("loadBalancer.authPassEnv", "%q is not an environment variable name (the password itself never goes in the file)", lb.AuthPassEnv)
	}
	switch lb.HealthCheck {
	case "https", "tcp":
	default:
		v.errf("loadBalancer.healthCheck", "unknown health check %q (https or tcp)", lb.HealthCheck)
	}
	switch lb.Balance {
	case "roundrobin", "leastconn":
	default:
		v.errf("loadBalancer.balance", "unknown balance %q (roundrobin or leastconn)", lb.Balance)
	}

	g := lb.Gossip
	if g.Port < 1 || g.Port > 65535 {
		v.errf("loadBalancer.gossip.port", "%d is not a port", g.Port)
	} else if g.Port == lb.APIPort || g.Port == lb.StatsPort {
		v.errf("loadBalancer.gossip.port", "%d is also loadBalancer.apiPort or statsPort", g.Port)
	}
	switch g.SplitBrain {
	case SplitBrainNone, SplitBrainResignLower:
	default:
		v.errf("loadBalancer.gossip.splitBrain", "unknown split-brain resolution %q (none or resign-lower)", g.SplitBrain)
	}
	if n := len(t.LBs()); t.GossipEnabled() && n == 1 {
		v.errf("loadBalancer.gossip.enabled", "gossip needs at least two lb hosts (the peers); with one lb set enabled: false or add a second lb")
	}

	// ssh
	v.validateSSH("ssh", t.SSH)
	if t.SSH.Address != "" {
		v.errf("ssh.address", "only a host's ssh block can set the address to connect to (hosts[i].ssh.address)")
	}

	// hosts
	if len(t.Hosts) == 0 {
		v.errf("hosts", "no hosts")
	}
	names := map[string]int{}
	addrs := map[netip.Addr]int{}
	for i, h := range t.Hosts {
		f := fmt.Sprintf("hosts[%d]", i)
		if h.Name == "" {
			v.errf(f+".name", "missing")
		} else if !validName(h.Name) {
			v.errf(f+".name", "%q is not a valid node name (lower-case letters, digits, '-' and '.')", h.Name)
		} else if j, dup := names[h.Name]; dup {
			v.errf(f+".name", "duplicate name %q (also hosts[%d], line %d)", h.Name, j, v.line(fmt.Sprintf("hosts[%d].name", j)))
		} else {
			names[h.Name] = i
		}
		a, err := netip.ParseAddr(h.Address)
		switch {
		case h.Address == "":
			v.errf(f+".address", "missing")
		case err != nil || !a.Is4():
			v.errf(f+".address", "%q is not an IPv4 address", h.Address)
		default:
			if j, dup := addrs[a]; dup {
				v.errf(f+".address", "duplicate address %s (also hosts[%d] %q, line %d)", a, j, t.Hosts[j].Name, v.line(fmt.Sprintf("hosts[%d].address", j)))
			} else {
				addrs[a] = i
			}
			if verr == nil && a == vip.Addr() {
				v.errf("loadBalancer.vip", "%s is the address of host %q (hosts[%d]): the VIP must be an unused address", a, h.Name, i)
			}
		}
		switch h.Role {
		case RoleMaster, RoleWorker, RoleLB:
		case "":
			v.errf(f+".role", "missing (master, worker or lb)")
		default:
			v.errf(f+".role", "unknown role %q (master, worker or lb)", h.Role)
		}
		if h.Priority != 0 {
			if h.Role != RoleLB {
				v.errf(f+".priority", "only lb hosts have a VRRP priority")
			} else if h.Priority < 1 || h.Priority > 255 {
				v.errf(f+".priority", "%d is out of range 1-255", h.Priority)
			}
		}
		if h.SSH != nil {
			v.validateSSH(f+".ssh", t.SSHFor(h))
		}
	}
	masters, lbs := t.Masters(), t.LBs()
	if len(t.Hosts) > 0 {
		if len(masters) == 0 {
			v.errf("hosts", "no master: at least one host needs role: master")
		} else if len(masters)%2 == 0 {
			v.warnf("hosts", "%d masters: an even number adds no etcd fault tolerance over %d (quorum needs a majority); use an odd number", len(masters), len(masters)-1)
		}
		switch len(lbs) {
		case 0:
			v.errf("hosts", "no lb host: the VIP needs at least one host with role: lb")
		case 1:
			v.warnf("hosts", "one lb host: the VIP has no failover (no HA); add a second lb")
		}
	}
	prios := map[int]string{}
	for i, h := range t.Hosts {
		if h.Role != RoleLB {
			continue
		}
		p := t.LBPriority(h)
		if other, dup := prios[p]; dup {
			v.warnf(fmt.Sprintf("hosts[%d].priority", i), "lb %q has the same VRRP priority %d as %q: the higher address wins ties", h.Name, p, other)
		} else {
			prios[p] = h.Name
		}
		if a, err := netip.ParseAddr(h.Address); err == nil && verr == nil && !vip.Masked().Contains(a) {
			v.errf("loadBalancer.vip", "%s is outside the subnet of lb host %q (%s): the VIP must be in the LB hosts' subnet %s", vip, h.Name, a, netip.PrefixFrom(a, vip.Bits()).Masked())
		}
	}
	// pod / service networks must not hold host addresses
	var sorted []netip.Addr
	for a := range addrs {
		sorted = append(sorted, a)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Less(sorted[j]) })
	for _, a := range sorted {
		h := t.Hosts[addrs[a]]
		if perr == nil && pod.Contains(a) {
			v.errf("cluster.podCIDR", "%s contains the address of host %q (%s)", pod, h.Name, a)
		}
		if serr == nil && svc.Contains(a) {
			v.errf("cluster.serviceCIDR", "%s contains the address of host %q (%s)", svc, h.Name, a)
		}
	}

	// packages
	if strings.ContainsAny(t.Packages.KubernetesRepo, " \n") {
		v.errf("packages.kubernetesRepo", "%q: give the repository URL only (bootstrap writes the deb line)", t.Packages.KubernetesRepo)
	}
	if p := t.Packages.Containerd.Package; !validPackage(p) {
		v.errf("packages.containerd.package", "%q is not a Debian package name (lower-case letters, digits, '+', '-', '.'; no version: bootstrap installs the repository's)", p)
	}
	for _, f := range []struct{ field, val string }{{"packages.containerd.repo", t.Packages.Containerd.Repo}, {"packages.containerd.key", t.Packages.Containerd.Key},
		{"packages.kubernetesKey", t.Packages.KubernetesKey}, {"cluster.cni.manifest", t.Cluster.CNI.Manifest}, {"cluster.cni.version", t.Cluster.CNI.Version},
		{"packages.imageBundle", t.Packages.ImageBundle}} {
		if strings.ContainsFunc(f.val, unicode.IsControl) {
			v.errf(f.field, "%q contains a line break or control character", f.val)
		}
	}
	if r := t.Packages.Containerd.Repo; r != "" && !strings.HasPrefix(r, "deb ") {
		v.errf("packages.containerd.repo", "%q is not an apt source line (\"deb [signed-by=%s] URL SUITE COMPONENT\")", r, ContainerdKeyring)
	}
}

func (v *validator) validateSSH(field string, s SSH) {
	if s.Port < 1 || s.Port > 65535 {
		v.errf(field+".port", "%d is not a port", s.Port)
	}
	if s.ConnectTimeout < 0 {
		v.errf(field+".connectTimeout", "%s is negative", s.ConnectTimeout)
	}
	if s.ConnectPatience < 0 || s.ConnectPatience > time.Hour {
		v.errf(field+".connectPatience", "%s is out of range 0-1h", s.ConnectPatience)
	}
	if j := s.JumpHost; j != nil {
		if j.Address == "" {
			v.errf(field+".jumpHost.address", "missing")
		}
		if j.Port < 0 || j.Port > 65535 {
			v.errf(field+".jumpHost.port", "%d is not a port", j.Port)
		}
	}
	for _, e := range []struct{ f, v string }{{"passwordEnv", s.PasswordEnv}, {"sudoPasswordEnv", s.SudoPasswordEnv}} {
		if e.v != "" && !validEnvName(e.v) {
			v.errf(field+"."+e.f, "%q is not an environment variable name (the password itself never goes in the file)", e.v)
		}
	}
}

// validPackage: a Debian package name (Debian Policy 5.6.1).
func validPackage(s string) bool {
	if len(s) < 2 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || (i > 0 && (r == '+' || r == '-' || r == '.'))
		if !ok {
			return false
		}
	}
	return true
}

// validInterface: a Linux interface name (IFNAMSIZ, no whitespace, '/' or ':').
func validInterface(s string) bool {
	return len(s) >= 1 && len(s) <= 15 && s != "." && s != ".." && !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == '/' || r == ':' || r > '~'
	})
}

func validEnvName(s string) bool {
	for i, r := range s {
		ok := r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return s != ""
}
