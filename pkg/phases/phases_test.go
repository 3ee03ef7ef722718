package phases

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vipd-project/vipd/pkg/config"
	"github.com/vipd-project/vipd/pkg/topology"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./pkg/phases -update to accept):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestRenderVipdConfigGolden(t *testing.T) {
	top := refTopology(t)
	for _, lb := range top.LBs() {
		b, err := RenderVipdConfig(top, lb, "ens33")
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "vipd-"+lb.Name+".yaml", b)
		// vipd itself must accept it, with the values of the reference.
		c, err := config.Parse(lb.Name+".yaml", b)
		if err != nil {
			t.Fatalf("vipd rejects the rendered config: %v", err)
		}
		want := map[string]int{"lb1": 100, "lb2": 90}[lb.Name]
		if c.VRRP.Priority != want || c.VRRP.VRID != 51 || c.VRRP.VIPs[0] != "192.168.10.100/24" {
			t.Errorf("%s: priority %d vrid %d vips %v", lb.Name, c.VRRP.Priority, c.VRRP.VRID, c.VRRP.VIPs)
		}
		if strings.Join(c.Proxy.Backends, ",") != "192.168.10.138:6443,192.168.10.139:6443,192.168.10.140:6443" {
			t.Errorf("backends %v", c.Proxy.Backends)
		}
		if h := c.HealthConfig(); h.Type != "https" || h.Path != "/readyz" || !h.InsecureSkipVerify {
			t.Errorf("health %+v", c.Health)
		}
		// Gossip between the two lbs, on each one's own address, with the shared key file.
		self, peer := map[string][2]string{"lb1": {"192.168.10.141:7946", "192.168.10.143:7946"}, "lb2": {"192.168.10.143:7946", "192.168.10.141:7946"}}[lb.Name][0],
			map[string][2]string{"lb1": {"192.168.10.141:7946", "192.168.10.143:7946"}, "lb2": {"192.168.10.143:7946", "192.168.10.141:7946"}}[lb.Name][1]
		cl := c.Cluster
		if !cl.Enabled || cl.Bind != self || strings.Join(cl.Peers, ",") != peer || cl.KeyFile != "/etc/vipd/gossip.key" || cl.SplitBrain != "resign-lower" {
			t.Errorf("%s: cluster %+v, want enabled, bind %s, peers %s, key /etc/vipd/gossip.key, resign-lower", lb.Name, cl, self, peer)
		}
	}
}

// Gossip off (explicitly, or one lb): no cluster section, no key read or uploaded.
func TestGossipDisabled(t *testing.T) {
	top := refTopology(t)
	off := false
	top.LoadBalancer.Gossip.Enabled = &off
	lb1, _ := top.Host("lb1")
	b, err := RenderVipdConfig(top, lb1, "ens33")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "cluster:") {
		t.Errorf("gossip off but the config has a cluster section:\n%s", b)
	}
	w := newWorld()
	w.set("lb1", "probe facts", answer{out: ubuntuFactsFor("lb1")})
	w.set("lb1", "probe lb", answer{out: lbProbeDone(t, top, lb1)})
	r, _ := newTestRunner(t, top, w, false)
	st, err := lbPhase{}.Probe(context.Background(), r, lb1)
	if err != nil || !st.Done {
		t.Errorf("done lb with gossip off: done=%v todo=%v err=%v", st.Done, st.Todo, err)
	}
	if len(w.unexpected) > 0 {
		t.Errorf("unexpected commands (the gossip key must not be read): %v", w.unexpected)
	}
}

