// Command kubeadm is a STAND-IN for the real kubeadm, for the vipd lab only (test/nspawn).
// It accepts the real command lines bootstrap runs (init --config F --upload-certs, init
// phase upload-certs --upload-certs, token create --print-join-command, join ... [--control-
// plane --certificate-key K], reset -f, version, config images list|pull), runs preflight
// checks a real kubeadm would fail on (files already there, port 6443 in use, no container
// runtime socket, ip_forward off, no advertise address without a default route), writes the
// real paths (/etc/kubernetes/{admin,super-admin,kubelet}.conf, pki/, manifests/
// kube-apiserver.yaml, /var/lib/kubelet/config.yaml), restarts kubelet through systemd
// (which starts the stand-in apiserver on a master) and keeps cluster state in the
// apiservers (see cmd/kube-apiserver). Every call is recorded in /var/log/standin/calls.log.
// Fault injection: see sim.FailOnceDir.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vipd-project/vipd/test/standin/internal/sim"
	"gopkg.in/yaml.v3"
)

func main() {
	args := os.Args[1:]
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	change := true
	switch {
	case sub == "version" || sub == "" || sub == "--help" || sub == "-h":
		change = false
	case sub == "token" && len(args) > 1 && args[1] == "list":
		change = false
	case sub == "config" && len(args) > 2 && args[2] == "list":
		change = false
	}
	sim.RecordCall("kubeadm", change, args)
	err := run(args)
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			fmt.Fprintln(os.Stderr, ee.msg)
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

func run(args []string) error {
	if len(args) == 0 {
		fmt.Println("kubeadm " + sim.StandinTag + ": easily bootstrap a secure Kubernetes cluster\n\nUsage:\n  kubeadm [command]")
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	switch args[0] {
	case "version":
		f, err := parseFlags(args[1:], map[string]bool{"output": false, "o": false})
		if err != nil {
			return err
		}
		switch f.get("output", "o") {
		case "short":
			fmt.Println(sim.Version)
		case "json":
			fmt.Printf(`{"clientVersion":{"major":"1","minor":"33","gitVersion":%q,"platform":"linux/amd64","standin":"vipd lab stand-in"}}`+"\n", sim.Version)
		case "":
			fmt.Printf("kubeadm version: &version.Info{Major:\"1\", Minor:\"33\", GitVersion:%q, Platform:\"linux/amd64\"} %s\n", sim.Version, sim.StandinTag)
		default:
			return fmt.Errorf("error: invalid output format: %s", f.get("output", "o"))
		}
		return nil
	case "init":
		if len(args) > 1 && args[1] == "phase" {
			if len(args) > 2 && args[2] == "upload-certs" {
				return uploadCerts(ctx, args[3:])
			}
			return fmt.Errorf("stand-in kubeadm: phase %q not implemented", strings.Join(args[2:], " "))
		}
		return initCmd(ctx, args[1:])
	case "join":
		return joinCmd(ctx, args[1:])
	case "reset":
		return resetCmd(ctx, args[1:])
	case "token":
		return tokenCmd(ctx, args[1:])
	case "config":
		if len(args) > 2 && args[1] == "images" && (args[2] == "list" || args[2] == "pull") {
			for _, img := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"} {
				if args[2] == "pull" {
					fmt.Printf("[config/images] Pulled registry.k8s.io/%s:%s\n", img, sim.Version)
				} else {
					fmt.Printf("registry.k8s.io/%s:%s\n", img, sim.Version)
				}
			}
			return nil
		}
		return fmt.Errorf("stand-in kubeadm: config %q not implemented", strings.Join(args[1:], " "))
	}
	return exitError{1, fmt.Sprintf("unknown command %q for \"kubeadm\"\nRun 'kubeadm --help' for usage.", args[0])}
}

// flags is a parsed command line: --name=value / --name value / boolean --name.
type flags struct {
	vals map[string]string
	pos  []string
}

func (f *flags) get(names ...string) string {
	for _, n := range names {
		if v, ok := f.vals[n]; ok {
			return v
		}
	}
	return ""
}

func (f *flags) has(n string) bool { _, ok := f.vals[n]; return ok && f.vals[n] != "false" }

// parseFlags accepts only the flags in spec (name -> boolean); the real kubeadm refuses
// unknown flags too.
func parseFlags(args []string, spec map[string]bool) (*flags, error) {
	spec["v"] = false
	spec["kubeconfig"] = false
	f := &flags{vals: map[string]string{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			f.pos = append(f.pos, a)
			continue
		}
		name := strings.TrimLeft(a, "-")
		val, hasVal := "", false
		if k, v, ok := strings.Cut(name, "="); ok {
			name, val, hasVal = k, v, true
		}
		isBool, ok := spec[name]
		if !ok {
			return nil, exitError{1, fmt.Sprintf("unknown flag: %s\nTo see the stack trace of this error execute with --v=5 or higher", a)}
		}
		if !hasVal {
			if isBool {
				val = "true"
			} else {
				if i+1 >= len(args) {
					return nil, exitError{1, "flag needs an argument: " + a}
				}
				i++
				val = args[i]
			}
		}
		f.vals[name] = val
	}
	return f, nil
}

// failOnce implements sim.FailOnceDir: it reports the injected mode and removes the flag.
func failOnce(sub string) string {
	p := filepath.Join(sim.FailOnceDir, sub)
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	_ = os.Remove(p)
	mode := strings.TrimSpace(string(b))
	if mode == "" {
		mode = "preflight"
	}
	return mode
}

// kubeadmConfig is what the stand-in reads from a kubeadm config file.
type kubeadmConfig struct {
	Endpoint, Version, PodSubnet, ServiceSubnet, ClusterName string
	AdvertiseAddress, NodeName                               string
	BindPort                                                 int
	// JoinConfiguration
	JoinEndpoint, Token, CertificateKey string
	CAHashes                            []string
	ControlPlane                        bool
}

func readConfig(path string) (*kubeadmConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("unable to read config from %q : %w", path, err)
	}
	cfg := &kubeadmConfig{}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("error unmarshaling YAML in %s: %w", path, err)
		}
		if doc == nil {
			continue
		}
		api, _ := doc["apiVersion"].(string)
		kind, _ := doc["kind"].(string)
		switch kind {
		case "InitConfiguration", "ClusterConfiguration", "JoinConfiguration":
			if api != "kubeadm.k8s.io/v1beta3" && api != "kubeadm.k8s.io/v1beta4" {
				return nil, fmt.Errorf("%s: no kind %q is registered for version %q in scheme", path, kind, api)
			}
		case "KubeletConfiguration", "KubeProxyConfiguration":
			continue
		default:
			fmt.Fprintf(os.Stderr, "W1126 [config] WARNING: Ignored configuration document with GroupVersionKind %s, Kind=%s\n", api, kind)
			continue
		}
		get := func(path ...string) any {
			var cur any = doc
			for _, p := range path {
				m, ok := cur.(map[string]any)
				if !ok {
					return nil
				}
				cur = m[p]
			}
			return cur
		}
		str := func(path ...string) string { s, _ := get(path...).(string); return s }
		switch kind {
		case "ClusterConfiguration":
			cfg.Endpoint = str("controlPlaneEndpoint")
			cfg.Version = str("kubernetesVersion")
			cfg.PodSubnet = str("networking", "podSubnet")
			cfg.ServiceSubnet = str("networking", "serviceSubnet")
			cfg.ClusterName = str("clusterName")
		case "InitConfiguration":
			cfg.AdvertiseAddress = str("localAPIEndpoint", "advertiseAddress")
			if p, ok := get("localAPIEndpoint", "bindPort").(int); ok {
				cfg.BindPort = p
			}
			cfg.NodeName = str("nodeRegistration", "name")
			cfg.CertificateKey = str("certificateKey")
		case "JoinConfiguration":
			cfg.JoinEndpoint = str("discovery", "bootstrapToken", "apiServerEndpoint")
			cfg.Token = str("discovery", "bootstrapToken", "token")
			if hs, ok := get("discovery", "bootstrapToken", "caCertHashes").([]any); ok {
				for _, h := range hs {
					if s, ok := h.(string); ok {
						cfg.CAHashes = append(cfg.CAHashes, s)
					}
				}
			}
			cfg.NodeName = str("nodeRegistration", "name")
			if get("controlPlane") != nil {
				cfg.ControlPlane = true
				cfg.CertificateKey = str("controlPlane", "certificateKey")
				cfg.AdvertiseAddress = str("controlPlane", "localAPIEndpoint", "advertiseAddress")
			}
		}
	}
	return cfg, nil
}

