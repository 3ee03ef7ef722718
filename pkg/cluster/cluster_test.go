package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vipd-project/vipd/pkg/connreset"
)

// fakeLocal is a NodeState the test edits. If advertsFrom is set, LastAdvertFrom reports an
// advert just received from that address (VRRP flowing).
// Like the VRRP router, it remembers when the last advert from each address was heard after
// they stop.
type fakeLocal struct {
	mu          sync.Mutex
	st          NodeState
	advertsFrom netip.Addr
	lastAdvert  map[netip.Addr]time.Time
}

func (f *fakeLocal) LocalState() NodeState {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	if f.lastAdvert == nil {
		f.lastAdvert = map[netip.Addr]time.Time{}
	}
	if f.advertsFrom.IsValid() {
		f.lastAdvert[f.advertsFrom] = time.Now()
	}
	st.LastAdvertFrom = maps.Clone(f.lastAdvert)
	return st
}

func (f *fakeLocal) set(fn func(*NodeState)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.st)
}

func (f *fakeLocal) hearAdverts(from netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advertsFrom = from
}

func baseState(name string, prio int, addr string) NodeState {
	return NodeState{
		Name: name, Version: "test", VRRPState: "BACKUP", Priority: prio, EffectivePriority: prio,
		VIPs: []string{"10.0.0.100/24"}, VRID: 51, ProtoVersion: 3, AdvertInterval: 200 * time.Millisecond,
		PrimaryAddr: netip.MustParseAddr(addr),
		Backends:    map[string]bool{"10.0.0.1:6443": true, "10.0.0.2:6443": true},
	}
}

// syncBuf is a goroutine-safe log sink.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type hookRec struct {
	mu    sync.Mutex
	calls []bool
}

func (h *hookRec) fn(resign bool, _ string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, resign)
}

func (h *hookRec) get() []bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]bool(nil), h.calls...)
}

type node struct {
	c     *Cluster
	local *fakeLocal
	logs  *syncBuf
	hook  *hookRec
	conns *fakeConns
	reset *fakeResetter
	// announced counts Reannounce calls (gratuitous ARP bursts asked for).
	announced atomic.Int32
}

type fakeConns struct {
	mu sync.Mutex
	cs []Conn
}

func (f *fakeConns) Conns() []Conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Conn(nil), f.cs...)
}

type fakeResetter struct {
	mu    sync.Mutex
	calls [][]Conn
}

func (f *fakeResetter) Reset(_ context.Context, cs []Conn) (connreset.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, append([]Conn(nil), cs...))
	return connreset.Result{Requested: len(cs), Sent: len(cs)}, nil
}

func (f *fakeResetter) get() [][]Conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]Conn(nil), f.calls...)
}

