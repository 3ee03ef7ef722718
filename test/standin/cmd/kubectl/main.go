// Command kubectl is a STAND-IN for the real kubectl, for the vipd lab only (test/nspawn).
// It talks to the stand-in kube-apiserver (through --server, $KUBECONFIG, --kubeconfig or
// ~/.kube/config) and supports: get nodes|node NAME [-o wide|json|name], get pods [-n NS|-A],
// get --raw PATH, apply -f FILE|URL|- (objects are recorded; a DaemonSet kube-system/
// calico-node marks the CNI installed), rollout status ds/NAME -n NS [--timeout D],
// wait --for=condition=Ready nodes --all [--timeout D], delete node NAME, cordon|uncordon NODE,
// drain NODE (cordons it: the stand-in runs no pods to evict), cluster-info,
// version. Every call is recorded in /var/log/standin/calls.log.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vipd-project/vipd/test/standin/internal/sim"
	"gopkg.in/yaml.v3"
)

type opts struct {
	kubeconfig, server, namespace, output, timeout, file, forCond string
	all, allNS, insecure, client, noHeaders                       bool
	pos                                                           []string
}

func main() {
	args := os.Args[1:]
	change := len(args) > 0 && (args[0] == "apply" || args[0] == "delete" || args[0] == "create")
	for _, a := range args {
		if a == "apply" || a == "delete" || a == "remove" || a == "cordon" || a == "uncordon" || a == "drain" {
			change = true
		}
	}
	sim.RecordCall("kubectl", change, args)
	if err := run(args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// cliError is a message printed as is, worded like the real kubectl's.
type cliError string

func (e cliError) Error() string { return string(e) }

func parse(args []string) (*opts, error) {
	o := &opts{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		next := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("error: flag needs an argument: %s", a)
			}
			i++
			return args[i], nil
		}
		var err error
		switch name {
		case "--kubeconfig":
			o.kubeconfig, err = next()
		case "--server", "-s":
			o.server, err = next()
		case "-n", "--namespace":
			o.namespace, err = next()
		case "-o", "--output":
			o.output, err = next()
		case "--timeout", "--request-timeout":
			o.timeout, err = next()
		case "-f", "--filename":
			o.file, err = next()
		case "--for":
			o.forCond, err = next()
		case "--raw":
			var p string
			p, err = next()
			o.pos = append(o.pos, "--raw", p)
		case "--all":
			o.all = true
		case "--ignore-daemonsets", "--delete-emptydir-data", "--force":
			// kubectl drain's: the stand-in runs no pods to evict.
		case "-A", "--all-namespaces":
			o.allNS = true
		case "--insecure-skip-tls-verify":
			o.insecure = true
		case "--client":
			o.client = true
		case "--no-headers":
			o.noHeaders = true
		case "--watch", "-w", "--server-side", "--force-conflicts", "--validate", "--context", "--v", "-v":
			if name == "--context" && !hasVal {
				i++
			}
		case "--":
			// The command of `kubectl exec POD -- CMD...`: kept whole.
			o.pos = append(o.pos, args[i:]...)
			i = len(args)
		default:
			if strings.HasPrefix(a, "-") && a != "-" {
				return nil, cliError(fmt.Sprintf("error: unknown flag: %s\nSee 'kubectl --help' for usage.", a))
			}
			o.pos = append(o.pos, a)
		}
		if err != nil {
			return nil, err
		}
	}
	return o, nil
}