func TestRenderVipdConfigUnicastTCPAndDefaultPriorities(t *testing.T) {
	top := refTopology(t)
	unicast := true
	top.LoadBalancer.Unicast = &unicast
	top.LoadBalancer.HealthCheck = "tcp"
	for i := range top.Hosts {
		top.Hosts[i].Priority = 0
	}
	top.Hosts = append(top.Hosts, topology.Host{Name: "lb3", Address: "192.168.10.144", Role: topology.RoleLB})
	lb3, _ := top.Host("lb3")
	b, err := RenderVipdConfig(top, lb3, "eth1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse("lb3.yaml", b)
	if err != nil {
		t.Fatalf("vipd rejects: %v\n%s", err, b)
	}
	if c.VRRP.Priority != 80 || c.VRRP.Interface != "eth1" || c.VRRP.UnicastSource != "192.168.10.144" ||
		strings.Join(c.VRRP.UnicastPeers, ",") != "192.168.10.141,192.168.10.143" || c.Health.Type != "tcp" {
		t.Errorf("got %+v %+v", c.VRRP, c.Health)
	}
	if c.Cluster.Bind != "192.168.10.144:7946" || strings.Join(c.Cluster.Peers, ",") != "192.168.10.141:7946,192.168.10.143:7946" {
		t.Errorf("three lbs: gossip bind %s peers %v", c.Cluster.Bind, c.Cluster.Peers)
	}
	top.LoadBalancer.Interface = "bond0"
	b, _ = RenderVipdConfig(top, lb3, "eth1")
	if !strings.Contains(string(b), "interface: bond0") {
		t.Error("loadBalancer.interface does not override the interface from facts")
	}
}

func TestRenderKubeadmConfigGolden(t *testing.T) {
	top := refTopology(t)
	b := RenderKubeadmConfig(top, top.Masters()[0])
	golden(t, "kubeadm-config.yaml", b)
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var kinds []string
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			break
		}
		kinds = append(kinds, doc["kind"].(string))
		if doc["kind"] == "ClusterConfiguration" {
			if doc["controlPlaneEndpoint"] != "192.168.10.100:6443" || doc["apiVersion"] != "kubeadm.k8s.io/v1beta4" || doc["kubernetesVersion"] != "v1.33.6" {
				t.Errorf("cluster configuration: %v", doc)
			}
			sans := doc["apiServer"].(map[string]any)["certSANs"].([]any)
			if sans[0] != "192.168.10.100" {
				t.Errorf("certSANs %v do not start with the VIP", sans)
			}
		}
	}
	if strings.Join(kinds, ",") != "InitConfiguration,ClusterConfiguration,KubeletConfiguration" {
		t.Errorf("documents: %v", kinds)
	}
	zero := 0
	top.Cluster.KubeProxy.ConntrackMaxPerCore = &zero
	b = RenderKubeadmConfig(top, top.Masters()[0])
	if !strings.HasSuffix(string(b), "---\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nconntrack:\n  maxPerCore: 0\n") {
		t.Errorf("cluster.kubeProxy.conntrackMaxPerCore 0 is not rendered as KubeProxyConfiguration conntrack.maxPerCore 0:\n%s", b)
	}
	if KubeadmAPIVersion(30) != "kubeadm.k8s.io/v1beta3" {
		t.Error("1.30 must use v1beta3")
	}
}

// The plan for the reference topology on fresh Ubuntu hosts (what --dry-run prints).
func TestPlanReferenceGolden(t *testing.T) {
	top := refTopology(t)
	w := freshWorld(top)
	r, out := newTestRunner(t, top, w, true)
	if err := r.Up(context.Background(), nil); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	golden(t, "plan-reference.txt", out.Bytes())
	if ch := w.changes(); len(ch) > 0 {
		t.Errorf("dry run ran host-changing commands: %v", ch)
	}
	if len(w.uploads) > 0 {
		t.Errorf("dry run uploaded %d files", len(w.uploads))
	}
	if len(w.unexpected) > 0 {
		t.Errorf("unexpected commands: %v", w.unexpected)
	}
}