func writeKey(t testing.TB, key []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var testKey = bytes.Repeat([]byte{7}, 32)

type nodeOpt struct {
	bind          string
	peers         []string
	key           []byte
	splitBrain    string
	stateInterval time.Duration // Tuning.StateInterval (0: the default)
}

func startNode(t *testing.T, st NodeState, o nodeOpt) *node {
	t.Helper()
	if o.bind == "" {
		o.bind = "127.0.0.1:0"
	}
	if o.key == nil {
		o.key = testKey
	}
	if o.splitBrain == "" {
		o.splitBrain = SplitBrainNone
	}
	n := &node{local: &fakeLocal{st: st}, logs: &syncBuf{}, hook: &hookRec{}, conns: &fakeConns{}, reset: &fakeResetter{}}
	cfg := Config{Enabled: true, NodeName: st.Name, Bind: o.bind, Peers: o.peers, KeyFile: writeKey(t, o.key),
		SplitBrain: o.splitBrain, ConnReset: true}
	c, err := New(cfg, Deps{
		Local: n.local, Conns: n.conns, Resetter: n.reset, OnSplitBrain: n.hook.fn,
		Reannounce: func(string) { n.announced.Add(1) },
		Logger:     slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Tuning: Tuning{DisagreementHold: 300 * time.Millisecond, PeerLostGrace: 2 * time.Second, MinResign: 500 * time.Millisecond,
			StateInterval: o.stateInterval},
	})
	if err != nil {
		t.Fatalf("New(%s): %v", st.Name, err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("Start(%s): %v", st.Name, err)
	}
	n.c = c
	t.Cleanup(func() { _ = c.Stop() })
	return n
}

// crash stops a node without a graceful leave, like a power loss.
func (n *node) crash() {
	n.c.cancel()
	n.c.wg.Wait()
	_ = n.c.ml.Shutdown()
	n.c.cancel = nil
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s", what, within)
	return 0
}

func (n *node) member(name string) (MemberView, bool) {
	for _, m := range n.c.View().Members {
		if m.Name == name {
			return m, true
		}
	}
	return MemberView{}, false
}

func (n *node) alarm(kind, peer string) (Alarm, bool) {
	for _, a := range n.c.Alarms() {
		if a.Kind == kind && (peer == "" || a.Peer == peer) {
			return a, true
		}
	}
	return Alarm{}, false
}

func pair(t *testing.T, sa, sb NodeState, splitBrain string) (*node, *node) {
	t.Helper()
	a := startNode(t, sa, nodeOpt{splitBrain: splitBrain})
	b := startNode(t, sb, nodeOpt{peers: []string{a.c.Addr()}, splitBrain: splitBrain})
	waitFor(t, 5*time.Second, "a and b see each other alive", func() bool {
		ma, okA := a.member(sb.Name)
		mb, okB := b.member(sa.Name)
		return okA && okB && ma.Alive && mb.Alive
	})
	return a, b
}

func TestMembersSeeEachOtherAndStatePropagates(t *testing.T) {
	a, b := pair(t, baseState("lb1", 100, "10.0.0.11"), baseState("lb2", 90, "10.0.0.12"), "")
	m, _ := b.member("lb1")
	if m.Priority != 100 || m.VRRPState != "BACKUP" || len(m.Backends) != 2 || !m.Backends["10.0.0.1:6443"] {
		t.Fatalf("lb2's view of lb1 = %+v", m)
	}
	// A VRRP transition on lb1 (no explicit Notify: the poll must catch it).
	start := time.Now()
	a.local.set(func(s *NodeState) { s.VRRPState = "MASTER"; s.HoldsVIP = true })
	waitFor(t, 2*time.Second, "lb2 sees lb1 MASTER", func() bool {
		m, _ := b.member("lb1")
		return m.VRRPState == "MASTER" && m.HoldsVIP
	})
	took := time.Since(start)
	t.Logf("state propagation lb1 -> lb2: %s", took)
	if took > time.Second {
		t.Errorf("state took %s to propagate, want < 1s", took)
	}
	if len(b.c.Alarms()) != 0 || len(a.c.Alarms()) != 0 {
		t.Errorf("alarms in a healthy pair: a=%v b=%v", a.c.Alarms(), b.c.Alarms())
	}
	var out bytes.Buffer
	if err := b.c.View().WriteText(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "lb1") || !strings.Contains(out.String(), "MASTER") || !strings.Contains(out.String(), "alarms: none") {
		t.Errorf("status text:\n%s", out.String())
	}
}

func TestSplitBrainResignLower(t *testing.T) {
	sa, sb := baseState("lb1", 100, "10.0.0.11"), baseState("lb2", 90, "10.0.0.12")
	a, b := pair(t, sa, sb, SplitBrainResignLower)
	// VRRP flowing: both hear each other, lb1 MASTER, lb2 BACKUP.
	a.local.hearAdverts(sb.PrimaryAddr)
	b.local.hearAdverts(sa.PrimaryAddr)
	a.local.set(func(s *NodeState) { s.VRRPState = "MASTER" })
	time.Sleep(time.Second)
	if al := append(a.c.Alarms(), b.c.Alarms()...); len(al) != 0 {
		t.Fatalf("alarms while VRRP flows: %v", al)
	}

	// Protocol 112 blocked: lb2 no longer hears lb1 and becomes MASTER too.
	b.local.hearAdverts(netip.Addr{})
	a.local.hearAdverts(netip.Addr{})
	start := time.Now()
	b.local.set(func(s *NodeState) { s.VRRPState = "MASTER" })
	for _, n := range []*node{a, b} {
		waitFor(t, 3*time.Second, n.c.cfg.NodeName+" raises split_brain", func() bool {
			_, ok := n.alarm(AlarmSplitBrain, "")
			return ok
		})
	}
	t.Logf("split brain detected on both after %s", time.Since(start))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("split brain detection took %s, want < 2s", d)
	}
	al, _ := b.alarm(AlarmSplitBrain, "lb1")
	if !strings.Contains(al.Message, "IP protocol 112") {
		t.Errorf("split brain message lacks the cause: %q", al.Message)
	}
	waitFor(t, 2*time.Second, "lb2 resigns", func() bool { return len(b.hook.get()) > 0 })
	if got := b.hook.get(); got[0] != true {
		t.Fatalf("lb2 hook calls = %v, want [true]", got)
	}
	if got := a.hook.get(); len(got) != 0 {
		t.Fatalf("lb1 (higher priority) hook called: %v", got)
	}
	waitFor(t, 2*time.Second, "lb2 raises blocked_vrrp", func() bool {
		_, ok := b.alarm(AlarmBlockedVRRP, "lb1")
		return ok
	})
	bl, _ := b.alarm(AlarmBlockedVRRP, "lb1")
	if !strings.Contains(bl.Message, "protocol 112") || !strings.Contains(bl.Message, "firewall") {
		t.Errorf("blocked_vrrp message lacks cause/fix: %q", bl.Message)
	}

	// The wiring puts lb2 in FAULT: split brain clears, lb2 stays resigned (still blocked).
	// Clients that followed lb2's gratuitous ARPs must be pointed back at lb1, as soon as lb1
	// sees lb2 MASTER beside it and again once lb2 gave the VIP up: with VRRP blocked, lb1
	// hears nothing from lb2 that would make its router announce.
	if n := a.announced.Load(); n != 1 {
		t.Fatalf("lb1 announced %d times while lb2 was MASTER beside it, want 1", n)
	}
	if n := b.announced.Load(); n != 0 {
		t.Fatalf("lb2, the one that resigns, announced %d times", n)
	}
	b.local.set(func(s *NodeState) { s.VRRPState = "FAULT" })
	waitFor(t, 3*time.Second, "lb1 announces the VIP again once lb2 gave it up", func() bool { return a.announced.Load() == 2 })
	for _, n := range []*node{a, b} {
		waitFor(t, 2*time.Second, n.c.cfg.NodeName+" clears split_brain", func() bool {
			_, ok := n.alarm(AlarmSplitBrain, "")
			return !ok
		})
	}
	waitFor(t, 3*time.Second, "lb1 raises outbound blocked_vrrp", func() bool {
		_, ok := a.alarm(AlarmBlockedVRRP, "lb2")
		return ok
	})
	time.Sleep(time.Second)
	if got := b.hook.get(); len(got) != 1 {
		t.Fatalf("lb2 released while still blocked: %v", got)
	}

	// Unblocked: lb2 hears lb1's adverts again -> released, alarms clear.
	b.local.hearAdverts(sa.PrimaryAddr)
	a.local.hearAdverts(sb.PrimaryAddr)
	waitFor(t, 3*time.Second, "lb2 released", func() bool { return len(b.hook.get()) == 2 })
	if got := b.hook.get(); got[1] != false {
		t.Fatalf("lb2 hook calls = %v, want [true false]", got)
	}
	b.local.set(func(s *NodeState) { s.VRRPState = "BACKUP" })
	for _, n := range []*node{a, b} {
		waitFor(t, 3*time.Second, n.c.cfg.NodeName+" clears all alarms", func() bool { return len(n.c.Alarms()) == 0 })
	}
	if s := b.logs.String(); !strings.Contains(s, "cluster alarm raised") || !strings.Contains(s, "cluster alarm cleared") {
		t.Errorf("raise/clear not logged:\n%s", s)
	}
}

func TestSplitBrainNonePolicyOnlyDetects(t *testing.T) {
	sa, sb := baseState("lb1", 100, "10.0.0.11"), baseState("lb2", 90, "10.0.0.12")
	sa.VRRPState, sb.VRRPState = "MASTER", "MASTER"
	a, b := pair(t, sa, sb, SplitBrainNone)
	waitFor(t, 3*time.Second, "split brain on lb2", func() bool { _, ok := b.alarm(AlarmSplitBrain, "lb1"); return ok })
	time.Sleep(500 * time.Millisecond)
	if len(a.hook.get())+len(b.hook.get()) != 0 {
		t.Fatalf("split_brain: none called the resign hook: %v %v", a.hook.get(), b.hook.get())
	}
	if v := b.c.View(); v.ActiveByKind()[AlarmSplitBrain] != 1 || v.Counters.AlarmsRaised[AlarmSplitBrain] != 1 {
		t.Errorf("view gauges/counters: %v %v", v.ActiveByKind(), v.Counters.AlarmsRaised)
	}
}

func TestConfigDriftReportedOnBoth(t *testing.T) {
	sa, sb := baseState("lb1", 100, "10.0.0.11"), baseState("lb2", 90, "10.0.0.12")
	sb.Backends = map[string]bool{"10.0.0.1:6443": true, "10.0.0.3:6443": true}
	sb.AdvertInterval = time.Second
	a, b := pair(t, sa, sb, "")
	for _, n := range []*node{a, b} {
		waitFor(t, 2*time.Second, n.c.cfg.NodeName+" reports config_drift", func() bool {
			_, ok := n.alarm(AlarmConfigDrift, "")
			return ok
		})
		al, _ := n.alarm(AlarmConfigDrift, "")
		if !strings.Contains(al.Message, "proxy.backends") || !strings.Contains(al.Message, "10.0.0.3:6443") ||
			!strings.Contains(al.Message, "advert_interval") {
			t.Errorf("%s drift message does not say what differs: %q", n.c.cfg.NodeName, al.Message)
		}
	}
	// Same backends set now: only the interval differs.
	b.local.set(func(s *NodeState) { s.Backends = map[string]bool{"10.0.0.1:6443": true, "10.0.0.2:6443": true} })
	waitFor(t, 2*time.Second, "drift message updated", func() bool {
		al, ok := a.alarm(AlarmConfigDrift, "lb2")
		return ok && !strings.Contains(al.Message, "backends")
	})
	b.local.set(func(s *NodeState) { s.AdvertInterval = 200 * time.Millisecond })
	waitFor(t, 2*time.Second, "drift cleared", func() bool { _, ok := a.alarm(AlarmConfigDrift, ""); return !ok })
}

func TestBackendDisagreement(t *testing.T) {
	sa, sb := baseState("lb1", 100, "10.0.0.11"), baseState("lb2", 90, "10.0.0.12")
	a, b := pair(t, sa, sb, "")
	b.local.set(func(s *NodeState) { s.Backends = map[string]bool{"10.0.0.1:6443": true, "10.0.0.2:6443": false} })
	for _, n := range []*node{a, b} {
		waitFor(t, 3*time.Second, n.c.cfg.NodeName+" reports backend_disagreement", func() bool {
			_, ok := n.alarm(AlarmBackendDisagreement, "")
			return ok
		})
	}
	al, _ := a.alarm(AlarmBackendDisagreement, "lb2")
	if !strings.Contains(al.Message, "10.0.0.2:6443 is UP here and DOWN there") {
		t.Errorf("message = %q", al.Message)
	}
	if _, ok := a.alarm(AlarmConfigDrift, ""); ok {
		t.Errorf("a health difference reported as config drift")
	}
	m, _ := a.member("lb2")
	if m.Backends["10.0.0.2:6443"] {
		t.Errorf("lb1's view of lb2's backends = %v", m.Backends)
	}
	b.local.set(func(s *NodeState) { s.Backends = map[string]bool{"10.0.0.1:6443": true, "10.0.0.2:6443": true} })
	waitFor(t, 2*time.Second, "disagreement cleared", func() bool { _, ok := a.alarm(AlarmBackendDisagreement, ""); return !ok })
}

func TestPeerLostAndRejoin(t *testing.T) {
	sa, sb := baseState("lb1", 100, "10.0.0.11"), baseState("lb2", 90, "10.0.0.12")
	a, b := pair(t, sa, sb, "")
	bAddr := b.c.Addr()
	start := time.Now()
	b.crash()
	waitFor(t, 4*time.Second, "lb1 reports lb2 lost", func() bool { _, ok := a.alarm(AlarmPeerLost, "lb2"); return ok })
	t.Logf("peer lost detected %s after the crash", time.Since(start))
	al, _ := a.alarm(AlarmPeerLost, "lb2")
	if !strings.Contains(al.Message, "not alive on gossip") {
		t.Errorf("message = %q", al.Message)
	}
	// Restart lb2 on the same address: it rejoins on its own and the alarm clears.
	b2 := startNode(t, sb, nodeOpt{bind: bAddr, peers: []string{a.c.Addr()}})
	start = time.Now()
	waitFor(t, 8*time.Second, "lb2 back and alarm cleared", func() bool {
		m, _ := a.member("lb2")
		_, lost := a.alarm(AlarmPeerLost, "lb2")
		return m.Alive && !lost
	})
	t.Logf("rejoined %s after restart", time.Since(start))
	_ = b2
}

func TestConfiguredPeerNeverJoinedIsLost(t *testing.T) {
	st := baseState("lb1", 100, "10.0.0.11")
	// A port nothing listens on (TEST-NET would need routing: use loopback port 9).
	a := startNode(t, st, nodeOpt{peers: []string{"127.0.0.1:9"}})
	waitFor(t, 6*time.Second, "peer_lost for the configured peer", func() bool {
		_, ok := a.alarm(AlarmPeerLost, "127.0.0.1:9")
		return ok
	})
	if !strings.Contains(a.logs.String(), "gossip key mismatch?") {
		t.Errorf("join failure log lacks the hint:\n%s", a.logs.String())
	}
}

func TestWrongKeyCannotJoin(t *testing.T) {
	sa, sb := baseState("lb1", 100, "10.0.0.11"), baseState("lb2", 90, "10.0.0.12")
	a := startNode(t, sa, nodeOpt{})
	other := bytes.Repeat([]byte{9}, 32)
	b := startNode(t, sb, nodeOpt{peers: []string{a.c.Addr()}, key: other})
	waitFor(t, 5*time.Second, "lb1 raises gossip_key", func() bool { _, ok := a.alarm(AlarmGossipKey, ""); return ok })
	time.Sleep(time.Second)
	if m, ok := a.member("lb2"); ok && m.Alive {
		t.Fatalf("node with the wrong key joined: %+v", m)
	}
	if m, ok := b.member("lb1"); ok && m.Alive {
		t.Fatalf("wrong-key node sees lb1: %+v", m)
	}
	al, _ := a.alarm(AlarmGossipKey, "")
	if !strings.Contains(al.Message, "gossip key mismatch?") || !strings.Contains(al.Message, "key_file") {
		t.Errorf("alarm message = %q", al.Message)
	}
	// Each side logs when it meets the other's gossip (lb2's line came 1 s late at load 35).
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(a.logs.String(), "gossip key mismatch?") || !strings.Contains(b.logs.String(), "gossip key mismatch?") {
		if time.Now().After(deadline) {
			t.Errorf("no clear log line on one side:\nlb1:\n%s\nlb2:\n%s", a.logs.String(), b.logs.String())
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("lb1 log:\n%s\nlb2 log:\n%s", grepLines(a.logs.String(), "mismatch"), grepLines(b.logs.String(), "mismatch"))
	if strings.Contains(a.logs.String(), base64.StdEncoding.EncodeToString(testKey)) {
		t.Errorf("key material logged")
	}
}

func TestNodeWithoutKeyCannotJoin(t *testing.T) {
	a := startNode(t, baseState("lb1", 100, "10.0.0.11"), nodeOpt{})
	mc := memberlist.DefaultLANConfig()
	mc.Name, mc.BindAddr, mc.BindPort = "intruder", "127.0.0.1", 0
	mc.LogOutput = &syncBuf{}
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	if n, err := ml.Join([]string{a.c.Addr()}); err == nil || n > 0 {
		t.Fatalf("plaintext node joined an encrypted cluster (n=%d, err=%v)", n, err)
	}
	waitFor(t, 3*time.Second, "lb1 raises gossip_key", func() bool { _, ok := a.alarm(AlarmGossipKey, ""); return ok })
	if _, ok := a.member("intruder"); ok {
		t.Fatal("intruder is listed as a member")
	}
}

func TestConnTableSharedAndResetOnTakeover(t *testing.T) {
	sa, sb := baseState("lb1", 100, "10.0.0.11"), baseState("lb2", 90, "10.0.0.12")
	sa.VRRPState = "MASTER"
	// States every 2 s (a peer counts as silent after 5 s): under load (stress-ng beside the
	// race detector at load 35) lb1's pushes arrived more than the default 625 ms apart, and
	// lb2 rightly took the live master for a silent one. What is proven is unchanged: nothing
	// is reset while the master is heard, its clients are once it is gone.
	a := startNode(t, sa, nodeOpt{stateInterval: 2 * time.Second})
	b := startNode(t, sb, nodeOpt{peers: []string{a.c.Addr()}, stateInterval: 2 * time.Second})
	waitFor(t, 10*time.Second, "a and b see each other alive", func() bool {
		ma, okA := a.member(sb.Name)
		mb, okB := b.member(sa.Name)
		return okA && okB && ma.Alive && mb.Alive
	})
	vip := netip.MustParseAddrPort("10.0.0.100:6443")
	mk := func(s string) Conn { return Conn{Client: netip.MustParseAddrPort(s), VIP: vip} }
	a.conns.mu.Lock()
	a.conns.cs = []Conn{mk("10.0.1.1:40000"), mk("10.0.1.2:40001"), mk("10.0.1.3:40002"),
		// Not through the VIP (a ":6443" listener also takes the host's own address): not shared.
		{Client: netip.MustParseAddrPort("10.0.1.4:40003"), VIP: netip.MustParseAddrPort("10.0.0.11:6443")}}
	b.conns.mu.Lock()
	// lb2 lists the connection it holds itself in IPv4-mapped form (dual-stack listener).
	b.conns.cs = []Conn{{Client: netip.MustParseAddrPort("[::ffff:10.0.1.3]:40002"), VIP: netip.MustParseAddrPort("[::ffff:10.0.0.100]:6443")}}
	b.conns.mu.Unlock()
	a.conns.mu.Unlock()
	waitFor(t, 10*time.Second, "lb2 has lb1's table", func() bool {
		m, _ := b.member("lb1")
		return m.Conns == 3 && b.c.View().Counters.ConnTablesReceived > 0
	})

	// While lb1 is alive and MASTER (split brain), nothing is reset.
	b.local.set(func(s *NodeState) { s.VRRPState = "MASTER"; s.HoldsVIP = true })
	b.c.OnBecameMaster()
	time.Sleep(2500 * time.Millisecond)
	if got := b.reset.get(); len(got) != 0 {
		t.Fatalf("reset connections of a live master: %v", got)
	}
	// lb1 crashes; VRRP fails over 3 x 200ms later.
	a.crash()
	time.Sleep(650 * time.Millisecond)
	start := time.Now()
	b.c.OnBecameMaster()
	waitFor(t, 10*time.Second, "reset called", func() bool { return len(b.reset.get()) == 1 })
	t.Logf("reset requested %s after OnBecameMaster", time.Since(start))
	got := b.reset.get()[0]
	if len(got) != 2 {
		t.Fatalf("reset %v, want lb1's two connections lb2 does not hold", got)
	}
	for _, c := range got {
		if c == mk("10.0.1.3:40002") {
			t.Fatalf("reset a connection this node holds: %v", got)
		}
	}
	// A second round 1 s later (for clients whose ARP entry was late), then no more: the table
	// is consumed and a second takeover does not reset them again.
	waitFor(t, 3*time.Second, "second round", func() bool { return len(b.reset.get()) == 2 })
	if r2 := b.reset.get()[1]; len(r2) != 2 {
		t.Errorf("second round reset %v", r2)
	}
	b.c.OnBecameMaster()
	time.Sleep(1500 * time.Millisecond)
	if n := len(b.reset.get()); n != 2 {
		t.Fatalf("table reused: %d calls", n)
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	k32 := bytes.Repeat([]byte{1}, 32)
	if k, err := LoadKey(write("b64", []byte(base64.StdEncoding.EncodeToString(k32)+"\n"), 0o600)); err != nil || !bytes.Equal(k, k32) {
		t.Errorf("base64 key: %v", err)
	}
	raw16 := []byte("0123456789abcdef")
	if k, err := LoadKey(write("raw", raw16, 0o400)); err != nil || !bytes.Equal(k, raw16) {
		t.Errorf("raw key: %v", err)
	}
	p := write("world", []byte(base64.StdEncoding.EncodeToString(k32)), 0o644)
	_, err := LoadKey(p)
	if err == nil || !strings.Contains(err.Error(), "chmod 640 "+p) || !strings.Contains(err.Error(), "cluster.key_file") {
		t.Errorf("world-readable key: err = %v", err)
	}
	if _, err := LoadKey(write("group", k32, 0o640)); err != nil {
		t.Errorf("root:vipd 0640 key refused: %v", err)
	}
	if _, err := LoadKey(write("groupw", k32, 0o660)); err == nil {
		t.Error("group-writable key accepted")
	}
	secret := "c2VjcmV0LXM"
	_, err = LoadKey(write("short", []byte(secret), 0o600))
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("bad-length key: err = %v (must not echo the key)", err)
	}
	if _, err := LoadKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing key file accepted")
	}
	// New refuses to start with a world-readable key.
	cfg := Config{Enabled: true, NodeName: "lb1", KeyFile: p}
	if _, err := New(cfg, Deps{Local: &fakeLocal{}}); err == nil || !strings.Contains(err.Error(), "chmod 640") {
		t.Errorf("New with world-readable key: %v", err)
	}
}

func TestValidate(t *testing.T) {
	good := Config{Enabled: true, NodeName: "lb1", KeyFile: "/etc/vipd/gossip.key", Peers: []string{"192.168.10.143:7946"}}
	good.SetDefaults()
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("disabled config: %v", err)
	}
	cases := []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Bind = "7946" }, "cluster.bind"},
		{func(c *Config) { c.Peers = []string{"192.168.10.143"} }, "cluster.peers[0]"},
		{func(c *Config) { c.KeyFile = "" }, "cluster.key_file"},
		{func(c *Config) { c.SplitBrain = "resign" }, "cluster.split_brain"},
		{func(c *Config) { c.BlockedVRRPIntervals = -1 }, "cluster.blocked_vrrp_intervals"},
		{func(c *Config) { c.ConnTableMax = -1 }, "cluster.conn_table_max"},
		{func(c *Config) { c.ConnReset = true; c.ConnResetRate = -5 }, "cluster.conn_reset_rate"},
		{func(c *Config) { c.Advertise = "nope" }, "cluster.advertise"},
		{func(c *Config) { c.NodeName = "" }, "node_name"},
	}
	for _, tc := range cases {
		c := good
		tc.mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want error naming %s, got %v", tc.want, err)
		}
	}
}

