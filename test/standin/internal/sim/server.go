package sim

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Server is the stand-in kube-apiserver: a TLS HTTP API over a replicated Store.
type Server struct {
	Store  *Store
	Self   string   // this master's address (excluded from its peers)
	Peers  []string // peers known at start (more come from the node list)
	CACert string   // path of ca.crt (served in cluster-info)
	CAKey  string   // path of ca.key (handed to joining masters with the certificate key)
	// Version is the version this apiserver reports (its static pod manifest's, which
	// kubeadm upgrade rewrites).
	Version string
	Log     *slog.Logger

	synced  atomic.Bool
	started time.Time
	peerC   *http.Client
}

// Handler returns the HTTP API.
func (s *Server) Handler() http.Handler {
	s.started = time.Now()
	s.peerC = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
	m := http.NewServeMux()
	ok := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }
	m.HandleFunc("GET /healthz", ok)
	m.HandleFunc("GET /livez", ok)
	m.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !s.synced.Load() {
			http.Error(w, "[-]etcd failed: reason withheld (stand-in: not synced with its peers yet)\nreadyz check failed", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})
	m.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		host, _ := os.Hostname()
		writeJSON(w, map[string]any{"major": "1", "minor": fmt.Sprint(Minor(s.Version)), "gitVersion": s.Version, "platform": "linux/amd64",
			"standin": "vipd lab stand-in kube-apiserver", "host": host})
	})
	m.HandleFunc("GET /api/v1/nodes", s.listNodes)
	m.HandleFunc("GET /api/v1/nodes/{name}", func(w http.ResponseWriter, r *http.Request) {
		var out any
		s.Store.View(func(st *State) {
			if n, ok := st.Nodes[r.PathValue("name")]; ok && !n.Deleted {
				out = nodeJSON(st, n, time.Now())
			}
		})
		if out == nil {
			notFound(w, "nodes", r.PathValue("name"))
			return
		}
		writeJSON(w, out)
	})
	m.HandleFunc("DELETE /api/v1/nodes/{name}", func(w http.ResponseWriter, r *http.Request) {
		found := false
		s.write(func(st *State) bool {
			if n, ok := st.Nodes[r.PathValue("name")]; ok && !n.Deleted {
				n.Deleted, n.Updated, found = true, time.Now(), true
				return true
			}
			return false
		})
		if !found {
			notFound(w, "nodes", r.PathValue("name"))
			return
		}
		writeJSON(w, map[string]string{"status": "Success"})
	})
	m.HandleFunc("GET /api/v1/namespaces/{ns}/pods", s.listPods)
	m.HandleFunc("GET /standin/etcd/members", func(w http.ResponseWriter, r *http.Request) {
		var out []Member
		s.Store.View(func(st *State) {
			for _, m := range st.LiveMembers() {
				out = append(out, *m)
			}
		})
		writeJSON(w, out)
	})
	m.HandleFunc("POST /standin/etcd/members", func(w http.ResponseWriter, r *http.Request) {
		var in Member
		if !readJSON(w, r, &in) {
			return
		}
		dup := false
		s.write(func(st *State) bool {
			for _, m := range st.LiveMembers() {
				if m.PeerURL == in.PeerURL {
					dup = true
					return false
				}
			}
			in.ID, in.Updated = RandomHex(8), time.Now()
			st.Members[in.ID] = &in
			return true
		})
		if dup {
			http.Error(w, "etcdserver: Peer URLs already exists", http.StatusConflict)
			return
		}
		writeJSON(w, in)
	})
	m.HandleFunc("DELETE /standin/etcd/members/{id}", func(w http.ResponseWriter, r *http.Request) {
		found := false
		s.write(func(st *State) bool {
			if m, ok := st.Members[r.PathValue("id")]; ok && !m.Deleted {
				m.Deleted, m.Updated, found = true, time.Now(), true
				return true
			}
			return false
		})
		if !found {
			http.Error(w, fmt.Sprintf("etcdserver: member not found (%s)", r.PathValue("id")), http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]string{"status": "Success"})
	})
	m.HandleFunc("GET /standin/cluster-info", func(w http.ResponseWriter, r *http.Request) {
		ca, err := os.ReadFile(s.CACert)
		if err != nil {
			http.Error(w, "cluster-info: "+err.Error(), http.StatusInternalServerError)
			return
		}
		var ci ClusterInfo
		s.Store.View(func(st *State) {
			ci = ClusterInfo{Endpoint: st.Endpoint, ClusterName: st.ClusterName, CACert: string(ca), Peers: st.Peers(), PodSubnet: st.PodSubnet, Version: st.KubernetesVersion.Value}
			for _, n := range st.LiveNodes() {
				ci.Nodes = append(ci.Nodes, NodeInfo{Name: n.Name, Role: n.Role, Ready: st.NodeReady(n, time.Now())})
			}
		})
		writeJSON(w, ci)
	})
	m.HandleFunc("POST /standin/init", func(w http.ResponseWriter, r *http.Request) {
		var in ClusterInfo
		if !readJSON(w, r, &in) {
			return
		}
		s.write(func(st *State) bool {
			if st.Endpoint != "" {
				return false
			}
			st.Endpoint, st.ClusterName, st.PodSubnet = in.Endpoint, in.ClusterName, in.PodSubnet
			st.KubernetesVersion = Entry{Value: in.Version, Updated: time.Now()}
			return true
		})
		writeJSON(w, map[string]string{"status": "Success"})
	})
	m.HandleFunc("POST /standin/nodes", func(w http.ResponseWriter, r *http.Request) {
		var in Node
		if !readJSON(w, r, &in) {
			return
		}
		if in.Name == "" {
			http.Error(w, "node name missing", http.StatusBadRequest)
			return
		}
		now := time.Now()
		s.write(func(st *State) bool {
			st.Nodes[in.Name] = &Node{Name: in.Name, Role: in.Role, Address: in.Address, Registered: now, Heartbeat: now, Updated: now}
			return true
		})
		writeJSON(w, map[string]string{"status": "Success"})
	})
	m.HandleFunc("POST /standin/nodes/{name}/heartbeat", func(w http.ResponseWriter, r *http.Request) {
		found := false
		var in struct {
			KubeletVersion string `json:"kubeletVersion"`
		}
		_ = json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in) // older kubelets send no body
		s.write(func(st *State) bool {
			if n, ok := st.Nodes[r.PathValue("name")]; ok && !n.Deleted {
				n.Heartbeat, n.Updated, found = time.Now(), time.Now(), true
				if in.KubeletVersion != "" {
					n.KubeletVersion = in.KubeletVersion
				}
				return true
			}
			return false
		})
		if !found {
			notFound(w, "nodes", r.PathValue("name"))
			return
		}
		writeJSON(w, map[string]string{"status": "Success"})
	})
	m.HandleFunc("POST /standin/nodes/{name}/unschedulable/{value}", func(w http.ResponseWriter, r *http.Request) {
		found := false
		want := r.PathValue("value") == "true"
		s.write(func(st *State) bool {
			if n, ok := st.Nodes[r.PathValue("name")]; ok && !n.Deleted {
				found = true
				if n.Unschedulable != want {
					n.Unschedulable, n.Updated = want, time.Now()
					return true
				}
			}
			return false
		})
		if !found {
			notFound(w, "nodes", r.PathValue("name"))
			return
		}
		writeJSON(w, map[string]string{"status": "Success"})
	})
	m.HandleFunc("POST /standin/tokens", func(w http.ResponseWriter, r *http.Request) {
		var in Token
		if !readJSON(w, r, &in) {
			return
		}
		s.write(func(st *State) bool {
			in.Updated = time.Now()
			st.Tokens[in.ID] = &in
			return true
		})
		writeJSON(w, map[string]string{"status": "Success"})
	})
	m.HandleFunc("GET /standin/tokens", func(w http.ResponseWriter, r *http.Request) {
		var out []Token
		s.Store.View(func(st *State) {
			for _, t := range st.Tokens {
				if !t.Deleted && time.Now().Before(t.Expires) {
					c := *t
					c.Secret = ""
					out = append(out, c)
				}
			}
		})
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
		writeJSON(w, out)
	})
	m.HandleFunc("POST /standin/tokens/validate", func(w http.ResponseWriter, r *http.Request) {
		var in Token
		if !readJSON(w, r, &in) {
			return
		}
		valid := false
		s.Store.View(func(st *State) {
			t, ok := st.Tokens[in.ID]
			valid = ok && !t.Deleted && t.Secret == in.Secret && time.Now().Before(t.Expires)
		})
		if !valid {
			http.Error(w, fmt.Sprintf("could not find a JWS signature in the cluster-info ConfigMap for token ID %q", in.ID), http.StatusForbidden)
			return
		}
		writeJSON(w, map[string]string{"status": "Success"})
	})
	m.HandleFunc("PUT /standin/version", func(w http.ResponseWriter, r *http.Request) {
		var in Entry
		if !readJSON(w, r, &in) {
			return
		}
		s.write(func(st *State) bool {
			in.Updated = time.Now()
			st.KubernetesVersion = in
			return true
		})
		writeJSON(w, map[string]string{"status": "Success"})
	})
	m.HandleFunc("PUT /standin/certkey", func(w http.ResponseWriter, r *http.Request) {
		var in Entry
		if !readJSON(w, r, &in) {
			return
		}
		s.write(func(st *State) bool {
			in.Updated = time.Now()
			st.CertKey = in
			return true
		})
		writeJSON(w, map[string]string{"status": "Success"})
	})
	m.HandleFunc("POST /standin/certs", func(w http.ResponseWriter, r *http.Request) {
		var in Entry
		if !readJSON(w, r, &in) {
			return
		}
		valid := false
		s.Store.View(func(st *State) {
			valid = st.CertKey.Value != "" && st.CertKey.Value == in.Value && time.Now().Before(st.CertKey.Expires)
		})
		if !valid {
			http.Error(w, `Secret "kubeadm-certs" was not found in the "kube-system" Namespace. This Secret might have expired. Please, run `+"`kubeadm init phase upload-certs --upload-certs`"+` on a control plane to generate a new one`, http.StatusNotFound)
			return
		}
		c, err1 := os.ReadFile(s.CACert)
		k, err2 := os.ReadFile(s.CAKey)
		if err1 != nil || err2 != nil {
			http.Error(w, "read CA", http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]string{"caCert": string(c), "caKey": string(k)})
	})
	m.HandleFunc("POST /standin/apply", func(w http.ResponseWriter, r *http.Request) {
		var in []Object
		if !readJSON(w, r, &in) {
			return
		}
		results := make([]string, len(in))
		now := time.Now()
		s.write(func(st *State) bool {
			for i, o := range in {
				key := ObjectKey(o.Kind, o.Namespace, o.Name)
				cur, ok := st.Objects[key]
				switch {
				case !ok:
					results[i] = "created"
				case cur.Hash == o.Hash:
					results[i] = "unchanged"
					continue
				default:
					results[i] = "configured"
				}
				o.Applied, o.Updated = now, now
				c := o
				st.Objects[key] = &c
			}
			return true
		})
		writeJSON(w, results)
	})
	m.HandleFunc("GET /standin/objects/{kind}/{ns}/{name}", func(w http.ResponseWriter, r *http.Request) {
		var out *ObjectStatus
		s.Store.View(func(st *State) {
			if o, ok := st.Objects[ObjectKey(r.PathValue("kind"), r.PathValue("ns"), r.PathValue("name"))]; ok {
				n := len(st.LiveNodes())
				ready := 0
				if time.Since(o.Applied) >= RolloutDelay {
					ready = n
				}
				out = &ObjectStatus{Object: *o, Desired: n, Ready: ready}
			}
		})
		if out == nil {
			notFound(w, strings.ToLower(r.PathValue("kind"))+"s.apps", r.PathValue("name"))
			return
		}
		writeJSON(w, out)
	})
	m.HandleFunc("GET /standin/state", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.Store.Snapshot())
	})
	m.HandleFunc("POST /standin/state", func(w http.ResponseWriter, r *http.Request) {
		in := NewState()
		if !readJSON(w, r, in) {
			return
		}
		_ = s.Store.Update(func(st *State) bool { return st.Merge(in) })
		writeJSON(w, map[string]string{"status": "Success"})
	})
	return m
}