func run(args []string) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	if len(o.pos) == 0 {
		fmt.Println("kubectl controls the Kubernetes cluster manager. " + sim.StandinTag)
		return nil
	}
	timeout := 30 * time.Second
	if o.timeout != "" {
		if timeout, err = time.ParseDuration(o.timeout); err != nil {
			return fmt.Errorf("error: invalid --timeout %q: %w", o.timeout, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	if o.pos[0] == "version" && o.client {
		fmt.Printf("Client Version: %s %s\nKustomize Version: v5.6.0\n", sim.Version, sim.StandinTag)
		return nil
	}
	c, server, err := client(o)
	if err != nil {
		return err
	}
	switch o.pos[0] {
	case "version":
		fmt.Printf("Client Version: %s %s\nKustomize Version: v5.6.0\n", sim.Version, sim.StandinTag)
		var v map[string]any
		if err := c.Do(ctx, http.MethodGet, "/version", nil, &v); err != nil {
			return connErr(server, err)
		}
		fmt.Printf("Server Version: %v\n", v["gitVersion"])
		return nil
	case "cluster-info":
		var s string
		if err := c.Do(ctx, http.MethodGet, "/readyz", nil, &s); err != nil {
			return connErr(server, err)
		}
		fmt.Printf("Kubernetes control plane is running at %s\nCoreDNS is running at %s/api/v1/namespaces/kube-system/services/kube-dns:dns/proxy\n\nTo further debug and diagnose cluster problems, use 'kubectl cluster-info dump'.\n", server, server)
		return nil
	case "get":
		return get(ctx, c, server, o)
	case "apply":
		return apply(ctx, c, server, o)
	case "rollout":
		return rollout(ctx, c, server, o, timeout)
	case "wait":
		return wait(ctx, c, server, o, timeout)
	case "exec":
		return execEtcdctl(ctx, c, server, o)
	case "cordon", "uncordon", "drain":
		return cordon(ctx, c, server, o)
	case "delete":
		if len(o.pos) < 3 || (o.pos[1] != "node" && o.pos[1] != "nodes") {
			return fmt.Errorf("stand-in kubectl: only `delete node NAME` is supported")
		}
		for _, n := range o.pos[2:] {
			if err := c.Do(ctx, http.MethodDelete, "/api/v1/nodes/"+n, nil, nil); err != nil {
				return apiErr(server, err)
			}
			fmt.Printf("node %q deleted\n", n)
		}
		return nil
	}
	return fmt.Errorf("error: unknown command %q for \"kubectl\" (stand-in)", o.pos[0])
}

// execEtcdctl is `kubectl -n kube-system exec etcd-NODE -- etcdctl [flags] member list|remove ID`
// against the stand-in's etcd members (no etcd runs; the stand-in models membership only).
// Any other exec is refused.
func execEtcdctl(ctx context.Context, c *sim.Client, server string, o *opts) error {
	if len(o.pos) < 4 || o.pos[2] != "--" || o.pos[3] != "etcdctl" || !strings.HasPrefix(o.pos[1], "etcd-") {
		return fmt.Errorf("stand-in kubectl: only `exec etcd-NODE -- etcdctl ... member list|remove ID` is supported")
	}
	if o.namespace != "kube-system" {
		return cliError(fmt.Sprintf("Error from server (NotFound): pods %q not found", o.pos[1]))
	}
	node := strings.TrimPrefix(o.pos[1], "etcd-")
	var n map[string]any
	if err := c.Do(ctx, http.MethodGet, "/api/v1/nodes/"+node, nil, &n); err != nil {
		return cliError(fmt.Sprintf("Error from server (NotFound): pods %q not found", o.pos[1]))
	}
	var cmd []string // etcdctl's arguments without its flags (--name value, --name=value)
	rest := o.pos[4:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if strings.HasPrefix(a, "-") {
			if !strings.Contains(a, "=") {
				i++
			}
			continue
		}
		cmd = append(cmd, a)
	}
	switch {
	case len(cmd) == 2 && cmd[0] == "member" && cmd[1] == "list":
		var ms []sim.Member
		if err := c.Do(ctx, http.MethodGet, "/standin/etcd/members", nil, &ms); err != nil {
			return apiErr(server, err)
		}
		for _, m := range ms {
			fmt.Printf("%s, started, %s, %s, %s, false\n", m.ID, m.Name, m.PeerURL, m.ClientURL)
		}
		return nil
	case len(cmd) == 3 && cmd[0] == "member" && cmd[1] == "remove":
		if err := c.Do(ctx, http.MethodDelete, "/standin/etcd/members/"+cmd[2], nil, nil); err != nil {
			var se *sim.StatusError
			if errors.As(err, &se) {
				return cliError("Error: " + strings.TrimSpace(se.Body) + "\ncommand terminated with exit code 1")
			}
			return apiErr(server, err)
		}
		fmt.Printf("Member %s removed from cluster %s\n", cmd[2], sim.RandomHex(8))
		return nil
	}
	return fmt.Errorf("stand-in etcdctl: %q not implemented", strings.Join(cmd, " "))
}

func client(o *opts) (*sim.Client, string, error) {
	path := o.kubeconfig
	if path == "" {
		path = os.Getenv("KUBECONFIG")
	}
	if path == "" {
		home, _ := os.UserHomeDir()
		path = filepath.Join(home, ".kube", "config")
	}
	var kc *sim.Kubeconfig
	if k, err := sim.LoadKubeconfig(path); err == nil {
		kc = k
	} else if o.server == "" {
		if errors.Is(err, os.ErrNotExist) {
			return nil, "", cliError("The connection to the server localhost:8080 was refused - did you specify the right host or port?")
		}
		return nil, "", fmt.Errorf("error loading config file %q: %w", path, err)
	}
	if kc == nil {
		kc = &sim.Kubeconfig{}
	}
	if o.server != "" {
		kc.Server = o.server
		if !strings.Contains(kc.Server, "://") {
			kc.Server = "https://" + kc.Server
		}
	}
	ca := kc.CAPEM
	if o.insecure {
		ca = nil
	}
	return sim.NewClient(kc.Server, sim.TLSConfig(ca, kc.CertPEM, kc.KeyPEM), 10*time.Second), kc.Server, nil
}

func connErr(server string, err error) error {
	return cliError(fmt.Sprintf("Unable to connect to the server: %v (server %s)", err, server))
}

func apiErr(server string, err error) error {
	var se *sim.StatusError
	if errors.As(err, &se) {
		var st struct {
			Reason, Message string
		}
		if json.Unmarshal([]byte(se.Body), &st) == nil && st.Message != "" {
			return cliError(fmt.Sprintf("Error from server (%s): %s", st.Reason, st.Message))
		}
		return cliError("Error from server: " + strings.TrimSpace(se.Body))
	}
	return connErr(server, err)
}

type nodeList struct {
	Items []struct {
		Metadata struct {
			Name              string            `json:"name"`
			Labels            map[string]string `json:"labels"`
			CreationTimestamp time.Time         `json:"creationTimestamp"`
		} `json:"metadata"`
		Status struct {
			Conditions []struct {
				Type, Status string
			} `json:"conditions"`
			Addresses []struct{ Type, Address string } `json:"addresses"`
			NodeInfo  struct {
				KubeletVersion string `json:"kubeletVersion"`
			} `json:"nodeInfo"`
		} `json:"status"`
		Spec struct {
			Unschedulable bool `json:"unschedulable"`
		} `json:"spec"`
	} `json:"items"`
}

func get(ctx context.Context, c *sim.Client, server string, o *opts) error {
	if len(o.pos) >= 3 && o.pos[1] == "--raw" {
		var s string
		if err := c.Do(ctx, http.MethodGet, o.pos[2], nil, &s); err != nil {
			return apiErr(server, err)
		}
		fmt.Print(s)
		return nil
	}
	if len(o.pos) < 2 {
		return cliError("error: You must specify the type of resource to get.")
	}
	switch o.pos[1] {
	case "nodes", "node", "no":
		var raw json.RawMessage
		path := "/api/v1/nodes"
		if len(o.pos) > 2 {
			path += "/" + o.pos[2]
		}
		if err := c.Do(ctx, http.MethodGet, path, nil, &raw); err != nil {
			return apiErr(server, err)
		}
		if o.output == "json" {
			fmt.Println(string(raw))
			return nil
		}
		var nl nodeList
		if len(o.pos) > 2 {
			var one struct{ Items []json.RawMessage }
			one.Items = []json.RawMessage{raw}
			b, _ := json.Marshal(one)
			_ = json.Unmarshal(b, &nl)
		} else if err := json.Unmarshal(raw, &nl); err != nil {
			return err
		}
		if len(nl.Items) == 0 {
			fmt.Fprintln(os.Stderr, "No resources found")
			return nil
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 8, 3, ' ', 0)
		if o.output == "name" {
			for _, n := range nl.Items {
				fmt.Printf("node/%s\n", n.Metadata.Name)
			}
			return nil
		}
		hdr := "NAME\tSTATUS\tROLES\tAGE\tVERSION"
		if o.output == "wide" {
			hdr += "\tINTERNAL-IP\tEXTERNAL-IP\tOS-IMAGE\tKERNEL-VERSION\tCONTAINER-RUNTIME"
		}
		if !o.noHeaders {
			fmt.Fprintln(tw, hdr)
		}
		for _, n := range nl.Items {
			status := "NotReady"
			for _, cnd := range n.Status.Conditions {
				if cnd.Type == "Ready" && cnd.Status == "True" {
					status = "Ready"
				}
			}
			if n.Spec.Unschedulable {
				status += ",SchedulingDisabled"
			}
			roles := "<none>"
			if _, ok := n.Metadata.Labels["node-role.kubernetes.io/control-plane"]; ok {
				roles = "control-plane"
			}
			line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s", n.Metadata.Name, status, roles, age(n.Metadata.CreationTimestamp), n.Status.NodeInfo.KubeletVersion)
			if o.output == "wide" {
				ip := "<none>"
				for _, a := range n.Status.Addresses {
					if a.Type == "InternalIP" {
						ip = a.Address
					}
				}
				line += fmt.Sprintf("\t%s\t<none>\tDebian GNU/Linux 12 (bookworm)\tstand-in\tcontainerd://1.6.20", ip)
			}
			fmt.Fprintln(tw, line)
		}
		return tw.Flush()
	case "pods", "pod", "po":
		ns := o.namespace
		if ns == "" || o.allNS {
			ns = "kube-system"
			if !o.allNS && o.namespace == "" {
				ns = "default"
			}
		}
		var pl struct {
			Items []struct {
				Metadata struct{ Name, Namespace string }
				Status   struct{ Phase, StartTime string }
			}
		}
		if err := c.Do(ctx, http.MethodGet, "/api/v1/namespaces/"+ns+"/pods", nil, &pl); err != nil {
			return apiErr(server, err)
		}
		if o.output == "json" {
			b, _ := json.Marshal(pl)
			fmt.Println(string(b))
			return nil
		}
		if len(pl.Items) == 0 {
			fmt.Fprintf(os.Stderr, "No resources found in %s namespace.\n", ns)
			return nil
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 8, 3, ' ', 0)
		if !o.noHeaders {
			fmt.Fprintln(tw, "NAME\tREADY\tSTATUS\tRESTARTS\tAGE")
		}
		for _, p := range pl.Items {
			ready := "1/1"
			if p.Status.Phase != "Running" {
				ready = "0/1"
			}
			t, _ := time.Parse(time.RFC3339, p.Status.StartTime)
			fmt.Fprintf(tw, "%s\t%s\t%s\t0\t%s\n", p.Metadata.Name, ready, p.Status.Phase, age(t))
		}
		return tw.Flush()
	case "ds", "daemonset", "daemonsets":
		if len(o.pos) < 3 {
			return errors.New("stand-in kubectl: get ds NAME")
		}
		ns := o.namespace
		if ns == "" {
			ns = "default"
		}
		var st sim.ObjectStatus
		if err := c.Do(ctx, http.MethodGet, "/standin/objects/DaemonSet/"+ns+"/"+o.pos[2], nil, &st); err != nil {
			return apiErr(server, err)
		}
		if o.output == "name" {
			fmt.Printf("daemonset.apps/%s\n", st.Name)
			return nil
		}
		fmt.Printf("NAME          DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE\n%s   %d   %d   %d   %d   %d\n", st.Name, st.Desired, st.Desired, st.Ready, st.Desired, st.Ready)
		return nil
	}
	return fmt.Errorf("error: the server doesn't have a resource type %q (stand-in)", o.pos[1])
}

func age(t time.Time) string {
	d := time.Since(t)
	switch {
	case t.IsZero():
		return "<unknown>"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return fmt.Sprintf("%dh", int(d.Hours()))
}

func apply(ctx context.Context, c *sim.Client, server string, o *opts) error {
	if o.file == "" {
		return errors.New("error: must specify one of -f and -k")
	}
	var data []byte
	var err error
	switch {
	case o.file == "-":
		data, err = io.ReadAll(os.Stdin)
	case strings.HasPrefix(o.file, "http://") || strings.HasPrefix(o.file, "https://"):
		var resp *http.Response
		if resp, err = http.Get(o.file); err == nil {
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("error: unable to read URL %q, server reported %s, status code=%d", o.file, resp.Status, resp.StatusCode)
			}
			data, err = io.ReadAll(resp.Body)
		}
	default:
		data, err = os.ReadFile(o.file)
	}
	if err != nil {
		return fmt.Errorf("error: the path %q cannot be read: %w", o.file, err)
	}
	var objs []sim.Object
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	for {
		var doc struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Metadata   struct {
				Name      string `yaml:"name"`
				Namespace string `yaml:"namespace"`
			} `yaml:"metadata"`
		}
		var node yaml.Node
		if err := dec.Decode(&node); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("error: error parsing %s: %w", o.file, err)
		}
		if err := node.Decode(&doc); err != nil || doc.Kind == "" {
			continue
		}
		b, _ := yaml.Marshal(&node)
		sum := sha256.Sum256(b)
		group, _, _ := strings.Cut(doc.APIVersion, "/")
		if !strings.Contains(doc.APIVersion, "/") {
			group = ""
		}
		objs = append(objs, sim.Object{Kind: doc.Kind, Group: group, Namespace: doc.Metadata.Namespace, Name: doc.Metadata.Name, Hash: hex.EncodeToString(sum[:8])})
	}
	if len(objs) == 0 {
		return fmt.Errorf("error: no objects passed to apply")
	}
	var results []string
	if err := c.Do(ctx, http.MethodPost, "/standin/apply", objs, &results); err != nil {
		return apiErr(server, err)
	}
	for i, ob := range objs {
		res := ""
		if i < len(results) {
			res = results[i]
		}
		kind := strings.ToLower(ob.Kind)
		if ob.Group != "" {
			kind += "." + ob.Group
		}
		fmt.Printf("%s/%s %s\n", kind, ob.Name, res)
	}
	return nil
}