// preflight runs the checks a real kubeadm fails on; ignore lists check names or "all".
func preflight(checks map[string]string, ignore string) error {
	fmt.Println("[preflight] Running pre-flight checks")
	ign := map[string]bool{}
	for _, s := range strings.Split(strings.ToLower(ignore), ",") {
		ign[strings.TrimSpace(s)] = true
	}
	var msgs []string
	for name, msg := range checks {
		if msg == "" || ign["all"] || ign[strings.ToLower(name)] {
			continue
		}
		msgs = append(msgs, fmt.Sprintf("\t[ERROR %s]: %s", name, msg))
	}
	if len(msgs) == 0 {
		return nil
	}
	sortStrings(msgs)
	return exitError{1, "error execution phase preflight: [preflight] Some fatal errors occurred:\n" + strings.Join(msgs, "\n") +
		"\n[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`\nTo see the stack trace of this error execute with --v=5 or higher"}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func commonChecks(criSocket string) map[string]string {
	c := map[string]string{}
	if os.Geteuid() != 0 {
		c["IsPrivilegedUser"] = "user is not running as root"
	}
	sock := strings.TrimPrefix(criSocket, "unix://")
	if sock == "" {
		sock = "/run/containerd/containerd.sock"
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		c["CRI"] = fmt.Sprintf("container runtime is not running: output: time=%q level=fatal msg=\"validate service connection: validate CRI v1 runtime API for endpoint \\\"unix://%s\\\": rpc error: code = Unavailable desc = connection error: desc = \\\"transport: Error while dialing: dial unix %s: connect: no such file or directory\\\"\"", time.Now().UTC().Format(time.RFC3339), sock, sock)
	} else if conn, err := net.DialTimeout("unix", sock, time.Second); err != nil {
		c["CRI"] = "container runtime is not running: dial unix " + sock + ": " + err.Error()
	} else {
		conn.Close()
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err != nil || strings.TrimSpace(string(b)) != "1" {
		c["FileContent--proc-sys-net-ipv4-ip_forward"] = "/proc/sys/net/ipv4/ip_forward contents are not set to 1"
	}
	return c
}

func fileAvailable(c map[string]string, paths ...string) {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			name := "FileAvailable-" + strings.ReplaceAll(p, "/", "-")
			c[name] = p + " already exists"
		}
	}
}

func portFree(c map[string]string, port int) {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		c["Port-"+strconv.Itoa(port)] = fmt.Sprintf("Port %d is in use", port)
		return
	}
	ln.Close()
}

// defaultRouteAddr mimics kubeadm's choice of advertise address: the address of the
// interface holding the default route. The lab has no default route.
func defaultRouteAddr() (string, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 2 && fs[1] == "00000000" {
			ifi, err := net.InterfaceByName(fs[0])
			if err != nil {
				continue
			}
			addrs, _ := ifi.Addrs()
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
					return ipn.IP.String(), nil
				}
			}
		}
	}
	return "", exitError{1, "unable to select an IP from default routes."}
}

func hostname() string {
	h, _ := os.Hostname()
	return strings.ToLower(h)
}

