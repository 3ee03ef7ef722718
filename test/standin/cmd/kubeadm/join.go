package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/vipd-project/vipd/test/standin/internal/sim"
)

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
		version := ci.Version
		if version == "" {
			version = sim.Version
		}
		if err := writeControlPlane(ca, ci.ClusterName, endpoint, advertise, nodeName, version, ci.Peers); err != nil {
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
