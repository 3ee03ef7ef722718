package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vipd-project/vipd/test/standin/internal/sim"
)

// writeControlPlane writes the PKI, kubeconfigs and the apiserver manifest of a master.
func writeControlPlane(ca *sim.CA, clusterName, endpoint, advertise, nodeName, version string, peers []string) error {
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
    - --standin-version=%s
    image: registry.k8s.io/kube-apiserver:%s
    name: kube-apiserver
  hostNetwork: true
`, advertise, advertise, sim.StateFile, strings.Join(peers, ","), version, version)
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
		if m := sim.Minor(v); m != sim.Minor(sim.Version) && m != sim.Minor(sim.Version)-1 {
			return exitError{1, fmt.Sprintf("this version of kubeadm only supports deploying clusters with the control plane version >= 1.%d.0. Current version: %s", sim.Minor(sim.Version)-1, v)}
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
	if err := writeControlPlane(ca, cfg.ClusterName, endpoint, cfg.AdvertiseAddress, cfg.NodeName, sim.Version, nil); err != nil {
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
	if err := c.Do(ctx, http.MethodPost, "/standin/init", sim.ClusterInfo{Endpoint: stable, ClusterName: cfg.ClusterName, PodSubnet: cfg.PodSubnet, Version: sim.Version}, nil); err != nil {
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
