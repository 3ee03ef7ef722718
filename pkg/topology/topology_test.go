package topology

import (
	"strings"
	"testing"
	"time"
)

const base = `cluster:
  kubernetesVersion: "1.33.6"
loadBalancer:
  vip: 192.168.10.100/24
hosts:
  - {name: m1, address: 192.168.10.138, role: master}
  - {name: m2, address: 192.168.10.139, role: master}
  - {name: m3, address: 192.168.10.140, role: master}
  - {name: w1, address: 192.168.10.142, role: worker}
  - {name: lb1, address: 192.168.10.141, role: lb}
  - {name: lb2, address: 192.168.10.143, role: lb}
`

// withCluster adds lines to base's cluster section.
func withCluster(y, lines string) string {
	return strings.Replace(y, "kubernetesVersion: \"1.33.6\"\n", "kubernetesVersion: \"1.33.6\"\n"+lines, 1)
}

func TestValidation(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		// each substring must appear in the error (wantErr) or in a warning (wantWarn)
		wantErr  []string
		wantWarn []string
	}{
		{name: "valid", yaml: base},
		{name: "duplicate name", yaml: strings.Replace(base, "name: m2", "name: m1", 1),
			wantErr: []string{"7: hosts[1].name: duplicate name \"m1\" (also hosts[0], line 6)"}},
		{name: "duplicate address", yaml: strings.Replace(base, "192.168.10.139", "192.168.10.138", 1),
			wantErr: []string{"7: hosts[1].address: duplicate address 192.168.10.138"}},
		{name: "no master", yaml: strings.ReplaceAll(base, "role: master", "role: worker"),
			wantErr: []string{"hosts: no master"}},
		{name: "even masters", yaml: strings.Replace(base, "{name: m3, address: 192.168.10.140, role: master}", "{name: m3, address: 192.168.10.140, role: worker}", 1),
			wantWarn: []string{"2 masters: an even number", "etcd"}},
		{name: "one lb", yaml: strings.Replace(base, "  - {name: lb2, address: 192.168.10.143, role: lb}\n", "", 1),
			wantWarn: []string{"one lb host", "no HA"}},
		{name: "no lb", yaml: strings.Replace(strings.Replace(base, "  - {name: lb2, address: 192.168.10.143, role: lb}\n", "", 1), "  - {name: lb1, address: 192.168.10.141, role: lb}\n", "", 1),
			wantErr: []string{"no lb host"}},
		{name: "vip outside subnet", yaml: strings.Replace(base, "192.168.10.100/24", "192.168.20.100/24", 1),
			wantErr: []string{"4: loadBalancer.vip: 192.168.20.100/24 is outside the subnet of lb host \"lb1\""}},
		{name: "vip is a host", yaml: strings.Replace(base, "192.168.10.100/24", "192.168.10.139/24", 1),
			wantErr: []string{"loadBalancer.vip: 192.168.10.139 is the address of host \"m2\""}},
		{name: "vip without prefix", yaml: strings.Replace(base, "192.168.10.100/24", "192.168.10.100", 1),
			wantErr: []string{"loadBalancer.vip: \"192.168.10.100\" is not an IPv4 address with prefix length"}},
		{name: "unknown role", yaml: strings.Replace(base, "role: worker", "role: wroker", 1),
			wantErr: []string{"9: hosts[3].role: unknown role \"wroker\" (master, worker or lb)"}},
		{name: "unknown key", yaml: base + "sshh:\n  user: x\n",
			wantErr: []string{`topology.yaml:12: unknown key "sshh"`}},
		{name: "literal password", yaml: base + "ssh:\n  user: ops\n  password: \"1\"\n",
			wantErr: []string{"14: ssh.password: a literal password is not accepted", "ssh.passwordEnv"}},
		{name: "literal sudo password per host", yaml: strings.Replace(base, "{name: w1, address: 192.168.10.142, role: worker}", "{name: w1, address: 192.168.10.142, role: worker, ssh: {sudoPassword: x}}", 1),
			wantErr: []string{"9: hosts[3].ssh.sudoPassword", "ssh.sudoPasswordEnv"}},
		{name: "ansible style password", yaml: base + "vars:\n  ansible_ssh_pass: 1\n",
			wantErr: []string{"vars.ansible_ssh_pass: a literal password"}},
		{name: "cni bridge", yaml: withCluster(base, "  cni: {name: bridge}\n  kubeProxy: {conntrackMaxPerCore: 0}\n")},
		{name: "cni bridge small pod network", yaml: strings.Replace(base, "kubernetesVersion: \"1.33.6\"\n", "kubernetesVersion: \"1.33.6\"\n  podCIDR: 10.10.0.0/20\n  cni: {name: bridge}\n", 1),
			wantErr: []string{"cluster.podCIDR: 10.10.0.0/20: cni bridge numbers each node's /24", "/16 or larger"}},
		{name: "cni bridge same last byte", yaml: withCluster(strings.Replace(base, "192.168.10.142", "192.168.11.138", 1), "  cni: {name: bridge}\n"),
			wantErr: []string{"cluster.cni.name: bridge: nodes m1 and w1 both end in .138"}},
		{name: "unknown cni", yaml: withCluster(base, "  cni: {name: flannel}\n"),
			wantErr: []string{"cluster.cni.name: unknown CNI \"flannel\" (calico, bridge or none)"}},
		{name: "negative conntrack", yaml: withCluster(base, "  kubeProxy: {conntrackMaxPerCore: -1}\n"),
			wantErr: []string{"cluster.kubeProxy.conntrackMaxPerCore: -1 is negative"}},
		{name: "bad version", yaml: strings.Replace(base, "1.33.6", "1.33", 1),
			wantErr: []string{"2: cluster.kubernetesVersion: \"1.33\" is not a version"}},
		{name: "priority on a master", yaml: strings.Replace(base, "{name: m1, address: 192.168.10.138, role: master}", "{name: m1, address: 192.168.10.138, role: master, priority: 10}", 1),
			wantErr: []string{"hosts[0].priority: only lb hosts"}},
		{name: "same priority", yaml: strings.Replace(base, "{name: lb2, address: 192.168.10.143, role: lb}", "{name: lb2, address: 192.168.10.143, role: lb, priority: 100}", 1),
			wantWarn: []string{"same VRRP priority 100"}},
		{name: "pod cidr overlaps hosts", yaml: strings.Replace(base, "  kubernetesVersion: \"1.33.6\"\n", "  kubernetesVersion: \"1.33.6\"\n  podCIDR: 192.168.0.0/16\n", 1),
			wantErr: []string{"3: cluster.podCIDR: 192.168.0.0/16 contains the address of host"}},
		{name: "v2 interval", yaml: strings.Replace(base, "  vip: 192.168.10.100/24\n", "  vip: 192.168.10.100/24\n  vrrpVersion: 2\n  advertInterval: 200ms\n", 1),
			wantErr: []string{"loadBalancer.advertInterval: 200ms: VRRPv2 needs whole seconds"}},
		{name: "env name with value", yaml: base + "ssh:\n  passwordEnv: \"hunter 2\"\n",
			wantErr: []string{"ssh.passwordEnv: \"hunter 2\" is not an environment variable name"}},
		{name: "empty", yaml: "", wantErr: []string{"empty"}},
		{name: "gossip split brain", yaml: strings.Replace(base, "  vip: 192.168.10.100/24\n", "  vip: 192.168.10.100/24\n  gossip: {splitBrain: resign}\n", 1),
			wantErr: []string{"5: loadBalancer.gossip.splitBrain: unknown split-brain resolution \"resign\" (none or resign-lower)"}},
		{name: "gossip port", yaml: strings.Replace(base, "  vip: 192.168.10.100/24\n", "  vip: 192.168.10.100/24\n  gossip: {port: 8404}\n", 1),
			wantErr: []string{"loadBalancer.gossip.port: 8404 is also loadBalancer.apiPort or statsPort"}},
		{name: "gossip port range", yaml: strings.Replace(base, "  vip: 192.168.10.100/24\n", "  vip: 192.168.10.100/24\n  gossip: {port: 70000}\n", 1),
			wantErr: []string{"loadBalancer.gossip.port: 70000 is not a port"}},
		{name: "gossip with one lb", yaml: strings.Replace(strings.Replace(base, "  - {name: lb2, address: 192.168.10.143, role: lb}\n", "", 1), "  vip: 192.168.10.100/24\n", "  vip: 192.168.10.100/24\n  gossip: {enabled: true}\n", 1),
			wantErr: []string{"loadBalancer.gossip.enabled: gossip needs at least two lb hosts"}},
		{name: "gossip key in the file", yaml: strings.Replace(base, "  vip: 192.168.10.100/24\n", "  vip: 192.168.10.100/24\n  gossip: {key: abc}\n", 1),
			wantErr: []string{`unknown key "loadBalancer.gossip.key"`}},
		{name: "ssh address for all hosts", yaml: base + "ssh:\n  address: 10.0.0.1\n",
			wantErr: []string{"13: ssh.address: only a host's ssh block"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, warns, err := Parse([]byte(c.yaml), "topology.yaml")
			if len(c.wantErr) == 0 && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if len(c.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error, want %q", c.wantErr)
				}
				for _, w := range c.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
			}
			var ws []string
			for _, w := range warns {
				ws = append(ws, w.String())
			}
			all := strings.Join(ws, "\n")
			for _, w := range c.wantWarn {
				if !strings.Contains(all, w) {
					t.Errorf("warnings %q do not contain %q", all, w)
				}
			}
			if len(c.wantWarn) == 0 && len(c.wantErr) == 0 && len(warns) > 0 {
				t.Errorf("unexpected warnings: %s", all)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	top, _, err := Parse([]byte(base), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if top.Cluster.PodCIDR != "10.10.0.0/16" || top.LoadBalancer.VRID != 51 || top.LoadBalancer.APIPort != 6443 ||
		top.LoadBalancer.StatsPort != 8404 || top.LoadBalancer.AdvertInterval != 200*time.Millisecond || top.SSH.Port != 22 {
		t.Errorf("defaults not applied: %+v %+v", top.Cluster, top.LoadBalancer)
	}
	if top.Packages.KubernetesRepo != "https://pkgs.k8s.io/core:/stable:/v1.33/deb/" {
		t.Errorf("repo = %q", top.Packages.KubernetesRepo)
	}
	if top.Packages.KubernetesKey != "https://pkgs.k8s.io/core:/stable:/v1.33/deb/Release.key" {
		t.Errorf("key = %q", top.Packages.KubernetesKey)
	}
	lbs := top.LBs()
	if p1, p2 := top.LBPriority(lbs[0]), top.LBPriority(lbs[1]); p1 != 100 || p2 != 90 {
		t.Errorf("priorities = %d, %d; want 100, 90", p1, p2)
	}
}

func TestGossipDefaults(t *testing.T) {
	top, _, err := Parse([]byte(base), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := top.LoadBalancer.Gossip
	if !top.GossipEnabled() || g.Port != 7946 || g.SplitBrain != "resign-lower" {
		t.Errorf("two lbs: gossip %v port %d splitBrain %q; want on, 7946, resign-lower", top.GossipEnabled(), g.Port, g.SplitBrain)
	}
	// One lb: no peer, so gossip is off by default (and the topology stays valid).
	one, _, err := Parse([]byte(strings.Replace(base, "  - {name: lb2, address: 192.168.10.143, role: lb}\n", "", 1)), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if one.GossipEnabled() {
		t.Error("one lb: gossip on by default")
	}
	// Roles are matched case-insensitively before the default is decided.
	upper, _, err := Parse([]byte(strings.ReplaceAll(base, "role: lb}", "role: LB}")), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !upper.GossipEnabled() {
		t.Error("role: LB hosts not counted for the gossip default")
	}
	off, _, err := Parse([]byte(strings.Replace(base, "  vip: 192.168.10.100/24\n", "  vip: 192.168.10.100/24\n  gossip: {enabled: false, splitBrain: none, port: 7950}\n", 1)), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if off.GossipEnabled() || off.LoadBalancer.Gossip.SplitBrain != "none" || off.LoadBalancer.Gossip.Port != 7950 {
		t.Errorf("explicit settings not kept: %+v", off.LoadBalancer.Gossip)
	}
}

func TestChannel(t *testing.T) {
	for in, want := range map[string]string{"1.33.6": "v1.33", "v1.31.0": "v1.31", "1.30.14": "v1.30"} {
		if got := Channel(in); got != want {
			t.Errorf("Channel(%q) = %q, want %q", in, got, want)
		}
	}
	top, _, err := Parse([]byte(strings.Replace(base, "1.33.6", "1.31.2", 1)), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(top.Packages.KubernetesRepo, "/v1.31/") {
		t.Errorf("repo %q does not follow the minor", top.Packages.KubernetesRepo)
	}
}

func TestSSHOverrides(t *testing.T) {
	y := base + `ssh:
  user: ops
  identityFile: /k
  jumpHost: {address: 10.0.0.1}
`
	y = strings.Replace(y, "{name: w1, address: 192.168.10.142, role: worker}", "{name: w1, address: 192.168.10.142, role: worker, ssh: {user: root, port: 2222, address: 127.0.0.1}}", 1)
	top, _, err := Parse([]byte(y), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w, _ := top.Host("w1")
	s := top.SSHFor(w)
	if s.User != "root" || s.Port != 2222 || s.IdentityFile != "/k" || s.Address != "127.0.0.1" {
		t.Errorf("override: %+v", s)
	}
	if s.JumpHost == nil || s.JumpHost.User != "ops" || s.JumpHost.Port != 22 {
		t.Errorf("jump host defaults: %+v", s.JumpHost)
	}
	m, _ := top.Host("m1")
	if s := top.SSHFor(m); s.User != "ops" || s.Address != "192.168.10.138" {
		t.Errorf("default: %+v", s)
	}
	if top.SSH.JumpHost.User != "" {
		t.Error("SSHFor modified the topology's jump host")
	}
}
