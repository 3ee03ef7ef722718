// Package sim is the shared core of the Kubernetes stand-ins (test/standin/cmd/...): the
// replicated cluster state kept by the stand-in kube-apiserver, its HTTP API, the PKI and
// kubeconfig helpers, and the call log. It is test code: nothing here is a real Kubernetes
// component.
package sim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Version is the Kubernetes version this stand-in binary pretends to be: set at build time
// (go build -ldflags -X .../sim.Version=v1.34.2) so that the lab repository can carry two
// versions of the packages for `bootstrap upgrade`.
var Version = "v1.33.6"

// Minor returns the minor number of a version ("v1.34.2" -> 34; 0 when unreadable).
func Minor(v string) int {
	var major, minor int
	_, _ = fmt.Sscanf(strings.TrimPrefix(v, "v"), "%d.%d", &major, &minor)
	return minor
}

// StandinTag marks --version output so nobody mistakes a stand-in for the real thing.
const StandinTag = "(vipd lab stand-in)"

// NodeGrace is how long a node stays Ready without a kubelet heartbeat (the real
// node-monitor-grace-period).
const NodeGrace = 40 * time.Second

// RolloutDelay is how long after `kubectl apply` a DaemonSet reports rolled out.
const RolloutDelay = 2 * time.Second

// Node is a registered node.
type Node struct {
	Name       string    `json:"name"`
	Role       string    `json:"role"` // control-plane | worker
	Address    string    `json:"address"`
	Registered time.Time `json:"registered"`
	Heartbeat  time.Time `json:"heartbeat"`
	Updated    time.Time `json:"updated"`
	Deleted    bool      `json:"deleted,omitempty"`
	// KubeletVersion is the version the node's kubelet reports with its heartbeat.
	KubeletVersion string `json:"kubeletVersion,omitempty"`
	// Unschedulable is set by kubectl cordon/drain and cleared by kubectl uncordon.
	Unschedulable bool `json:"unschedulable,omitempty"`
}

// Token is a bootstrap token (id.secret).
type Token struct {
	ID      string    `json:"id"`
	Secret  string    `json:"secret"`
	Expires time.Time `json:"expires"`
	Updated time.Time `json:"updated"`
	Deleted bool      `json:"deleted,omitempty"`
}

// Object is an applied object (kubectl apply).
type Object struct {
	Kind      string    `json:"kind"`
	Group     string    `json:"group"`
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Hash      string    `json:"hash"`
	Applied   time.Time `json:"applied"`
	Updated   time.Time `json:"updated"`
}

// Member is an etcd member of the stacked etcd the stand-in models (no etcd runs): kubeadm
// init adds the first master's, a control-plane join adds one (before the node registers,
// so a join killed in between leaves a stale member, kubernetes/kubeadm#2095), kubeadm
// reset and `etcdctl member remove` (through the stand-in kubectl exec) remove one.
type Member struct {
	ID        string    `json:"id"` // hex, like etcdctl prints it
	Name      string    `json:"name"`
	PeerURL   string    `json:"peerURL"`
	ClientURL string    `json:"clientURL"`
	Updated   time.Time `json:"updated"`
	Deleted   bool      `json:"deleted,omitempty"`
}

// Entry is a single last-writer-wins value (the uploaded certificate key).
type Entry struct {
	Value   string    `json:"value"`
	Expires time.Time `json:"expires"`
	Updated time.Time `json:"updated"`
}

// State is the cluster state, replicated between the stand-in apiservers of all masters
// like etcd would: every entry carries its update time and Merge keeps the newest, so any
// master can take writes and a restarted one catches up from its peers.
type State struct {
	Endpoint    string             `json:"endpoint"` // controlPlaneEndpoint host:port
	ClusterName string             `json:"clusterName"`
	PodSubnet   string             `json:"podSubnet"`
	Nodes       map[string]*Node   `json:"nodes"`
	Tokens      map[string]*Token  `json:"tokens"`
	Objects     map[string]*Object `json:"objects"`
	Members     map[string]*Member `json:"members"` // by ID
	CertKey     Entry              `json:"certKey"`
	// KubernetesVersion is the cluster's version (the kubeadm-config ConfigMap's
	// kubernetesVersion): set by kubeadm init, raised by kubeadm upgrade apply, read by
	// kubeadm join and kubeadm upgrade node.
	KubernetesVersion Entry `json:"kubernetesVersion"`
}

// NewState returns an empty state.
func NewState() *State {
	return &State{Nodes: map[string]*Node{}, Tokens: map[string]*Token{}, Objects: map[string]*Object{}, Members: map[string]*Member{}}
}