func TestConnTableWire(t *testing.T) {
	vip := netip.MustParseAddrPort("10.0.0.100:6443")
	vip6 := netip.MustParseAddrPort("[fd00::100]:6443")
	in := []Conn{
		{Client: netip.MustParseAddrPort("10.0.1.1:1"), VIP: vip},
		{Client: netip.MustParseAddrPort("[fd00::1]:2"), VIP: vip6},
		{Client: netip.MustParseAddrPort("10.0.1.2:65535"), VIP: vip},
	}
	sortConns(in)
	b := encodeConns(connTable{Name: "lb1", Boot: 42, Seq: 7, Conns: in})
	out, err := decodeConns(b, 100)
	if err != nil {
		t.Fatal(err)
	}
	if out.Name != "lb1" || out.Boot != 42 || out.Seq != 7 || len(out.Conns) != 3 {
		t.Fatalf("decoded %+v", out)
	}
	for i := range in {
		if in[i] != out.Conns[i] {
			t.Errorf("conn %d: %v != %v", i, out.Conns[i], in[i])
		}
	}
	if capped, _ := decodeConns(b, 2); len(capped.Conns) != 2 {
		t.Errorf("cap not applied: %d", len(capped.Conns))
	}
	// Every truncation is an error, never a panic.
	for i := 1; i < len(b); i++ {
		if _, err := decodeConns(b[:i], 100); err == nil {
			t.Errorf("truncated at %d accepted", i)
		}
	}
	st, _ := encodeState(wireState{NodeState: NodeState{Name: "lb1"}})
	bundle := encodeBundle(st, b)
	s2, c2, err := splitBundle(bundle)
	if err != nil || !bytes.Equal(s2, st) || !bytes.Equal(c2, b) {
		t.Fatalf("bundle round trip: %v", err)
	}
	if _, _, err := splitBundle(bundle[:8]); err == nil {
		t.Error("truncated bundle accepted")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && len(out) < 3 {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestThreeNodesResignAllButHighest(t *testing.T) {
	sa, sb, sc := baseState("lb1", 100, "10.0.0.11"), baseState("lb2", 90, "10.0.0.12"), baseState("lb3", 90, "10.0.0.13")
	a := startNode(t, sa, nodeOpt{splitBrain: SplitBrainResignLower})
	b := startNode(t, sb, nodeOpt{peers: []string{a.c.Addr()}, splitBrain: SplitBrainResignLower})
	c := startNode(t, sc, nodeOpt{peers: []string{b.c.Addr()}, splitBrain: SplitBrainResignLower})
	waitFor(t, 5*time.Second, "three members alive everywhere", func() bool {
		for _, n := range []*node{a, b, c} {
			v := n.c.View()
			alive := 0
			for _, m := range v.Members {
				if m.Alive {
					alive++
				}
			}
			if alive != 3 {
				return false
			}
		}
		return true
	})
	for _, n := range []*node{a, b, c} {
		n.local.set(func(s *NodeState) { s.VRRPState = "MASTER" })
	}
	// lb2 and lb3 (equal priority) both resign: each is lower than lb1.
	waitFor(t, 3*time.Second, "lb2 and lb3 resign", func() bool { return len(b.hook.get()) == 1 && len(c.hook.get()) == 1 })
	time.Sleep(300 * time.Millisecond)
	if len(a.hook.get()) != 0 {
		t.Fatalf("highest-priority node resigned: %v", a.hook.get())
	}
	// lb1 dies: lb3 is released; lb2, lower than lb3 (equal priority, lower address), ends up
	// resigned (it may have resigned for lb3 from the start, or resign again).
	a.crash()
	waitFor(t, 5*time.Second, "lb3 released, lb2 resigned, after lb1 died", func() bool {
		gb, gc := b.hook.get(), c.hook.get()
		return len(gc) == 2 && !gc[1] && len(gb) > 0 && gb[len(gb)-1]
	})
}

func TestResetAfterPreemptionHandover(t *testing.T) {
	sa, sb := baseState("lb1", 90, "10.0.0.11"), baseState("lb2", 100, "10.0.0.12")
	sa.VRRPState = "MASTER"
	a, b := pair(t, sa, sb, "")
	vip := netip.MustParseAddrPort("10.0.0.100:6443")
	a.conns.mu.Lock()
	a.conns.cs = []Conn{{Client: netip.MustParseAddrPort("10.0.1.1:40000"), VIP: vip}}
	a.conns.mu.Unlock()
	waitFor(t, 4*time.Second, "lb2 has lb1's table", func() bool { return b.tableLen("lb1") == 1 })
	// lb2 (higher) preempts; lb1 is still alive and steps down a moment later.
	b.local.set(func(s *NodeState) { s.VRRPState = "MASTER"; s.HoldsVIP = true })
	b.c.OnBecameMaster()
	time.Sleep(150 * time.Millisecond)
	a.local.set(func(s *NodeState) { s.VRRPState = "BACKUP" })
	waitFor(t, 2*time.Second, "lb1's clients reset after it stepped down", func() bool { return len(b.reset.get()) == 1 })
}

// TestIdleOverhead measures what gossip costs two idle nodes in one process (CPU time and heap),
// to support the "< 1% CPU, < 5 MiB" budget per node.
func TestIdleOverhead(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 5s")
	}
	a, b := pair(t, baseState("lb1", 100, "10.0.0.11"), baseState("lb2", 90, "10.0.0.12"), "")
	_ = a
	_ = b
	time.Sleep(500 * time.Millisecond)
	var ru0, ru1 syscall.Rusage
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	const window = 5 * time.Second
	time.Sleep(window)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	cpu := time.Duration(syscall.TimevalToNsec(ru1.Utime)-syscall.TimevalToNsec(ru0.Utime)) +
		time.Duration(syscall.TimevalToNsec(ru1.Stime)-syscall.TimevalToNsec(ru0.Stime))
	perNode := float64(cpu) / float64(window) / 2 * 100
	t.Logf("idle gossip: %.2f%% of one CPU per node (%s CPU for 2 nodes over %s); heap in use %.1f MiB (both nodes and the test)",
		perNode, cpu.Round(time.Millisecond), window, float64(ms1.HeapInuse)/(1<<20))
	// A correctness bound (nothing spins: a busy loop is ~100 %), loose enough for the race
	// detector on a loaded machine (5.08 % was measured so once); the < 1 % budget is
	// bench-cluster's to measure.
	if perNode > 25 {
		t.Errorf("idle gossip uses %.2f%% CPU per node", perNode)
	}
}

func (n *node) tableLen(peer string) int {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	if t := n.c.tables[peer]; t != nil {
		return len(t.conns)
	}
	return -1
}

// TestCrashedMasterIsNoSplitBrain is issue 8's crash: the master's vipd dies (its last gossiped
// state says MASTER and stays "alive" for StaleAfter), the backup takes over by VRRP. The backup
// must not read the dead master's last word as a split brain: no alarm, no resignation, no
// blocked_vrrp; only peer_lost.
func TestCrashedMasterIsNoSplitBrain(t *testing.T) {
	sa, sb := baseState("lb1", 100, "10.0.0.11"), baseState("lb2", 90, "10.0.0.12")
	a, b := pair(t, sa, sb, SplitBrainResignLower)
	a.local.hearAdverts(sb.PrimaryAddr)
	b.local.hearAdverts(sa.PrimaryAddr)
	a.local.set(func(s *NodeState) { s.VRRPState = "MASTER"; s.HoldsVIP = true })
	waitFor(t, 3*time.Second, "lb2 sees lb1 MASTER", func() bool {
		m, _ := b.member("lb1")
		return m.VRRPState == "MASTER"
	})
	// Let a periodic push land just before the crash, as it does in a running pair.
	time.Sleep(300 * time.Millisecond)

	a.crash()
	b.local.hearAdverts(netip.Addr{})
	time.Sleep(630 * time.Millisecond) // master down interval with 200ms adverts
	b.local.set(func(s *NodeState) { s.VRRPState = "MASTER"; s.HoldsVIP = true })
	took := time.Now()

	// Watch well past StaleAfter and SplitBrainHold.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if got := b.hook.get(); len(got) != 0 {
			t.Fatalf("lb2 resigned %s after taking over from a crashed lb1 (hook calls %v):\n%s",
				time.Since(took).Round(time.Millisecond), got, grepLines(b.logs.String(), "split brain"))
		}
		for _, kind := range []string{AlarmSplitBrain, AlarmBlockedVRRP} {
			if al, ok := b.alarm(kind, "lb1"); ok {
				t.Fatalf("lb2 raised %s %s after taking over from a crashed lb1: %s", kind,
					time.Since(took).Round(time.Millisecond), al.Message)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, 10*time.Second, "lb2 reports lb1 lost", func() bool {
		_, ok := b.alarm(AlarmPeerLost, "lb1")
		return ok
	})
}

// TestResignedNodeRejoinsWhenPeerGoesSilent: lb2 resigned for a real split brain (VRRP blocked,
// gossip flowing); then lb1 dies. lb2 must rejoin the election once lb1's state is no longer
// fresh (EvidenceMaxAge), not keep the VIP on no host until lb1 counts as dead.
func TestResignedNodeRejoinsWhenPeerGoesSilent(t *testing.T) {
	sa, sb := baseState("lb1", 100, "10.0.0.11"), baseState("lb2", 90, "10.0.0.12")
	a, b := pair(t, sa, sb, SplitBrainResignLower)
	a.local.set(func(s *NodeState) { s.VRRPState = "MASTER" })
	time.Sleep(500 * time.Millisecond)
	b.local.set(func(s *NodeState) { s.VRRPState = "MASTER" }) // VRRP blocked: lb2 takes over too
	waitFor(t, 5*time.Second, "lb2 resigns", func() bool { return len(b.hook.get()) > 0 })
	b.local.set(func(s *NodeState) { s.VRRPState = "FAULT" })
	time.Sleep(b.c.tun.MinResign)
	if got := b.hook.get(); len(got) != 1 {
		t.Fatalf("hook calls before the crash = %v, want [true]", got)
	}
	a.crash()
	start := time.Now()
	waitFor(t, 5*time.Second, "lb2 released after lb1 went silent", func() bool { return len(b.hook.get()) == 2 })
	t.Logf("released %s after lb1 went silent (EvidenceMaxAge %s, StaleAfter %s)",
		time.Since(start).Round(time.Millisecond), b.c.tun.EvidenceMaxAge, b.c.tun.StaleAfter)
	if !strings.Contains(b.logs.String(), "silent on gossip") {
		t.Errorf("release not logged with its reason:\n%s", grepLines(b.logs.String(), "split brain"))
	}
}

// TestKeyHolderCannotFloodTables (issue 11): a node holding the gossip key sends connection
// tables and states under invented names, a table of its own far over the cap, and entries for
// a VIP that is not ours. lb2 keeps no table and no peer under a name that is not a member,
// keeps at most ConnTableMax entries of the member's table and only those for its own VIPs,
// so a takeover probes only clients of our VIP.
func TestKeyHolderCannotFloodTables(t *testing.T) {
	sa, sb := baseState("lb1", 100, "10.0.0.11"), baseState("lb2", 90, "10.0.0.12")
	sa.VRRPState = "MASTER"
	_, b := pair(t, sa, sb, "")
	evil := startNode(t, baseState("evil", 50, "10.0.0.66"), nodeOpt{peers: []string{b.c.Addr()}})
	waitFor(t, 5*time.Second, "lb2 sees evil as a member", func() bool {
		m, ok := b.member("evil")
		return ok && m.Alive
	})
	// Membership is learned on each side on its own: lb2 listing evil says nothing yet about
	// evil listing lb2 (a clean-clone run at load 40 saw it 0.9 s in).
	waitFor(t, 10*time.Second, "evil sees lb2 as a member", func() bool {
		for _, n := range evil.c.ml.Members() {
			if n.Name == "lb2" {
				return true
			}
		}
		return false
	})
	// Sends go to our own copy of lb2's address: memberlist rewrites its node records while
	// it handles alive messages (the race detector caught the test reading one at load 35).
	host, port, err := net.SplitHostPort(b.c.Addr())
	if err != nil {
		t.Fatal(err)
	}
	pn, _ := strconv.Atoi(port)
	target := &memberlist.Node{Name: "lb2", Addr: net.ParseIP(host), Port: uint16(pn)}
	ourVIP := netip.MustParseAddrPort("10.0.0.100:6443")
	foreign := netip.MustParseAddrPort("192.0.2.1:6443")
	invented := func(i int) []Conn {
		cs := make([]Conn, 0, 50)
		for j := 0; j < 50; j++ {
			cs = append(cs, Conn{Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(i), byte(j)}), 40000), VIP: ourVIP})
		}
		return cs
	}
	for i := 0; i < 200; i++ {
		name := fmt.Sprintf("ghost-%d", i)
		if err := evil.c.ml.SendReliable(target, encodeConns(connTable{Name: name, Boot: 1, Seq: 1, Conns: invented(i)})); err != nil {
			t.Fatal(err)
		}
		st := baseState(name, 200, "10.0.0.200")
		st.VRRPState = "MASTER"
		msg, err := encodeState(wireState{NodeState: st, Boot: 1, Seq: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := evil.c.ml.SendReliable(target, msg); err != nil {
			t.Fatal(err)
		}
	}
	// Its own table (it is a member): over the cap, half for a VIP that is not ours.
	evil.c.mu.Lock()
	boot := evil.c.boot
	evil.c.mu.Unlock()
	var own []Conn
	for i := 0; i < 3*DefaultConnTableMax; i++ {
		vip := ourVIP
		if i%2 == 1 {
			vip = foreign
		}
		own = append(own, Conn{Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 8, byte(i >> 8), byte(i)}), uint16(1024+i%60000)), VIP: vip})
	}
	if err := evil.c.ml.SendReliable(target, encodeConns(connTable{Name: "evil", Boot: boot, Seq: 1 << 40, Conns: own})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "lb2 refused the invented tables", func() bool {
		return b.c.View().Counters.ConnTablesRejected >= 200
	})
	b.c.mu.Lock()
	var tableNames, peerNames []string
	for n := range b.c.tables {
		tableNames = append(tableNames, n)
	}
	for n := range b.c.peers {
		peerNames = append(peerNames, n)
	}
	var evilConns []Conn
	if tb := b.c.tables["evil"]; tb != nil {
		evilConns = tb.conns
	}
	b.c.mu.Unlock()
	for _, n := range append(tableNames, peerNames...) {
		if strings.HasPrefix(n, "ghost-") {
			t.Fatalf("lb2 keeps state for an invented name: tables %v, peers %v", tableNames, peerNames)
		}
	}
	if len(tableNames) > 2 || len(peerNames) > 2 {
		t.Fatalf("tables %v, peers %v: want at most lb1 and evil", tableNames, peerNames)
	}
	if len(evilConns) > DefaultConnTableMax {
		t.Fatalf("kept %d entries of one table, cap %d", len(evilConns), DefaultConnTableMax)
	}
	for _, c := range evilConns {
		if c.VIP.Addr() != ourVIP.Addr() {
			t.Fatalf("kept an entry for %s, not one of our VIPs", c.VIP)
		}
	}
	if _, ok := b.alarm(AlarmPeerLost, "ghost-1"); ok {
		t.Fatal("an invented name raised peer_lost")
	}
}