func restartKubelet() error {
	fmt.Println("[kubelet-start] Starting the kubelet")
	if out, err := exec.Command("systemctl", "restart", "kubelet").CombinedOutput(); err != nil {
		return fmt.Errorf("error execution phase kubelet-start: could not restart the kubelet: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func waitReady(ctx context.Context, base string, timeout time.Duration) error {
	fmt.Printf("[control-plane-check] Waiting for healthy control plane components. This can take up to %v\n", timeout)
	fmt.Printf("[control-plane-check] Checking kube-apiserver at %s/livez\n", base)
	c := sim.NewClient(base, sim.TLSConfig(nil, nil, nil), 2*time.Second)
	deadline := time.Now().Add(timeout)
	start := time.Now()
	for {
		var out string
		if err := c.Do(ctx, http.MethodGet, "/readyz", nil, &out); err == nil {
			fmt.Printf("[control-plane-check] kube-apiserver is healthy after %v\n", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("error execution phase wait-control-plane: kube-apiserver check failed at %s/livez: context deadline exceeded", base)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// writeControlPlane writes the PKI, kubeconfigs and the apiserver manifest of a master.
func writeControlPlane(ca *sim.CA, clusterName, endpoint, advertise, nodeName string, peers []string) error {
	if err := os.MkdirAll(sim.PKIDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(sim.PKIDir+"/ca.crt", ca.CertPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(sim.PKIDir+"/ca.key", ca.KeyPEM, 0o600); err != nil {
		return err
	}
	epHost, _, _ := net.SplitHostPort(endpoint)
	sans := []string{advertise, "127.0.0.1", nodeName, "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "10.96.0.1"}
	if epHost != "" {
		sans = append(sans, epHost)
	}
	fmt.Printf("[certs] apiserver serving cert is signed for DNS names %v\n", sans)
	crt, key, err := ca.Issue("kube-apiserver", nil, sans)
	if err != nil {
		return err
	}
	if err := os.WriteFile(sim.PKIDir+"/apiserver.crt", crt, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(sim.PKIDir+"/apiserver.key", key, 0o600); err != nil {
		return err
	}
	server := "https://" + endpoint
	for _, kc := range []struct{ path, user, org string }{
		{sim.AdminConf, "kubernetes-admin", "kubeadm:cluster-admins"},
		{sim.SuperConf, "kubernetes-super-admin", "system:masters"},
		{sim.KubeDir + "/controller-manager.conf", "system:kube-controller-manager", ""},
		{sim.KubeDir + "/scheduler.conf", "system:kube-scheduler", ""},
	} {
		var orgs []string
		if kc.org != "" {
			orgs = []string{kc.org}
		}
		c, k, err := ca.Issue(kc.user, orgs, nil)
		if err != nil {
			return err
		}
		fmt.Printf("[kubeconfig] Writing %q kubeconfig file\n", filepath.Base(kc.path))
		if err := sim.WriteFileAtomic(kc.path, sim.RenderKubeconfig(clusterName, server, kc.user, ca.CertPEM, c, k), 0o600); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(sim.EtcdDir, 0o700); err != nil {
		return err
	}
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: %s:6443
  labels:
    component: kube-apiserver
    tier: control-plane
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=%s
    - --secure-port=6443
    - --client-ca-file=/etc/kubernetes/pki/ca.crt
    - --tls-cert-file=/etc/kubernetes/pki/apiserver.crt
    - --tls-private-key-file=/etc/kubernetes/pki/apiserver.key
    - --standin-ca-key-file=/etc/kubernetes/pki/ca.key
    - --standin-state=%s
    - --standin-peers=%s
    image: registry.k8s.io/kube-apiserver:%s
    name: kube-apiserver
  hostNetwork: true
`, advertise, advertise, sim.StateFile, strings.Join(peers, ","), sim.Version)
	if err := os.MkdirAll(sim.ManifestsDir, 0o755); err != nil {
		return err
	}
	for _, c := range []string{"etcd", "kube-controller-manager", "kube-scheduler"} {
		fmt.Printf("[control-plane] Creating static Pod manifest for %q\n", c)
		if err := os.WriteFile(filepath.Join(sim.ManifestsDir, c+".yaml"), []byte("# stand-in: not run\nkind: Pod\nmetadata:\n  name: "+c+"\n"), 0o600); err != nil {
			return err
		}
	}
	fmt.Println(`[control-plane] Creating static Pod manifest for "kube-apiserver"`)
	return sim.WriteFileAtomic(sim.APIManifest, []byte(manifest), 0o600)
}

// writeKubelet writes the kubelet's config, its kubeconfig and the node record.
func writeKubelet(ca *sim.CA, caPEM []byte, clusterName, endpoint string, ns sim.NodeState) error {
	if err := os.MkdirAll(sim.KubeletDir, 0o755); err != nil {
		return err
	}
	fmt.Println(`[kubelet-start] Writing kubelet configuration to file "/var/lib/kubelet/config.yaml"`)
	if err := os.WriteFile(sim.KubeletConfig, []byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n"), 0o644); err != nil {
		return err
	}
	fmt.Println(`[kubelet-start] Writing kubelet environment file with flags to file "/var/lib/kubelet/kubeadm-flags.env"`)
	if err := os.WriteFile(sim.KubeletDir+"/kubeadm-flags.env", []byte(`KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --node-ip=`+ns.Address+`"`+"\n"), 0o644); err != nil {
		return err
	}
	var cert, key []byte
	if ca != nil {
		var err error
		if cert, key, err = ca.Issue("system:node:"+ns.Name, []string{"system:nodes"}, nil); err != nil {
			return err
		}
	}
	if err := sim.WriteFileAtomic(sim.KubeletConf, sim.RenderKubeconfig(clusterName, "https://"+endpoint, "system:node:"+ns.Name, caPEM, cert, key), 0o600); err != nil {
		return err
	}
	if err := os.MkdirAll(sim.PKIDir, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(sim.PKIDir + "/ca.crt"); err != nil {
		if err := os.WriteFile(sim.PKIDir+"/ca.crt", caPEM, 0o644); err != nil {
			return err
		}
	}
	b := fmt.Sprintf(`{"name":%q,"role":%q,"address":%q,"endpoint":%q}`, ns.Name, ns.Role, ns.Address, ns.Endpoint)
	return sim.WriteFileAtomic(sim.NodeFile, []byte(b+"\n"), 0o644)
}

func initCmd(ctx context.Context, args []string) error {
	f, err := parseFlags(args, map[string]bool{"config": false, "upload-certs": true, "control-plane-endpoint": false,
		"pod-network-cidr": false, "service-cidr": false, "apiserver-advertise-address": false, "apiserver-bind-port": false,
		"node-name": false, "kubernetes-version": false, "cri-socket": false, "ignore-preflight-errors": false,
		"certificate-key": false, "skip-phases": false, "dry-run": true, "skip-token-print": true, "skip-certificate-key-print": true})
	if err != nil {
		return err
	}
	cfg := &kubeadmConfig{}
	if p := f.get("config"); p != "" {
		if cfg, err = readConfig(p); err != nil {
			return err
		}
	}
	if v := f.get("control-plane-endpoint"); v != "" {
		cfg.Endpoint = v
	}
	if v := f.get("pod-network-cidr"); v != "" {
		cfg.PodSubnet = v
	}
	if v := f.get("apiserver-advertise-address"); v != "" {
		cfg.AdvertiseAddress = v
	}
	if v := f.get("node-name"); v != "" {
		cfg.NodeName = v
	}
	if v := f.get("kubernetes-version"); v != "" {
		cfg.Version = v
	}
	if cfg.Version != "" {
		v := "v" + strings.TrimPrefix(cfg.Version, "v")
		if !strings.HasPrefix(v, "v1.33.") && !strings.HasPrefix(v, "v1.32.") && v != "v1.33" {
			return exitError{1, fmt.Sprintf("this version of kubeadm only supports deploying clusters with the control plane version >= 1.32.0. Current version: %s", v)}
		}
		fmt.Printf("[init] Using Kubernetes version: %s\n", v)
	}
	if mode := failOnce("init"); mode != "" {
		return exitError{1, "error execution phase preflight: [preflight] Some fatal errors occurred:\n\t[ERROR StandinInjected]: failure injected by " + sim.FailOnceDir + "/init"}
	}
	if cfg.AdvertiseAddress == "" {
		a, err := defaultRouteAddr()
		if err != nil {
			return exitError{1, "error execution phase preflight: " + err.Error() + "\nTo see the stack trace of this error execute with --v=5 or higher"}
		}
		cfg.AdvertiseAddress = a
	}
	if net.ParseIP(cfg.AdvertiseAddress) == nil {
		return exitError{1, fmt.Sprintf("couldn't use %q as \"apiserver-advertise-address\", must be ipv4 or ipv6 address", cfg.AdvertiseAddress)}
	}
	if cfg.NodeName == "" {
		cfg.NodeName = hostname()
	}
	if cfg.ClusterName == "" {
		cfg.ClusterName = "kubernetes"
	}
	// stable is the controlPlaneEndpoint as configured (empty: none, and then no other
	// control-plane node can join, like the real kubeadm).
	stable := cfg.Endpoint
	if _, _, err := net.SplitHostPort(stable); stable != "" && err != nil {
		stable = net.JoinHostPort(stable, "6443")
	}
	endpoint := stable
	if endpoint == "" {
		endpoint = net.JoinHostPort(cfg.AdvertiseAddress, "6443")
	}
	checks := commonChecks(f.get("cri-socket"))
	fileAvailable(checks, sim.APIManifest, sim.ManifestsDir+"/etcd.yaml", sim.ManifestsDir+"/kube-controller-manager.yaml", sim.ManifestsDir+"/kube-scheduler.yaml")
	portFree(checks, 6443)
	if entries, err := os.ReadDir(sim.EtcdDir); err == nil && len(entries) > 0 {
		checks["DirAvailable--var-lib-etcd"] = "/var/lib/etcd is not empty"
	}
	if err := preflight(checks, f.get("ignore-preflight-errors")); err != nil {
		return err
	}
	if f.has("dry-run") {
		fmt.Println("[dryrun] Would perform init; finished dry run")
		return nil
	}
	fmt.Println(`[certs] Using certificateDir folder "/etc/kubernetes/pki"`)
	fmt.Println(`[certs] Generating "ca" certificate and key`)
	ca, err := sim.NewCA()
	if err != nil {
		return err
	}
	if err := writeControlPlane(ca, cfg.ClusterName, endpoint, cfg.AdvertiseAddress, cfg.NodeName, nil); err != nil {
		return fmt.Errorf("error execution phase control-plane: %w", err)
	}
	ns := sim.NodeState{Name: cfg.NodeName, Role: "control-plane", Address: cfg.AdvertiseAddress, Endpoint: endpoint}
	if err := writeKubelet(ca, ca.CertPEM, cfg.ClusterName, endpoint, ns); err != nil {
		return fmt.Errorf("error execution phase kubelet-start: %w", err)
	}
	if err := restartKubelet(); err != nil {
		return err
	}
	local := "https://" + net.JoinHostPort(cfg.AdvertiseAddress, "6443")
	if err := waitReady(ctx, local, waitTimeout); err != nil {
		return err
	}
	c := sim.NewClient(local, sim.TLSConfig(ca.CertPEM, nil, nil), 10*time.Second)
	if err := c.Do(ctx, http.MethodPost, "/standin/init", sim.ClusterInfo{Endpoint: stable, ClusterName: cfg.ClusterName, PodSubnet: cfg.PodSubnet}, nil); err != nil {
		return fmt.Errorf("error execution phase upload-config/kubeadm: %w", err)
	}
	fmt.Println(`[upload-config] Storing the configuration used in ConfigMap "kubeadm-config" in the "kube-system" Namespace`)
	if err := c.Do(ctx, http.MethodPost, "/standin/nodes", sim.Node{Name: cfg.NodeName, Role: "control-plane", Address: cfg.AdvertiseAddress}, nil); err != nil {
		return fmt.Errorf("error execution phase mark-control-plane: %w", err)
	}
	fmt.Printf("[mark-control-plane] Marking the node %s as control-plane by adding the labels: [node-role.kubernetes.io/control-plane node.kubernetes.io/exclude-from-external-load-balancers]\n", cfg.NodeName)
	if err := addEtcdMember(ctx, c, cfg.NodeName, cfg.AdvertiseAddress); err != nil {
		return err
	}
	certKey := ""
	if f.has("upload-certs") {
		certKey = f.get("certificate-key")
		if certKey == "" {
			certKey = cfg.CertificateKey
		}
		if certKey == "" {
			certKey = sim.RandomHex(32)
		}
		if err := c.Do(ctx, http.MethodPut, "/standin/certkey", sim.Entry{Value: certKey, Expires: time.Now().Add(2 * time.Hour)}, nil); err != nil {
			return fmt.Errorf("error execution phase upload-certs: %w", err)
		}
		fmt.Println(`[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace`)
		fmt.Println("[upload-certs] Using certificate key:")
		fmt.Println(certKey)
	}
	tok := sim.Token{ID: sim.RandomString(6), Secret: sim.RandomString(16), Expires: time.Now().Add(24 * time.Hour)}
	if err := c.Do(ctx, http.MethodPost, "/standin/tokens", tok, nil); err != nil {
		return fmt.Errorf("error execution phase bootstrap-token: %w", err)
	}
	fmt.Printf("[bootstrap-token] Using token: %s.%s\n", tok.ID, tok.Secret)
	hash, _ := sim.CAHash(ca.CertPEM)
	fmt.Printf(`[addons] Applied essential addon: CoreDNS
[addons] Applied essential addon: kube-proxy

Your Kubernetes control-plane has initialized successfully! %s

To start using your cluster, you need to run the following as a regular user:

  mkdir -p $HOME/.kube
  sudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config
  sudo chown $(id -u):$(id -g) $HOME/.kube/config

You should now deploy a pod network to the cluster.
`, sim.StandinTag)
	if certKey != "" {
		fmt.Printf(`
You can now join any number of control-plane nodes running the following command on each as root:

  kubeadm join %s --token %s.%s \
	--discovery-token-ca-cert-hash %s \
	--control-plane --certificate-key %s
`, endpoint, tok.ID, tok.Secret, hash, certKey)
	}
	fmt.Printf(`
Then you can join any number of worker nodes by running the following on each as root:

kubeadm join %s --token %s.%s \
	--discovery-token-ca-cert-hash %s 
`, endpoint, tok.ID, tok.Secret, hash)
	return nil
}

// adminClient returns a client for the cluster of a kubeconfig (default admin.conf).
func adminClient(path string) (*sim.Client, *sim.Kubeconfig, error) {
	if path == "" {
		path = sim.AdminConf
	}
	kc, err := sim.LoadKubeconfig(path)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to load admin kubeconfig: %w", err)
	}
	return sim.NewClient(kc.Server, sim.TLSConfig(kc.CAPEM, kc.CertPEM, kc.KeyPEM), 10*time.Second), kc, nil
}

func uploadCerts(ctx context.Context, args []string) error {
	f, err := parseFlags(args, map[string]bool{"upload-certs": true, "certificate-key": false, "config": false, "skip-certificate-key-print": true})
	if err != nil {
		return err
	}
	if !f.has("upload-certs") {
		fmt.Println("[upload-certs] Skipping phase. Please see --upload-certs")
		return nil
	}
	if _, err := os.Stat(sim.PKIDir + "/ca.key"); err != nil {
		return exitError{1, "error execution phase upload-certs: error uploading certs: failed to load certificate authority from /etc/kubernetes/pki: open /etc/kubernetes/pki/ca.key: no such file or directory"}
	}
	c, _, err := adminClient(f.get("kubeconfig"))
	if err != nil {
		return err
	}
	key := f.get("certificate-key")
	if key == "" {
		key = sim.RandomHex(32)
	}
	if err := c.Do(ctx, http.MethodPut, "/standin/certkey", sim.Entry{Value: key, Expires: time.Now().Add(2 * time.Hour)}, nil); err != nil {
		return fmt.Errorf("error execution phase upload-certs: error uploading certs: %w", err)
	}
	fmt.Println(`[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace`)
	if !f.has("skip-certificate-key-print") {
		fmt.Println("[upload-certs] Using certificate key:")
		fmt.Println(key)
	}
	return nil
}

func tokenCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("stand-in kubeadm token: want create|list|delete")
	}
	f, err := parseFlags(args[1:], map[string]bool{"print-join-command": true, "ttl": false, "certificate-key": false,
		"description": false, "usages": false, "groups": false, "config": false, "o": false, "output": false})
	if err != nil {
		return err
	}
	c, kc, err := adminClient(f.get("kubeconfig"))
	if err != nil {
		return err
	}
	switch args[0] {
	case "create":
		ttl := 24 * time.Hour
		if v := f.get("ttl"); v != "" {
			if ttl, err = time.ParseDuration(v); err != nil {
				return fmt.Errorf("invalid argument %q for \"--ttl\" flag: %w", v, err)
			}
		}
		tok := sim.Token{ID: sim.RandomString(6), Secret: sim.RandomString(16), Expires: time.Now().Add(ttl)}
		if len(f.pos) > 0 {
			id, sec, ok := strings.Cut(f.pos[0], ".")
			if !ok || len(id) != 6 || len(sec) != 16 {
				return fmt.Errorf("the bootstrap token %q was not of the form %q", f.pos[0], `\A([a-z0-9]{6})\.([a-z0-9]{16})\z`)
			}
			tok.ID, tok.Secret = id, sec
		}
		if ttl == 0 {
			tok.Expires = time.Now().Add(100 * 365 * 24 * time.Hour)
		}
		if err := c.Do(ctx, http.MethodPost, "/standin/tokens", tok, nil); err != nil {
			return fmt.Errorf("failed to create or update bootstrap token with name bootstrap-token-%s: %w", tok.ID, err)
		}
		if !f.has("print-join-command") {
			fmt.Printf("%s.%s\n", tok.ID, tok.Secret)
			return nil
		}
		hash, err := sim.CAHash(kc.CAPEM)
		if err != nil {
			return fmt.Errorf("failed to load CA from kubeconfig: %w", err)
		}
		cmd := fmt.Sprintf("kubeadm join %s --token %s.%s --discovery-token-ca-cert-hash %s ", strings.TrimPrefix(kc.Server, "https://"), tok.ID, tok.Secret, hash)
		if k := f.get("certificate-key"); k != "" {
			cmd += "--control-plane --certificate-key " + k
		}
		fmt.Println(cmd)
		return nil
	case "list":
		var toks []sim.Token
		if err := c.Do(ctx, http.MethodGet, "/standin/tokens", nil, &toks); err != nil {
			return fmt.Errorf("failed to list bootstrap tokens: %w", err)
		}
		fmt.Println("TOKEN                     TTL         EXPIRES                USAGES                   DESCRIPTION   EXTRA GROUPS")
		for _, t := range toks {
			fmt.Printf("%s.<redacted>   %-11s %-22s authentication,signing   <none>        system:bootstrappers:kubeadm:default-node-token\n",
				t.ID, time.Until(t.Expires).Round(time.Hour).String(), t.Expires.UTC().Format(time.RFC3339))
		}
		return nil
	case "delete":
		for _, id := range f.pos {
			id, _, _ = strings.Cut(id, ".")
			if err := c.Do(ctx, http.MethodPost, "/standin/tokens", sim.Token{ID: id, Deleted: true}, nil); err != nil {
				return err
			}
			fmt.Printf("bootstrap token %q deleted\n", id)
		}
		return nil
	}
	return fmt.Errorf("unknown command %q for \"kubeadm token\"", args[0])
}

func joinCmd(ctx context.Context, args []string) error {
	f, err := parseFlags(args, map[string]bool{"token": false, "discovery-token-ca-cert-hash": false,
		"discovery-token-unsafe-skip-ca-verification": true, "control-plane": true, "certificate-key": false,
		"apiserver-advertise-address": false, "apiserver-bind-port": false, "node-name": false, "cri-socket": false,
		"ignore-preflight-errors": false, "config": false, "discovery-token": false, "tls-bootstrap-token": false, "skip-phases": false, "dry-run": true})
	if err != nil {
		return err
	}
	cfg := &kubeadmConfig{}
	if p := f.get("config"); p != "" {
		// Like the real kubeadm: a config file excludes the flags it can hold.
		var mixed []string
		for _, n := range []string{"token", "discovery-token", "discovery-token-ca-cert-hash", "discovery-token-unsafe-skip-ca-verification", "tls-bootstrap-token",
			"control-plane", "certificate-key", "apiserver-advertise-address", "apiserver-bind-port", "node-name", "cri-socket"} {
			if _, ok := f.vals[n]; ok {
				mixed = append(mixed, n)
			}
		}
		if len(mixed) > 0 || len(f.pos) > 0 {
			return exitError{1, fmt.Sprintf("can not mix '--config' with arguments %v", append(mixed, f.pos...))}
		}
		if cfg, err = readConfig(p); err != nil {
			return err
		}
	}
	endpoint := cfg.JoinEndpoint
	if len(f.pos) > 0 {
		endpoint = f.pos[0]
	}
	token := cfg.Token
	for _, n := range []string{"token", "discovery-token"} {
		if v := f.get(n); v != "" {
			token = v
		}
	}
	hashes := cfg.CAHashes
	if v := f.get("discovery-token-ca-cert-hash"); v != "" {
		hashes = []string{v}
	}
	controlPlane := cfg.ControlPlane || f.has("control-plane")
	certKey := cfg.CertificateKey
	if v := f.get("certificate-key"); v != "" {
		certKey = v
	}
	advertise := cfg.AdvertiseAddress
	if v := f.get("apiserver-advertise-address"); v != "" {
		advertise = v
	}
	nodeName := cfg.NodeName
	if v := f.get("node-name"); v != "" {
		nodeName = v
	}
	if nodeName == "" {
		nodeName = hostname()
	}
	if endpoint == "" {
		return exitError{1, "discovery: Invalid value: \"\": bootstrapToken or file must be set"}
	}
	if token == "" {
		return exitError{1, "discovery.bootstrapToken: Invalid value: \"\": using token-based discovery without caCertHashes can be unsafe. Set unsafeSkipCAVerification as true in your kubeadm config file or pass --discovery-token-unsafe-skip-ca-verification flag to continue"}
	}
	if len(hashes) == 0 && !f.has("discovery-token-unsafe-skip-ca-verification") {
		return exitError{1, "discovery.bootstrapToken: Invalid value: \"\": using token-based discovery without caCertHashes can be unsafe. Set unsafeSkipCAVerification as true in your kubeadm config file or pass --discovery-token-unsafe-skip-ca-verification flag to continue"}
	}
	if controlPlane && certKey == "" {
		return exitError{1, "error execution phase control-plane-prepare/download-certs: --certificate-key is required to download the certificates (or copy them by hand)"}
	}
	if controlPlane && advertise == "" {
		a, err := defaultRouteAddr()
		if err != nil {
			return exitError{1, "error execution phase preflight: " + err.Error() + "\nTo see the stack trace of this error execute with --v=5 or higher"}
		}
		advertise = a
	}
	mode := failOnce("join")
	if mode == "preflight" {
		return exitError{1, "error execution phase preflight: couldn't validate the identity of the API Server: Get \"https://" + endpoint + "/api/v1/namespaces/kube-public/configmaps/cluster-info?timeout=10s\": net/http: request canceled while waiting for connection (Client.Timeout exceeded while awaiting headers) [failure injected by " + sim.FailOnceDir + "/join]"}
	}
	checks := commonChecks(f.get("cri-socket"))
	fileAvailable(checks, sim.KubeletConf, sim.PKIDir+"/ca.crt")
	if controlPlane {
		fileAvailable(checks, sim.APIManifest)
		portFree(checks, 6443)
	}
	if err := preflight(checks, f.get("ignore-preflight-errors")); err != nil {
		return err
	}
	// Discovery: fetch cluster-info without trusting the server, then pin its CA.
	fmt.Printf("[preflight] Reading configuration from the %q ConfigMap in the cluster...\n", "kubeadm-config")
	c := sim.NewClient("https://"+endpoint, sim.TLSConfig(nil, nil, nil), 10*time.Second)
	var ci sim.ClusterInfo
	if err := c.Do(ctx, http.MethodGet, "/standin/cluster-info", nil, &ci); err != nil {
		return exitError{1, fmt.Sprintf("error execution phase preflight: couldn't validate the identity of the API Server: Get \"https://%s/api/v1/namespaces/kube-public/configmaps/cluster-info?timeout=10s\": %v", endpoint, err)}
	}
	got, err := sim.CAHash([]byte(ci.CACert))
	if err != nil {
		return exitError{1, "error execution phase preflight: cluster-info has no valid CA: " + err.Error()}
	}
	if len(hashes) > 0 {
		ok := false
		for _, h := range hashes {
			if strings.EqualFold(h, got) {
				ok = true
			}
		}
		if !ok {
			return exitError{1, fmt.Sprintf("error execution phase preflight: couldn't validate the identity of the API Server: cluster CA found in cluster-info ConfigMap is invalid: none of the public keys %q are pinned", got)}
		}
	}
	id, secret, _ := strings.Cut(token, ".")
	c = sim.NewClient("https://"+endpoint, sim.TLSConfig([]byte(ci.CACert), nil, nil), 10*time.Second)
	if err := c.Do(ctx, http.MethodPost, "/standin/tokens/validate", sim.Token{ID: id, Secret: secret}, nil); err != nil {
		return exitError{1, fmt.Sprintf("error execution phase preflight: couldn't validate the identity of the API Server: could not find a JWS signature in the cluster-info ConfigMap for token ID %q", id)}
	}
	for _, n := range ci.Nodes {
		if n.Name == nodeName && n.Ready {
			return exitError{1, fmt.Sprintf("error execution phase kubelet-start: a Node with name %q and status \"Ready\" already exists in the cluster. You must delete the existing Node or change the name of this new joining Node", nodeName)}
		}
	}
	var ca *sim.CA
	nodeAddr := advertise
	if controlPlane {
		if ci.Endpoint == "" {
			return exitError{1, "error execution phase preflight: \nOne or more conditions for hosting a new control plane instance is not satisfied.\n\nunable to add a new control plane instance to a cluster that doesn't have a stable controlPlaneEndpoint address\n\nPlease ensure that:\n* The cluster has a stable controlPlaneEndpoint address."}
		}
		fmt.Println("[download-certs] Downloading the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace")
		var certs map[string]string
		if err := c.Do(ctx, http.MethodPost, "/standin/certs", sim.Entry{Value: certKey}, &certs); err != nil {
			var se *sim.StatusError
			if errors.As(err, &se) {
				return exitError{1, "error execution phase control-plane-prepare/download-certs: error downloading certs: error downloading the secret: " + strings.TrimSpace(se.Body)}
			}
			return exitError{1, "error execution phase control-plane-prepare/download-certs: error downloading certs: " + err.Error()}
		}
		if ca, err = sim.ParseCA([]byte(certs["caCert"]), []byte(certs["caKey"])); err != nil {
			return exitError{1, "error execution phase control-plane-prepare/download-certs: error decoding certs: " + err.Error()}
		}
		if err := writeControlPlane(ca, ci.ClusterName, endpoint, advertise, nodeName, ci.Peers); err != nil {
			return fmt.Errorf("error execution phase control-plane-prepare: %w", err)
		}
	} else if nodeAddr == "" {
		nodeAddr = localAddrTowards(endpoint)
	}
	role := "worker"
	if controlPlane {
		role = "control-plane"
	}
	ns := sim.NodeState{Name: nodeName, Role: role, Address: nodeAddr, Endpoint: endpoint}
	if err := writeKubelet(ca, []byte(ci.CACert), ci.ClusterName, endpoint, ns); err != nil {
		return fmt.Errorf("error execution phase kubelet-start: %w", err)
	}
	if err := restartKubelet(); err != nil {
		return err
	}
	fmt.Println("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap")
	if mode == "after-kubelet-start" {
		return exitError{1, "error execution phase kubelet-start: timed out waiting for the condition [failure injected by " + sim.FailOnceDir + "/join]"}
	}
	reg := c
	if controlPlane {
		if err := addEtcdMember(ctx, c, nodeName, advertise); err != nil {
			return err
		}
		if mode == "after-etcd-member-add" {
			return exitError{1, "error execution phase control-plane-join/etcd: killed after the etcd member was added, before the node registered [failure injected by " + sim.FailOnceDir + "/join]"}
		}
		local := "https://" + net.JoinHostPort(advertise, "6443")
		if err := waitReady(ctx, local, waitTimeout); err != nil {
			return err
		}
		reg = sim.NewClient(local, sim.TLSConfig([]byte(ci.CACert), nil, nil), 10*time.Second)
	}
	if err := reg.Do(ctx, http.MethodPost, "/standin/nodes", sim.Node{Name: nodeName, Role: role, Address: nodeAddr}, nil); err != nil {
		return fmt.Errorf("error execution phase kubelet-start: register node %s: %w", nodeName, err)
	}
	if controlPlane {
		fmt.Printf(`[etcd] Announced new etcd member joining to the existing etcd cluster
[mark-control-plane] Marking the node %s as control-plane

This node has joined the cluster and a new control plane instance was created: %s

* Certificate signing request was sent to apiserver and approval was received.
* The Kubelet was informed of the new secure connection details.
* Control plane label and taint were applied to the new node.
* The Kubernetes control plane instances scaled up.
* A new etcd member was added to the local/stacked etcd cluster.

To start administering your cluster from this node, you need to run the following as a regular user:

	mkdir -p $HOME/.kube
	sudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config
	sudo chown $(id -u):$(id -g) $HOME/.kube/config

Run 'kubectl get nodes' to see this node join the cluster.
`, nodeName, sim.StandinTag)
	} else {
		fmt.Printf(`
This node has joined the cluster: %s
* Certificate signing request was sent to apiserver and a response was received.
* The Kubelet was informed of the new secure connection details.

Run 'kubectl get nodes' on the control-plane to see this node join the cluster.
`, sim.StandinTag)
	}
	return nil
}

// addEtcdMember announces this master's etcd member (stand-in: no etcd runs; the member is
// recorded in the cluster state). Like etcd, a second member with the same peer URL is refused.
func addEtcdMember(ctx context.Context, c *sim.Client, name, address string) error {
	fmt.Println("[etcd] Announced new etcd member joining to the existing etcd cluster")
	m := sim.Member{Name: name, PeerURL: "https://" + net.JoinHostPort(address, "2380"), ClientURL: "https://" + net.JoinHostPort(address, "2379")}
	if err := c.Do(ctx, http.MethodPost, "/standin/etcd/members", m, nil); err != nil {
		var se *sim.StatusError
		if errors.As(err, &se) {
			return exitError{1, "error execution phase control-plane-join/etcd: error creating local etcd static pod manifest file: " + strings.TrimSpace(se.Body) + "\nTo see the stack trace of this error execute with --v=5 or higher"}
		}
		return exitError{1, "error execution phase control-plane-join/etcd: " + err.Error()}
	}
	return nil
}

// removeOwnEtcdMember is kubeadm reset's remove-etcd-member phase: through the cluster, the
// member named after this node is removed; a failure is only a warning, as in the real kubeadm.
func removeOwnEtcdMember(ctx context.Context, c *sim.Client, name string) {
	var ms []sim.Member
	if err := c.Do(ctx, http.MethodGet, "/standin/etcd/members", nil, &ms); err != nil {
		fmt.Fprintf(os.Stderr, "W1126 [reset] Failed to remove etcd member: %v, please manually remove this etcd member using etcdctl\n", err)
		return
	}
	for _, m := range ms {
		if m.Name == name {
			if err := c.Do(ctx, http.MethodDelete, "/standin/etcd/members/"+m.ID, nil, nil); err != nil {
				fmt.Fprintf(os.Stderr, "W1126 [reset] Failed to remove etcd member: %v, please manually remove this etcd member using etcdctl\n", err)
				return
			}
			fmt.Println("[reset] Removing the etcd member of this node")
		}
	}
}

// localAddrTowards returns the local address used to reach endpoint.
func localAddrTowards(endpoint string) string {
	conn, err := net.DialTimeout("udp", endpoint, time.Second)
	if err != nil {
		return ""
	}
	defer conn.Close()
	host, _, _ := net.SplitHostPort(conn.LocalAddr().String())
	return host
}

func resetCmd(ctx context.Context, args []string) error {
	f, err := parseFlags(args, map[string]bool{"force": true, "f": true, "cri-socket": false, "cleanup-tmp-dir": true,
		"ignore-preflight-errors": false, "cert-dir": false, "dry-run": true, "skip-phases": false, "config": false})
	if err != nil {
		return err
	}
	// "etcd-member-remove": the reset goes on but cannot remove the node's etcd member (the
	// real kubeadm only warns then, e.g. when the cluster is unreachable).
	resetMode := failOnce("reset")
	if resetMode != "" && resetMode != "etcd-member-remove" {
		return exitError{1, "error execution phase preflight: failure injected by " + sim.FailOnceDir + "/reset"}
	}
	fmt.Println("[reset] Reading configuration from the \"kubeadm-config\" ConfigMap in the cluster...")
	fmt.Println("[reset] WARNING: Changes made to this host by 'kubeadm init' or 'kubeadm join' will be reverted.")
	if !f.has("force") && !f.has("f") {
		fmt.Print("[reset] Are you sure you want to proceed? [y/N]: ")
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return exitError{1, "error execution phase preflight: won't proceed; the user didn't answer (Y|y) in order to continue"}
		}
	}
	fmt.Println("[preflight] Running pre-flight checks")
	// Stand-in simplification: the node leaves the cluster (a real reset removes only the
	// etcd member and leaves the Node object).
	if ns, err := sim.ReadNodeState(); err == nil {
		for _, kcPath := range []string{sim.KubeletConf, sim.AdminConf} {
			kc, err := sim.LoadKubeconfig(kcPath)
			if err != nil {
				continue
			}
			c := sim.NewClient(kc.Server, sim.TLSConfig(kc.CAPEM, kc.CertPEM, kc.KeyPEM), 3*time.Second)
			cctx, cancel := context.WithTimeout(ctx, 4*time.Second)
			err = c.Do(cctx, http.MethodDelete, "/api/v1/nodes/"+ns.Name, nil, nil)
			if err == nil || isNotFound(err) {
				if _, serr := os.Stat(sim.ManifestsDir + "/etcd.yaml"); serr == nil {
					if resetMode == "etcd-member-remove" {
						fmt.Fprintf(os.Stderr, "W1126 [reset] Failed to remove etcd member: context deadline exceeded [failure injected by %s/reset], please manually remove this etcd member using etcdctl\n", sim.FailOnceDir)
					} else {
						removeOwnEtcdMember(cctx, c, ns.Name)
					}
				}
				cancel()
				break
			}
			cancel()
			fmt.Fprintf(os.Stderr, "W1126 [reset] Unable to remove node %s from the cluster: %v\n", ns.Name, err)
		}
	}
	fmt.Println("[reset] Stopping the kubelet service")
	_ = exec.Command("systemctl", "stop", "kubelet").Run()
	fmt.Println("[reset] Deleted contents of the etcd data directory: /var/lib/etcd")
	removeContents(sim.EtcdDir)
	fmt.Printf("[reset] Deleting contents of directories: [%s %s %s]\n", sim.ManifestsDir, sim.KubeletDir, sim.PKIDir)
	removeContents(sim.ManifestsDir)
	removeContents(sim.KubeletDir)
	removeContents(sim.PKIDir)
	files := []string{sim.AdminConf, sim.SuperConf, sim.KubeletConf, sim.KubeDir + "/bootstrap-kubelet.conf", sim.KubeDir + "/controller-manager.conf", sim.KubeDir + "/scheduler.conf"}
	fmt.Printf("[reset] Deleting files: %v\n", files)
	for _, p := range files {
		_ = os.Remove(p)
	}
	_ = os.Remove(sim.NodeFile)
	fmt.Println(`
The reset process does not perform cleanup of CNI plugin configuration,
network filtering rules and kubeconfig files.

For information on how to perform this cleanup manually, please see:
    https://k8s.io/docs/reference/setup-tools/kubeadm/kubeadm-reset/`)
	return nil
}

func isNotFound(err error) bool {
	var se *sim.StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

func removeContents(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// waitTimeout bounds the wait for a local apiserver (the real kubeadm waits 4 minutes;
// the stand-in apiserver starts in well under a second).
const waitTimeout = time.Minute