// A second `up` on hosts where everything is done runs no host-changing command.
func TestSecondUpChangesNothing(t *testing.T) {
	top := refTopology(t)
	w := doneWorld(t, top)
	r, out := newTestRunner(t, top, w, false)
	if err := r.Up(context.Background(), nil); err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	if ch := w.changes(); len(ch) > 0 {
		t.Errorf("host-changing commands on a done cluster: %v", ch)
	}
	if len(w.uploads) > 0 || len(w.unexpected) > 0 {
		t.Errorf("uploads %d, unexpected %v", len(w.uploads), w.unexpected)
	}
	for _, want := range []string{
		"[lb1] lb: vipd installed, configured and running (",
		"[lb1] lb: holds the VIP 192.168.10.100/24 (",
		"[k8s-worker-1] common: already prepared",
		"[k8s-master-1] init: cluster exists (4 nodes)",
		"[k8s-master-1] cni: calico already applied",
		"[k8s-master-3] join-masters: already a member (Ready)",
		"[k8s-worker-1] join-workers: already a member (Ready)",
		"[k8s-master-1] verify: 4/4 nodes Ready through https://192.168.10.100:6443, /healthz ok",
		"[lb2] verify: /stats answers on :8404",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// A full `up` on fresh hosts: the commands each phase runs, secrets kept out of the output.
// freshRunWorld: fresh hosts whose recorded answers follow the changes made (vipd started on
// the first lb takes the VIP, the cluster exists after kubeadm init and lists the joined nodes).
func freshRunWorld(top *topology.Topology) *world {
	w := freshWorld(top)
	first, lb1 := top.Masters()[0].Name, top.LBs()[0].Name
	// Every change succeeds.
	for _, tag := range []string{"change lb/package", "change lb/systemctl", "change common/swap", "change common/modules",
		"change common/sysctl", "change common/kubernetes-key", "change common/apt-update", "change common/containerd-install",
		"change common/containerd-config", "change common/kubernetes-install", "change common/hold", "change common/kubelet-enable",
		"change init/dir", "change kubeadm init", "change init/kubeconfig", "change kubectl apply (calico)", "change wait for calico", "change join/dir", "change kubeadm join"} {
		w.set("*", tag, answer{})
	}
	w.set("*", "probe common/kubernetes-version", answer{out: "1.33.6-1.1\n"})
	w.set(first, "probe join/etcd-members", answer{out: etcdMembers(top, first)})
	w.set("*", "change common/sandbox-image", answer{out: "registry.k8s.io/pause:3.10\n"})
	// vipd on lb1 wins the election once started.
	w.set(lb1, "probe lb/vip", answer{fn: func(w *world, _ string) answer {
		if w.ran(lb1, "change lb/systemctl") {
			return answer{out: "2: ens33    inet 192.168.10.100/24 scope global secondary ens33\n"}
		}
		return answer{}
	}})
	w.set("*", "probe lb/vip", answer{out: "2: ens33    inet 192.168.10.143/24 scope global ens33\n"})
	w.set(first, "change join/token", answer{out: "kubeadm join 192.168.10.100:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:1111 \n"})
	w.set(first, "change join/certificate-key", answer{out: "[upload-certs] Using certificate key:\n" + strings.Repeat("ab", 32) + "\n"})
	// The cluster exists after kubeadm init and lists the nodes that joined.
	w.set("*", "probe cluster", answer{fn: func(w *world, _ string) answer {
		if w.ran(first, "change kubeadm init") {
			return answer{}
		}
		return answer{code: 1}
	}})
	w.set("*", "probe cluster/nodes", answer{fn: func(w *world, _ string) answer {
		var b strings.Builder
		for _, n := range top.Nodes() {
			if n.Name == first || w.ran(n.Name, "change kubeadm join") {
				b.WriteString(n.Name + " Ready x 1m v1.33.6\n")
			}
		}
		return answer{out: b.String()}
	}})
	w.set("*", "probe cni", answer{code: 1})
	w.set("*", "probe verify/nodes", answer{out: nodesOut(top, "")})
	w.set("*", "probe verify/healthz", answer{out: "ok"})
	w.set("*", "probe verify/stats", answer{out: "200"})
	return w
}

func TestUpOnFreshHosts(t *testing.T) {
	top := refTopology(t)
	w := freshRunWorld(top)
	r, out := newTestRunner(t, top, w, false)
	if err := r.Up(context.Background(), nil); err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	if len(w.unexpected) > 0 {
		t.Errorf("unexpected commands: %v", w.unexpected)
	}
	calls := strings.Join(w.calls, "\n")
	for _, want := range []string{
		"lb1: change lb/package", "lb2: change lb/systemctl", "k8s-worker-1: change common/kubernetes-install",
		"k8s-master-1: change kubeadm init", "k8s-master-2: change kubeadm join", "k8s-worker-1: change kubeadm join",
	} {
		if !strings.Contains(calls, want) {
			t.Errorf("no %q in the calls", want)
		}
	}
	if strings.Contains(calls, "lb1: change common") || strings.Contains(calls, "k8s-worker-1: change kubeadm init") || strings.Contains(calls, "k8s-master-1: change kubeadm join") {
		t.Error("a phase ran on a host it does not concern")
	}
	if n := strings.Count(calls, "change join/token"); n != 1 {
		t.Errorf("token created %d times, want once", n)
	}
	if n := strings.Count(calls, "change join/certificate-key"); n != 1 {
		t.Errorf("certificate key created %d times, want once", n)
	}
	// Masters join one at a time, in order.
	if i2, i3 := strings.Index(calls, "k8s-master-2: change kubeadm join"), strings.Index(calls, "k8s-master-3: change kubeadm join"); i2 < 0 || i3 < i2 {
		t.Error("masters did not join in order")
	}
	// Uploads: the vipd package, then the configuration (the package made the user vipd it
	// belongs to), with the right modes and owners; no binary or unit outside the package.
	modes := map[string]string{}
	var lb1Uploads []string
	for _, u := range w.uploads {
		if u.host == "lb1" {
			modes[u.path] = u.owner + " " + u.mode.String()
			lb1Uploads = append(lb1Uploads, u.path)
		}
	}
	deb := "/var/tmp/vipd_1.2.0_amd64.deb"
	for p, want := range map[string]string{deb: "root:root -rw-r--r--", VipdConfigPath: "root:vipd -rw-r-----", VipdBinaryPath: " ----------", VipdUnitPath: " ----------", legacyBinaryPath: " ----------"} {
		if modes[p] != want && !(strings.HasSuffix(want, " ----------") && modes[p] == "") {
			t.Errorf("lb1 upload %s: %q, want %q", p, modes[p], want)
		}
	}
	if len(lb1Uploads) == 0 || lb1Uploads[0] != deb {
		t.Errorf("lb1 uploads %v: want the package first", lb1Uploads)
	}
	for _, c := range w.cmds {
		if strings.HasPrefix(c, "lb1: # change lb/package") && (!strings.Contains(c, "apt-get install") || !strings.Contains(c, "--force-confold") || !strings.Contains(c, deb)) {
			t.Errorf("package install: %s", c)
		}
	}
	// The secrets travel in a 0600 JoinConfiguration removed after the join, never on a
	// command line (ps, sudo's log) and never in the output.
	token, certKey := "abcdef.0123456789abcdef", strings.Repeat("ab", 32)
	for _, c := range w.cmds {
		if strings.Contains(c, token) || strings.Contains(c, "0123456789abcdef") || strings.Contains(c, certKey) {
			t.Errorf("a join secret is on a command line: %s", c)
		}
		if strings.HasPrefix(c, "k8s-master-2: # change kubeadm join") && (!strings.Contains(c, "kubeadm join --config "+JoinConfig) || !strings.Contains(c, "rm -f "+JoinConfig)) {
			t.Errorf("master join command: %s", c)
		}
	}
	joinCfg := map[string]upload{}
	for _, u := range w.uploads {
		if u.path == JoinConfig {
			joinCfg[u.host] = u
		}
	}
	m2, wk := joinCfg["k8s-master-2"], joinCfg["k8s-worker-1"]
	for _, u := range []upload{m2, wk} {
		if u.mode != 0o600 || u.owner != "root:root" || !strings.Contains(string(u.data), `token: "`+token+`"`) || !strings.Contains(string(u.data), `apiServerEndpoint: "192.168.10.100:6443"`) ||
			!strings.Contains(string(u.data), `- "sha256:1111"`) || !strings.Contains(string(u.data), `name: "`+u.host+`"`) {
			t.Errorf("%s: join config %v %s:\n%s", u.host, u.mode, u.owner, u.data)
		}
	}
	if !strings.Contains(string(m2.data), `certificateKey: "`+certKey+`"`) || !strings.Contains(string(m2.data), `advertiseAddress: "192.168.10.139"`) || !strings.Contains(string(m2.data), "bindPort: 6443") {
		t.Errorf("master join config:\n%s", m2.data)
	}
	if strings.Contains(string(wk.data), "controlPlane") || strings.Contains(string(wk.data), certKey) {
		t.Errorf("worker join config has control-plane settings:\n%s", wk.data)
	}
	if strings.Contains(out.String(), token) || strings.Contains(out.String(), certKey) {
		t.Error("a join secret appears in the output")
	}
	// One gossip key, made by this run, on both lbs: 32 bytes in base64, 0640 root:vipd (vipd
	// runs as user vipd and refuses keys others can read), never in the output.
	var keys []upload
	for _, u := range w.uploads {
		if u.path == VipdGossipKey {
			keys = append(keys, u)
		}
	}
	if len(keys) != 2 || keys[0].host == keys[1].host || !bytes.Equal(keys[0].data, keys[1].data) {
		t.Fatalf("gossip key uploads: %d, want the same key once on each lb", len(keys))
	}
	for _, k := range keys {
		if k.mode != 0o640 || k.owner != "root:vipd" {
			t.Errorf("%s: gossip key %v %s, want 0640 root:vipd", k.host, k.mode, k.owner)
		}
	}
	if raw, ok := decodeGossipKey(keys[0].data); !ok || len(raw) != 32 || bytes.Equal(raw, make([]byte, 32)) {
		t.Errorf("gossip key is not 32 random bytes in base64")
	}
	key := strings.TrimSpace(string(keys[0].data))
	if strings.Contains(out.String(), key) || strings.Contains(strings.Join(w.cmds, "\n"), key) {
		t.Error("the gossip key appears in the output or in a command line")
	}
	// The key lands before the configuration that names it.
	order := map[string]string{}
	for _, u := range w.uploads {
		if u.path == VipdGossipKey || u.path == VipdConfigPath {
			order[u.host] += u.path + " "
		}
	}
	for _, lb := range []string{"lb1", "lb2"} {
		if order[lb] != VipdGossipKey+" "+VipdConfigPath+" " {
			t.Errorf("%s: uploads in order %q, want the key before the config", lb, order[lb])
		}
	}
	for _, want := range []string{"[lb1] lb: vipd started, package 1.2.0 installed (priority 100); new gossip key installed (", "[lb2] lb: vipd started, package 1.2.0 installed (priority 90); new gossip key installed (", "[lb1] lb: holds the VIP",
		"[k8s-master-1] init: cluster initialised", "[k8s-master-3] join-masters: joined as control-plane (", "[k8s-worker-1] join-workers: joined as worker ("} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestLBSkipLogic(t *testing.T) {
	top := refTopology(t)
	lb1, _ := top.Host("lb1")
	lb2, _ := top.Host("lb2")
	done := lbProbeDone(t, top, lb1)
	cfg, err := RenderVipdConfig(top, lb1, "ens33")
	if err != nil {
		t.Fatal(err)
	}
	noGossip := *top
	off := false
	noGossip.LoadBalancer.Gossip.Enabled = &off
	cfgNoGossip, _ := RenderVipdConfig(&noGossip, lb1, "ens33")
	keyLine := fmt.Sprintf("file %s 640 root:vipd %s\n", VipdGossipKey, sha(testGossipKey))
	otherKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)) + "\n"
	key := answer{out: string(testGossipKey)}
	cases := []struct {
		name     string
		host     topology.Host
		probe    string
		keys     [2]answer // probe lb/gossip-key on lb1, lb2 (zero: testGossipKey)
		running  string    // probe lb/config: the configuration vipd runs with
		wantTodo []string
		wantNone []string
		wantOut  []string // warnings printed
	}{
		{name: "done", probe: done},
		{name: "config changed", probe: strings.Replace(done, "640 root:vipd ", "640 root:vipd 00", 1),
			running:  strings.Replace(string(cfg), "192.168.10.140:6443", "192.168.10.150:6443", 1),
			wantTodo: []string{"upload /etc/vipd/vipd.yaml", "systemctl reload vipd"}, wantNone: []string{"daemon-reload", "upload /usr/local/bin/vipd", "create the system user", "restart", "gossip.key"}},
		{name: "gossip settings changed", probe: strings.Replace(done, "640 root:vipd ", "640 root:vipd 00", 1),
			running:  strings.Replace(string(cfg), "split_brain: resign-lower", "split_brain: none", 1),
			wantTodo: []string{"upload /etc/vipd/vipd.yaml", "systemctl restart vipd (cluster changed, which vipd applies only on a restart"}, wantNone: []string{"reload", "gossip.key"}},
		{name: "stats port changed", probe: strings.Replace(done, "640 root:vipd ", "640 root:vipd 00", 1),
			running:  strings.Replace(string(cfg), "listen: :8404", "listen: :8405", 1),
			wantTodo: []string{"systemctl restart vipd (stats.listen changed"}, wantNone: []string{"reload"}},
		{name: "gossip turned on", probe: strings.Replace(strings.Replace(done, keyLine, "", 1), sha(cfg), sha(cfgNoGossip), 1),
			keys: [2]answer{{code: 1}, {code: 1}}, running: string(cfgNoGossip),
			wantTodo: []string{"upload /etc/vipd/gossip.key (0640 root:vipd, gossip key: new, 32 random bytes)", "upload /etc/vipd/vipd.yaml", "systemctl restart vipd (gossip key, cluster changed"},
			wantNone: []string{"reload", "upload /usr/local/bin/vipd"}},
		{name: "key mode wrong", probe: strings.Replace(done, keyLine, strings.Replace(keyLine, "640 root:vipd", "600 root:root", 1), 1),
			wantTodo: []string{"upload /etc/vipd/gossip.key (0640 root:vipd, gossip key)", "systemctl restart vipd (gossip key changed"}, wantNone: []string{"reload", "vipd.yaml"}},
		{name: "key only on the other lb", probe: strings.Replace(done, keyLine, "", 1), keys: [2]answer{{code: 1}, key},
			wantTodo: []string{"upload /etc/vipd/gossip.key (0640 root:vipd, gossip key of lb2)", "systemctl restart vipd"}, wantNone: []string{"new", "vipd.yaml"}},
		{name: "different key", host: lb2, probe: strings.Replace(lbProbeDone(t, top, lb2), sha(testGossipKey), sha([]byte(otherKey)), 1),
			keys:     [2]answer{key, {out: otherKey}},
			wantTodo: []string{"upload /etc/vipd/gossip.key (0640 root:vipd, gossip key of lb1; replaces this host's: it holds a different key than lb1)", "systemctl restart vipd (gossip key changed"},
			wantOut:  []string{"[lb2] lb: WARNING: /etc/vipd/gossip.key: it holds a different key than lb1, so vipd's gossip between the lb hosts fails (gossip_key alarm); bootstrap replaces it with lb1's key and restarts vipd there"}},
		{name: "unusable key", probe: strings.Replace(done, sha(testGossipKey), sha([]byte("hello\n")), 1), keys: [2]answer{{out: "hello\n"}, key},
			wantTodo: []string{"gossip key of lb2; replaces this host's: it holds no usable key", "systemctl restart vipd"},
			wantOut:  []string{"[lb1] lb: WARNING: /etc/vipd/gossip.key: it holds no usable key"}},
		{name: "stopped", probe: strings.Replace(done, "active active", "active failed", 1),
			wantTodo: []string{"systemctl start vipd"}, wantNone: []string{"upload", "restart"}},
		{name: "mode changed", probe: strings.Replace(done, "640 root:vipd", "644 root:vipd", 1), running: string(cfg),
			wantTodo: []string{"upload /etc/vipd/vipd.yaml (0640 root:vipd", "systemctl reload vipd"}},
		{name: "package upgrade", probe: strings.Replace(strings.Replace(done, "pkg 1.2.0 ii", "pkg 1.1.0 ii", 1), sha(fakeVipd), sha([]byte("older vipd")), 1),
			wantTodo: []string{"upgrade the vipd package 1.1.0 -> 1.2.0 (upload vipd_1.2.0_amd64.deb, apt-get install it; /etc/vipd/vipd.yaml is kept)", "restart vipd on the new package"},
			wantNone: []string{"upload /etc/vipd", "reload", "create"}},
		{name: "rebuilt under the same version", probe: strings.Replace(done, sha(fakeVipd), sha([]byte("another build")), 1),
			wantTodo: []string{"reinstall the vipd package 1.2.0", "restart vipd on the new package"}, wantNone: []string{"upload /etc/vipd", "reload"}},
		{name: "package unit changed", probe: strings.Replace(done, sha(fakePackage.Unit), sha([]byte("edited")), 1),
			wantTodo: []string{"reinstall the vipd package 1.2.0"}},
		{name: "removed, not purged", probe: strings.Replace(strings.Replace(done, "pkg 1.2.0 ii", "pkg 1.2.0 rc", 1), "active active", "active inactive", 1),
			wantTodo: []string{"install the vipd package 1.2.0", "systemctl start vipd"}, wantNone: []string{"upload /etc/vipd"}},
		{name: "installed without a package (older bootstrap)", probe: strings.Replace(strings.Replace(done, "pkg 1.2.0 ii \n", "pkg \nlegacy "+legacyBinaryPath+"\nlegacy "+legacyUnitPath+"\n", 1), "file "+VipdBinaryPath, "file /nonexistent", 1),
			wantTodo: []string{"remove the vipd installed without a package (/usr/local/bin/vipd, /etc/systemd/system/vipd.service)", "install the vipd package 1.2.0", "restart vipd on the new package"},
			wantNone: []string{"upload /etc/vipd", "create"}},
		{name: "fresh", probe: "dir \nuser no\nenabled disabled\nactive inactive\n", keys: [2]answer{{code: 1}, {code: 1}},
			wantTodo: []string{"install the vipd package 1.2.0 (upload vipd_1.2.0_amd64.deb", "upload /etc/vipd/gossip.key (0640 root:vipd, gossip key: new", "systemctl enable vipd", "systemctl start vipd"}, wantNone: []string{"restart", "create the system user", "create /etc/vipd"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := c.host
			if h.Name == "" {
				h = lb1
			}
			w := newWorld()
			w.set(h.Name, "probe facts", answer{out: ubuntuFactsFor(h.Name)})
			w.set(h.Name, "probe lb", answer{out: c.probe})
			for i, name := range []string{"lb1", "lb2"} {
				a := c.keys[i]
				if a.out == "" && a.code == 0 {
					a = key
				}
				w.set(name, "probe lb/gossip-key", a)
			}
			if c.running != "" {
				w.set(h.Name, "probe lb/config", answer{out: c.running})
			}
			r, out := newTestRunner(t, top, w, false)
			st, err := lbPhase{}.Probe(context.Background(), r, h)
			if err != nil {
				t.Fatal(err)
			}
			if len(w.unexpected) > 0 {
				t.Errorf("unexpected commands: %v", w.unexpected)
			}
			todo := strings.Join(st.Todo, "\n")
			if (len(c.wantTodo) == 0) != st.Done {
				t.Errorf("done = %v, todo:\n%s", st.Done, todo)
			}
			for _, want := range c.wantTodo {
				if !strings.Contains(todo, want) {
					t.Errorf("todo lacks %q:\n%s", want, todo)
				}
			}
			for _, not := range c.wantNone {
				if strings.Contains(todo, not) {
					t.Errorf("todo has %q:\n%s", not, todo)
				}
			}
			for _, want := range c.wantOut {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if len(c.wantOut) == 0 && out.Len() > 0 {
				t.Errorf("unexpected output:\n%s", out)
			}
			// Key material never reaches the output or the plan.
			for _, k := range []string{string(testGossipKey), otherKey} {
				if k = strings.TrimSpace(k); strings.Contains(out.String()+todo, k) {
					t.Error("a gossip key appears in the output or the plan")
				}
			}
		})
	}
}

// A rerun against lbs that hold a key keeps it: the uploaded key is theirs, byte for byte;
// a converging run puts the first lb's key on the others and restarts vipd there only.
func TestGossipKeyConverges(t *testing.T) {
	top := refTopology(t)
	w := doneWorld(t, top)
	otherKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)) + "\n"
	lb2, _ := top.Host("lb2")
	w.set("lb2", "probe lb/gossip-key", answer{out: otherKey})
	w.set("lb2", "probe lb", answer{out: strings.Replace(lbProbeDone(t, top, lb2), sha(testGossipKey), sha([]byte(otherKey)), 1)})
	w.set("*", "change lb/systemctl", answer{})
	r, out := newTestRunner(t, top, w, false)
	if err := r.Up(context.Background(), []string{PhaseLB}); err != nil {
		t.Fatalf("up --only lb: %v\n%s", err, out)
	}
	if len(w.uploads) != 1 || w.uploads[0].host != "lb2" || w.uploads[0].path != VipdGossipKey || !bytes.Equal(w.uploads[0].data, testGossipKey) {
		t.Fatalf("uploads: %+v, want lb1's key on lb2 only", w.uploads)
	}
	var restarts []string
	for _, c := range w.cmds {
		if strings.Contains(c, "# change lb/systemctl") {
			restarts = append(restarts, c)
		}
	}
	if len(restarts) != 1 || !strings.HasPrefix(restarts[0], "lb2: ") || !strings.Contains(restarts[0], "systemctl restart vipd") {
		t.Errorf("systemctl calls %q, want one restart on lb2", restarts)
	}
	for _, want := range []string{"[lb1] lb: vipd installed, configured and running", "[lb2] lb: vipd updated and restarted (priority 90); gossip key of lb1 installed in place of a different one"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(strings.Join(w.calls, "\n"), "probe lb/gossip-key"); n != 2 {
		t.Errorf("gossip key read %d times, want once per lb", n)
	}
}

func TestRestartOnlyChanges(t *testing.T) {
	base := "node_name: lb1\nvrrp: {priority: 100}\nproxy: {listen: \":6443\", backends: [a]}\nstats: {listen: \":8404\"}\ncluster: {enabled: true, split_brain: none}\n"
	for _, c := range []struct{ running, want string }{
		{base, ""},
		{strings.Replace(base, "priority: 100", "priority: 90", 1), ""},
		{strings.Replace(base, "backends: [a]", "backends: [b]", 1), ""},
		{strings.Replace(base, "split_brain: none", "split_brain: resign-lower", 1), "cluster"},
		{strings.Replace(base, "cluster: {enabled: true, split_brain: none}\n", "", 1), "cluster"},
		// vipd's reload refuses a new track weight: bootstrap must restart, not reload (the
		// two lists differed here).
		{strings.Replace(base, "backends: [a]", "backends: [a], track_weight: 10", 1), "proxy.track_weight"},
		{strings.Replace(base, "priority: 100", "priority: 100, interface: eth1", 1), "vrrp.interface"},
		{strings.Replace(base, "\":6443\"", "\":6444\"", 1), "proxy.listen"},
		{strings.Replace(base, "\":8404\"", "\":8405\"", 1), "stats.listen"},
		{strings.Replace(base, "lb1", "lbx", 1), "node_name"},
		{"{unclosed", "the running configuration (unreadable)"}, {"", "the running configuration (unreadable)"},
	} {
		if got := strings.Join(restartOnlyChanges([]byte(c.running), []byte(base)), ","); got != c.want {
			t.Errorf("running %q: %q, want %q", c.running, got, c.want)
		}
	}
}

func ubuntuFactsFor(name string) string {
	return strings.Replace(strings.Replace(ubuntuFacts, "%s", name, 1), "%d", "0", 1)
}

func TestCommonSkipLogic(t *testing.T) {
	top := refTopology(t)
	w1, _ := top.Host("k8s-worker-1")
	done := commonProbeDone(top)
	cases := []struct {
		name     string
		probe    string
		wantTodo []string
		wantNone []string
	}{
		{"done", done, nil, nil},
		{"not held", strings.Replace(done, "held kubeadm kubectl kubelet", "held kubeadm", 1),
			[]string{"apt-mark hold"}, []string{"apt-get", "swap", "modprobe"}},
		{"swap back in fstab", strings.Replace(done, "fstab 0", "fstab 1", 1),
			[]string{"turn swap off"}, []string{"apt-get"}},
		{"wrong version", strings.ReplaceAll(done, "1.33.6-1.1", "1.32.9-1.1"),
			[]string{"apt-get update", "kubelet=1.33.6-*", "apt-mark hold"}, []string{"apt-get install -y containerd"}},
		{"kubeadm removed", strings.Replace(done, "pkg kubeadm 1.33.6-1.1 hi", "pkg kubeadm 1.33.6-1.1 hn", 1),
			[]string{"kubeadm=1.33.6-*"}, []string{"apt-get install -y containerd"}},
		{"cgroupfs containerd", strings.Replace(done, "cgroup systemd\n", "", 1),
			[]string{"SystemdCgroup = true"}, []string{"apt-get"}},
		{"container with the machine's swap", strings.Replace(done, "swapon 0", "swapon 1", 1), nil, nil},
		{"container with swap in fstab", strings.Replace(done, "fstab 0", "fstab 1", 1),
			[]string{"comment out the swap lines"}, []string{"swapoff"}},
		{"repo of another minor", strings.Replace(done, sha([]byte("# Kubernetes v1.33 packages (bootstrap)\n"+top.KubernetesRepoLine()+"\n")), "0000", 1),
			[]string{"install the Kubernetes apt key", "add the apt source", "apt-get update"}, []string{"kubelet=1.33.6"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld()
			facts := ubuntuFactsFor("k8s-worker-1")
			if strings.HasPrefix(c.name, "container") {
				facts += "virt=systemd-nspawn\n"
			}
			w.set("*", "probe facts", answer{out: facts})
			w.set("*", "probe common", answer{out: c.probe})
			r, _ := newTestRunner(t, top, w, false)
			st, err := commonPhase{}.Probe(context.Background(), r, w1)
			if err != nil {
				t.Fatal(err)
			}
			todo := strings.Join(st.Todo, "\n")
			if (len(c.wantTodo) == 0) != st.Done {
				t.Errorf("done = %v, todo:\n%s", st.Done, todo)
			}
			for _, want := range c.wantTodo {
				if !strings.Contains(todo, want) {
					t.Errorf("todo lacks %q:\n%s", want, todo)
				}
			}
			for _, not := range c.wantNone {
				if strings.Contains(todo, not) {
					t.Errorf("todo has %q:\n%s", not, todo)
				}
			}
		})
	}
}

// A failure prints the host, the step, the exit code, the last lines of stderr and the
// command to rerun; Up returns a *PhaseError.
func TestFailureReport(t *testing.T) {
	top := refTopology(t)
	w := doneWorld(t, top)
	w.set("k8s-master-3", "probe join", answer{code: 1})
	w.set("*", "probe cluster/nodes", answer{out: nodesOut(top, "k8s-master-3")})
	w.set("k8s-master-1", "probe join/etcd-members", answer{out: etcdMembers(top, "k8s-master-1", "k8s-master-2")})
	w.set("k8s-master-1", "change join/token", answer{out: "kubeadm join 192.168.10.100:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:1111\n"})
	w.set("k8s-master-1", "change join/certificate-key", answer{out: strings.Repeat("cd", 32) + "\n"})
	w.set("k8s-master-3", "change join/dir", answer{})
	w.set("k8s-master-3", "change kubeadm join", answer{code: 1, err: "[preflight] Running pre-flight checks\nerror execution phase check-etcd: etcd cluster is not healthy: context deadline exceeded\nTo see the stack trace of this error execute with --v=5 or higher\n"})
	r, out := newTestRunner(t, top, w, false)
	err := r.Up(context.Background(), nil)
	var pe *PhaseError
	if !errors.As(err, &pe) || pe.Host != "k8s-master-3" || pe.Phase != PhaseJoinMasters {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{
		"[k8s-master-3] join-masters: FAILED (",
		"error: kubeadm join: host k8s-master-3: exit code 1: [preflight] Running pre-flight checks",
		"etcd cluster is not healthy",
		"exit code: 1",
		"rerun: bootstrap up -f topology.yaml --only join-masters",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out.String(), "join-workers") || strings.Contains(out.String(), "verify") {
		t.Errorf("phases after the failed one ran:\n%s", out)
	}
	if strings.Contains(out.String(), "abcdef.0123456789abcdef") {
		t.Error("token in the output")
	}
}

func TestVIPSplitBrainReported(t *testing.T) {
	top := refTopology(t)
	w := doneWorld(t, top)
	w.set("lb2", "probe lb/vip", answer{out: "2: ens33    inet 192.168.10.100/24 scope global secondary ens33\n"})
	r, out := newTestRunner(t, top, w, false)
	err := r.Up(context.Background(), []string{PhaseLB})
	if err == nil || !strings.Contains(err.Error(), "split brain") || !strings.Contains(out.String(), "unicast") {
		t.Errorf("err = %v\n%s", err, out)
	}
}

func TestKubeconfigRewritesServer(t *testing.T) {
	top := refTopology(t)
	w := newWorld()
	w.set("k8s-master-1", "probe kubeconfig", answer{out: "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: QUJD\n    server: https://192.168.10.138:6443\n  name: k8s-ha\n"})
	r, _ := newTestRunner(t, top, w, false)
	b, err := r.Kubeconfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "    server: https://192.168.10.100:6443\n") || strings.Contains(string(b), "138") {
		t.Errorf("kubeconfig:\n%s", b)
	}
}

func TestPollAnalysis(t *testing.T) {
	// ok every 100ms, then 12 failures over 1.3s, then ok again.
	var b strings.Builder
	ts := int64(1_000_000_000)
	for i := 0; i < 10; i++ {
		b.WriteString(itoa(ts) + " ok\n")
		ts += 100e6
	}
	for i := 0; i < 12; i++ {
		b.WriteString(itoa(ts) + " fail\n")
		ts += 100e6
	}
	ts += 100e6
	b.WriteString(itoa(ts) + " ok\n")
	gap, fails, answers := analyzePoll(b.String())
	if fails != 12 || answers != 11 || gap.Milliseconds() != 1400 {
		t.Errorf("gap %s fails %d answers %d", gap, fails, answers)
	}
	if outageOf(gap, 0) != 0 || outageOf(gap, 1) != gap {
		t.Error("outage must be the gap only when polls failed")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestParseOnly(t *testing.T) {
	got, err := ParseOnly("lb, join-masters")
	if err != nil || strings.Join(got, ",") != "lb,join-masters" {
		t.Errorf("%v %v", got, err)
	}
	if _, err := ParseOnly("lb,joins"); err == nil || !strings.Contains(err.Error(), `unknown phase "joins"`) {
		t.Errorf("err = %v", err)
	}
}