// LiveMembers returns the etcd members not removed, sorted by name.
func (s *State) LiveMembers() []*Member {
	var out []*Member
	for _, m := range s.Members {
		if !m.Deleted {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Merge folds o into s, keeping the newest version of every entry. It reports whether s changed.
func (s *State) Merge(o *State) bool {
	changed := false
	if s.Endpoint == "" && o.Endpoint != "" {
		s.Endpoint, s.ClusterName, s.PodSubnet = o.Endpoint, o.ClusterName, o.PodSubnet
		changed = true
	}
	for k, v := range o.Nodes {
		if cur, ok := s.Nodes[k]; !ok || v.Updated.After(cur.Updated) {
			c := *v
			s.Nodes[k] = &c
			changed = true
		}
	}
	for k, v := range o.Tokens {
		if cur, ok := s.Tokens[k]; !ok || v.Updated.After(cur.Updated) {
			c := *v
			s.Tokens[k] = &c
			changed = true
		}
	}
	for k, v := range o.Objects {
		if cur, ok := s.Objects[k]; !ok || v.Updated.After(cur.Updated) {
			c := *v
			s.Objects[k] = &c
			changed = true
		}
	}
	for k, v := range o.Members {
		if cur, ok := s.Members[k]; !ok || v.Updated.After(cur.Updated) {
			c := *v
			s.Members[k] = &c
			changed = true
		}
	}
	if o.KubernetesVersion.Updated.After(s.KubernetesVersion.Updated) {
		s.KubernetesVersion = o.KubernetesVersion
		changed = true
	}
	if o.CertKey.Updated.After(s.CertKey.Updated) {
		s.CertKey = o.CertKey
		changed = true
	}
	return changed
}

// NodeReady reports the Ready condition: a recent kubelet heartbeat and a CNI applied
// (a real node stays NotReady until its network plugin runs).
func (s *State) NodeReady(n *Node, now time.Time) bool {
	return s.CNIApplied() && now.Sub(n.Heartbeat) < NodeGrace
}

// CNIApplied reports whether a calico-node DaemonSet was applied.
func (s *State) CNIApplied() bool {
	o, ok := s.Objects[ObjectKey("DaemonSet", "kube-system", "calico-node")]
	return ok && !o.Applied.IsZero()
}

// LiveNodes returns the registered nodes, sorted by name.
func (s *State) LiveNodes() []*Node {
	var out []*Node
	for _, n := range s.Nodes {
		if !n.Deleted {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Peers returns the addresses of the control-plane nodes.
func (s *State) Peers() []string {
	var out []string
	for _, n := range s.LiveNodes() {
		if n.Role == "control-plane" && n.Address != "" {
			out = append(out, n.Address)
		}
	}
	return out
}

// ObjectKey names an applied object.
func ObjectKey(kind, ns, name string) string { return kind + "/" + ns + "/" + name }

// Store is a State persisted in a file (the stand-in's "etcd data dir").
type Store struct {
	mu    sync.Mutex
	path  string
	state *State
}

// OpenStore loads the state from path, or starts empty.
func OpenStore(path string) (*Store, error) {
	st := &Store{path: path, state: NewState()}
	b, err := os.ReadFile(path)
	if err == nil {
		if err := json.Unmarshal(b, st.state); err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		if st.state.Nodes == nil {
			st.state.Nodes = map[string]*Node{}
		}
		if st.state.Tokens == nil {
			st.state.Tokens = map[string]*Token{}
		}
		if st.state.Objects == nil {
			st.state.Objects = map[string]*Object{}
		}
		if st.state.Members == nil {
			st.state.Members = map[string]*Member{}
		}
	} else if !os.IsNotExist(err) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return st, nil
}

// View runs fn with the state locked for reading.
func (st *Store) View(fn func(*State)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	fn(st.state)
}

// Update runs fn with the state locked and persists it if fn returns true.
func (st *Store) Update(fn func(*State) bool) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !fn(st.state) {
		return nil
	}
	return st.saveLocked()
}

// Snapshot returns a deep copy of the state.
func (st *Store) Snapshot() *State {
	st.mu.Lock()
	defer st.mu.Unlock()
	b, _ := json.Marshal(st.state)
	s := NewState()
	_ = json.Unmarshal(b, s)
	return s
}

func (st *Store) saveLocked() error {
	b, err := json.Marshal(st.state)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return WriteFileAtomic(st.path, b, 0o600)
}

// WriteFileAtomic writes data to a temporary file next to path and renames it into place.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create dir for %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}
