// Command kubeadm is a STAND-IN for the real kubeadm, for the vipd lab only (test/nspawn).
// It accepts the real command lines bootstrap runs (init --config F --upload-certs, init
// phase upload-certs --upload-certs, token create --print-join-command, join ... [--control-
// plane --certificate-key K], reset -f, upgrade plan|apply|node, version, config images list|pull), runs preflight
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
	case sub == "upgrade" && len(args) > 1 && args[1] == "plan":
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
			fmt.Printf(`{"clientVersion":{"major":"1","minor":"%d","gitVersion":%q,"platform":"linux/amd64","standin":"vipd lab stand-in"}}`+"\n", sim.Minor(sim.Version), sim.Version)
		case "":
			fmt.Printf("kubeadm version: &version.Info{Major:\"1\", Minor:\"%d\", GitVersion:%q, Platform:\"linux/amd64\"} %s\n", sim.Minor(sim.Version), sim.Version, sim.StandinTag)
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
	case "upgrade":
		return upgradeCmd(ctx, args[1:])
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

// waitTimeout bounds the wait for a local apiserver (the real kubeadm waits 4 minutes;
// the stand-in apiserver starts in well under a second).
const waitTimeout = time.Minute