// ClusterInfo is what a joining node learns before it is trusted (kube-public/cluster-info).
type ClusterInfo struct {
	Endpoint    string     `json:"endpoint"`
	ClusterName string     `json:"clusterName"`
	PodSubnet   string     `json:"podSubnet"`
	Version     string     `json:"version"` // the cluster's Kubernetes version
	CACert      string     `json:"caCert"`
	Peers       []string   `json:"peers"`
	Nodes       []NodeInfo `json:"nodes"`
}

// NodeInfo is a node as cluster-info shows it.
type NodeInfo struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	Ready bool   `json:"ready"`
}

// ObjectStatus is an applied object with its rollout progress.
type ObjectStatus struct {
	Object
	Desired int `json:"desired"`
	Ready   int `json:"ready"`
}

// write applies fn and, when it changed something, persists and pushes to the peers.
func (s *Server) write(fn func(*State) bool) {
	changed := false
	if err := s.Store.Update(func(st *State) bool { changed = fn(st); return changed }); err != nil {
		s.Log.Error("persist state", "err", err)
	}
	if changed {
		s.pushAll()
	}
}

func (s *Server) peers() []string {
	set := map[string]bool{}
	for _, p := range s.Peers {
		set[p] = true
	}
	s.Store.View(func(st *State) {
		for _, p := range st.Peers() {
			set[p] = true
		}
	})
	delete(set, s.Self)
	var out []string
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func (s *Server) pushAll() {
	snap := s.Store.Snapshot()
	b, _ := json.Marshal(snap)
	for _, p := range s.peers() {
		go func(p string) {
			req, _ := http.NewRequest(http.MethodPost, "https://"+net.JoinHostPort(p, "6443")+"/standin/state", strings.NewReader(string(b)))
			resp, err := s.peerC.Do(req)
			if err == nil {
				resp.Body.Close()
			}
		}(p)
	}
}

// Replicate pulls the state from every peer every interval until ctx ends, and marks the
// server synced after the first round that reached a peer (or found none; or after 5 s
// when every peer is down: a whole-cluster restart must not deadlock).
func (s *Server) Replicate(ctx context.Context, interval time.Duration) {
	for {
		peers := s.peers()
		reached := len(peers) == 0
		for _, p := range peers {
			st := NewState()
			c := &Client{Base: "https://" + net.JoinHostPort(p, "6443"), HTTP: s.peerC}
			if err := c.Do(ctx, http.MethodGet, "/standin/state", nil, st); err != nil {
				continue
			}
			reached = true
			changed := false
			_ = s.Store.Update(func(cur *State) bool { changed = cur.Merge(st); return changed })
		}
		if reached || time.Since(s.started) > 5*time.Second {
			if !s.synced.Swap(true) {
				s.Log.Info("state synced with peers", "peers", peers)
				s.pushAll()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	if w2 := r.URL.Query().Get("watch"); w2 == "true" || w2 == "1" {
		s.watchNodes(w, r)
		return
	}
	now := time.Now()
	items := []any{}
	s.Store.View(func(st *State) {
		for _, n := range st.LiveNodes() {
			items = append(items, nodeJSON(st, n, now))
		}
	})
	writeJSON(w, map[string]any{"kind": "NodeList", "apiVersion": "v1", "metadata": map[string]any{}, "items": items})
}

// watchNodes streams node events as newline-delimited JSON, like a real watch: ADDED for
// every node first, then MODIFIED/DELETED on change (and BOOKMARK each second when asked).
func (s *Server) watchNodes(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	bookmarks := r.URL.Query().Get("allowWatchBookmarks") == "true"
	enc := json.NewEncoder(w)
	seen := map[string]string{}
	for {
		now := time.Now()
		var events []map[string]any
		s.Store.View(func(st *State) {
			live := map[string]bool{}
			for _, n := range st.LiveNodes() {
				live[n.Name] = true
				obj := nodeJSON(st, n, now)
				ready := fmt.Sprint(st.NodeReady(n, now))
				prev, had := seen[n.Name]
				switch {
				case !had:
					events = append(events, map[string]any{"type": "ADDED", "object": obj})
				case prev != ready:
					events = append(events, map[string]any{"type": "MODIFIED", "object": obj})
				}
				seen[n.Name] = ready
			}
			for name := range seen {
				if !live[name] {
					delete(seen, name)
					events = append(events, map[string]any{"type": "DELETED", "object": map[string]any{"kind": "Node", "metadata": map[string]any{"name": name}}})
				}
			}
		})
		if len(events) == 0 && bookmarks {
			events = append(events, map[string]any{"type": "BOOKMARK", "object": map[string]any{"kind": "Node", "metadata": map[string]any{"resourceVersion": fmt.Sprint(now.UnixNano())}}})
		}
		for _, e := range events {
			if err := enc.Encode(e); err != nil {
				return
			}
		}
		fl.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (s *Server) listPods(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	items := []any{}
	now := time.Now()
	s.Store.View(func(st *State) {
		for _, n := range st.LiveNodes() {
			if ns == "kube-system" && n.Role == "control-plane" {
				for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
					items = append(items, podJSON(c+"-"+n.Name, ns, n, now.Sub(n.Heartbeat) < NodeGrace))
				}
			}
			if ns == "kube-system" && st.CNIApplied() {
				items = append(items, podJSON("calico-node-"+RandomString(5), ns, n, st.NodeReady(n, now)))
			}
		}
	})
	writeJSON(w, map[string]any{"kind": "PodList", "apiVersion": "v1", "items": items})
}

func podJSON(name, ns string, n *Node, ready bool) map[string]any {
	phase := "Running"
	if !ready {
		phase = "Unknown"
	}
	return map[string]any{"kind": "Pod", "metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{"nodeName": n.Name}, "status": map[string]any{"phase": phase, "startTime": n.Registered.UTC().Format(time.RFC3339)}}
}

func nodeJSON(st *State, n *Node, now time.Time) map[string]any {
	status := "False"
	reason := "KubeletNotReady"
	msg := "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"
	if st.NodeReady(n, now) {
		status, reason, msg = "True", "KubeletReady", "kubelet is posting ready status"
	} else if st.CNIApplied() {
		status, reason, msg = "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."
	}
	labels := map[string]string{"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
	if n.Role == "control-plane" {
		labels["node-role.kubernetes.io/control-plane"] = ""
	}
	return map[string]any{
		"kind": "Node", "apiVersion": "v1",
		"metadata": map[string]any{"name": n.Name, "labels": labels, "creationTimestamp": n.Registered.UTC().Format(time.RFC3339)},
		"spec":     map[string]any{"unschedulable": n.Unschedulable},
		"status": map[string]any{
			"conditions": []any{map[string]any{"type": "Ready", "status": status, "reason": reason, "message": msg,
				"lastHeartbeatTime": n.Heartbeat.UTC().Format(time.RFC3339)}},
			"addresses": []any{map[string]any{"type": "InternalIP", "address": n.Address}, map[string]any{"type": "Hostname", "address": n.Name}},
			"nodeInfo":  map[string]any{"kubeletVersion": n.kubeletVersion(), "containerRuntimeVersion": "containerd://1.6.20", "osImage": "Debian GNU/Linux 12 (bookworm)"},
		},
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<20)).Decode(v); err != nil {
		http.Error(w, "bad request body: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func notFound(w http.ResponseWriter, resource, name string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
		"message": fmt.Sprintf("%s %q not found", resource, name)})
}

func (n *Node) kubeletVersion() string {
	if n.KubeletVersion != "" {
		return n.KubeletVersion
	}
	return Version
}