func rollout(ctx context.Context, c *sim.Client, server string, o *opts, timeout time.Duration) error {
	if len(o.pos) < 3 || o.pos[1] != "status" {
		return errors.New("stand-in kubectl: only `rollout status ds/NAME` is supported")
	}
	kind, name, ok := strings.Cut(o.pos[2], "/")
	if !ok || (kind != "ds" && kind != "daemonset" && kind != "daemonsets") {
		return fmt.Errorf("stand-in kubectl: rollout status supports daemonsets only, got %q", o.pos[2])
	}
	ns := o.namespace
	if ns == "" {
		ns = "default"
	}
	deadline := time.Now().Add(timeout)
	for {
		var st sim.ObjectStatus
		err := c.Do(ctx, http.MethodGet, "/standin/objects/DaemonSet/"+ns+"/"+name, nil, &st)
		if err != nil {
			return apiErr(server, err)
		}
		if st.Ready >= st.Desired && st.Desired > 0 {
			fmt.Printf("daemon set %q successfully rolled out\n", name)
			return nil
		}
		fmt.Printf("Waiting for daemon set %q rollout to finish: %d of %d updated pods are available...\n", name, st.Ready, st.Desired)
		if time.Now().After(deadline) {
			return errors.New("error: timed out waiting for the condition")
		}
		time.Sleep(time.Second)
	}
}

func wait(ctx context.Context, c *sim.Client, server string, o *opts, timeout time.Duration) error {
	if o.forCond != "condition=Ready" || len(o.pos) < 2 || (o.pos[1] != "nodes" && o.pos[1] != "node") {
		return errors.New("stand-in kubectl: only `wait --for=condition=Ready nodes --all` is supported")
	}
	deadline := time.Now().Add(timeout)
	for {
		var nl nodeList
		if err := c.Do(ctx, http.MethodGet, "/api/v1/nodes", nil, &nl); err != nil {
			return apiErr(server, err)
		}
		var notReady []string
		for _, n := range nl.Items {
			if len(o.pos) > 2 && !contains(o.pos[2:], n.Metadata.Name) {
				continue
			}
			ready := false
			for _, cnd := range n.Status.Conditions {
				ready = ready || (cnd.Type == "Ready" && cnd.Status == "True")
			}
			if !ready {
				notReady = append(notReady, n.Metadata.Name)
			}
		}
		if len(notReady) == 0 {
			for _, n := range nl.Items {
				fmt.Printf("node/%s condition met\n", n.Metadata.Name)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("error: timed out waiting for the condition on nodes/%s", notReady[0])
		}
		time.Sleep(time.Second)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// cordon is `kubectl cordon|uncordon|drain NODE`: the node's spec.unschedulable set or
// cleared. drain only cordons (the stand-in runs no pods to evict) and prints what the real
// kubectl prints.
func cordon(ctx context.Context, c *sim.Client, server string, o *opts) error {
	verb := o.pos[0]
	if len(o.pos) != 2 {
		return cliError(fmt.Sprintf("error: USAGE: %s NODE [flags]\nSee 'kubectl %s -h' for help and examples", verb, verb))
	}
	node := o.pos[1]
	if err := c.Do(ctx, http.MethodPost, fmt.Sprintf("/standin/nodes/%s/unschedulable/%v", node, verb != "uncordon"), nil, nil); err != nil {
		return apiErr(server, err)
	}
	switch verb {
	case "uncordon":
		fmt.Printf("node/%s uncordoned\n", node)
	case "cordon":
		fmt.Printf("node/%s cordoned\n", node)
	default:
		fmt.Printf("node/%s cordoned\nnode/%s drained\n", node, node)
	}
	return nil
}
