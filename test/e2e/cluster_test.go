package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipd-project/vipd/pkg/stats"
	"github.com/vipd-project/vipd/test/apiserverstub"
	"github.com/vipd-project/vipd/test/lab"
)

// clusterEnv is lb1 + lb2 running vipd with gossip, one stand-in apiserver (m1) and a client.
type clusterEnv struct {
	t        *testing.T
	l        *lab.Lab
	lb1, lb2 *lab.Host
	client   *lab.Host
	vip      netip.Addr
	bin      string
	backends []string
	ca       *apiserverstub.CA
	key      []byte
	v1, v2   *lab.Vipd
}

type clusterOpts struct {
	splitBrain string // default resign-lower
	connReset  bool
	backends   []string // override for this node
	key        []byte   // override for this node
}

func (e *clusterEnv) yaml(h *lab.Host, prio int, o clusterOpts, socket string) string {
	be := e.backends
	if o.backends != nil {
		be = o.backends
	}
	// The test's 1,000 idle connections stand in for established watches (which have spoken,
	// so first_byte_timeout would never close them) and come from one client with its watch.
	base := proxyLBConfig{Name: h.Name, Priority: prio, VIP: e.vip, Backends: be, Socket: socket,
		ProxyExtra: "  first_byte_timeout: 0s\n  max_conns_per_source: 0\n"}.yaml()
	peer := e.lb2
	if h == e.lb2 {
		peer = e.lb1
	}
	key := e.key
	if o.key != nil {
		key = o.key
	}
	keyFile := filepath.Join(e.l.Dir, h.Name+"-gossip.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	sb := o.splitBrain
	if sb == "" {
		sb = "resign-lower"
	}
	return base + fmt.Sprintf(`cluster:
  enabled: true
  bind: "%s:7946"
  peers:
    - %s:7946
  key_file: %s
  split_brain: %s
  blocked_vrrp_intervals: 3
  conn_reset: %v
  conn_table_max: 10000
  conn_reset_rate: 2000
`, h.Addr, peer.Addr, keyFile, sb, o.connReset)
}

func (e *clusterEnv) start(h *lab.Host, prio int, o clusterOpts) *lab.Vipd {
	t := e.t
	t.Helper()
	dir := filepath.Join(e.l.Dir, h.Name+"-vipd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "vipd.sock")
	path := filepath.Join(dir, "vipd.yaml")
	if err := os.WriteFile(path, []byte(e.yaml(h, prio, o, socket)), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := h.Start("vipd", []string{e.bin, "run", "-c", path}, "")
	if err != nil {
		t.Fatal(err)
	}
	v := &lab.Vipd{Proc: p, Opts: lab.VipdOptions{Bin: e.bin, VIP: e.vip, Priority: prio},
		ConfigPath: path, Socket: socket, StatsAddr: net.JoinHostPort(h.Addr.String(), "8404")}
	if h == e.lb1 {
		e.v1 = v
	} else {
		e.v2 = v
	}
	return v
}

func (e *clusterEnv) stop(v *lab.Vipd) {
	if v != nil && v.Running() {
		v.Kill()
		_ = v.Wait(5 * time.Second)
	}
	_, _ = v.Host.Exec(context.Background(), "ip", "addr", "del", lab.Prefix24(e.vip), "dev", "eth0")
}

// startPair starts lb1 (100) until MASTER, then lb2 (90) until BACKUP, and waits until both
// see each other alive on gossip with no alarm.
func (e *clusterEnv) startPair(o1, o2 clusterOpts) {
	t := e.t
	t.Helper()
	for _, v := range []*lab.Vipd{e.v1, e.v2} {
		if v != nil {
			e.stop(v)
		}
	}
	ctx := vrrpCtx(t, 30*time.Second)
	v1 := e.start(e.lb1, 100, o1)
	if _, _, err := proxyWaitSnap(ctx, v1, "lb1 MASTER", func(s *stats.Snapshot) bool { return s.VRRP.State == stats.StateMaster }); err != nil {
		t.Fatal(err)
	}
	v2 := e.start(e.lb2, 90, o2)
	if _, _, err := proxyWaitSnap(ctx, v2, "lb2 BACKUP", func(s *stats.Snapshot) bool { return s.VRRP.State == stats.StateBackup }); err != nil {
		t.Fatal(err)
	}
	for _, v := range []*lab.Vipd{v1, v2} {
		if _, _, err := proxyWaitSnap(ctx, v, "two members alive", func(s *stats.Snapshot) bool { return clusterAlive(s) == 2 }); err != nil {
			t.Fatal(err)
		}
	}
}

func clusterAlive(s *stats.Snapshot) int {
	if s.Cluster == nil {
		return -1
	}
	n := 0
	for _, m := range s.Cluster.Members {
		if m.Alive || m.Self {
			n++
		}
	}
	return n
}

func clusterHas(kind string) func(*stats.Snapshot) bool {
	return func(s *stats.Snapshot) bool {
		if s.Cluster == nil {
			return false
		}
		for _, a := range s.Cluster.Alarms {
			if a.Kind == kind {
				return true
			}
		}
		return false
	}
}

func clusterNoAlarms(s *stats.Snapshot) bool { return s.Cluster != nil && len(s.Cluster.Alarms) == 0 }

func (e *clusterEnv) holders() []string {
	var hs []string
	for _, h := range []*lab.Host{e.lb1, e.lb2} {
		if ok, err := h.HasAddr(e.vip.String()); err == nil && ok {
			hs = append(hs, h.Name)
		}
	}
	return hs
}

func newClusterEnv(t *testing.T) *clusterEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces")
	}
	bin := vipdBin(t)
	stubBin, err := apiserverstub.Build(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l := lab.New(t, lab.Options{Hosts: []string{"lb1", "lb2", "m1", "client"}, Prefix: lab.RandomPrefix("vc")})
	e := &clusterEnv{t: t, l: l, lb1: l.Host("lb1"), lb2: l.Host("lb2"), client: l.Host("client"), vip: l.Addr(100), bin: bin}
	e.key = make([]byte, 32)
	_, _ = rand.Read(e.key)
	if err := e.client.NoNeighLocktime(); err != nil {
		t.Fatal(err)
	}
	m1 := l.Host("m1")
	e.backends = []string{net.JoinHostPort(m1.Addr.String(), "6443")}
	if e.ca, err = apiserverstub.NewCA("vipd cluster e2e CA"); err != nil {
		t.Fatal(err)
	}
	crt, key, err := e.ca.WriteFiles(l.Dir, "m1", []net.IP{m1.Addr.AsSlice(), e.vip.AsSlice()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Watch events every 60 s: a watch is an idle stream, like `kubectl get -w` on a quiet
	// namespace.
	if _, err := m1.Start("apiserver", []string{stubBin, "-listen", ":6443", "-cert", crt, "-key", key, "-host", "m1", "-watch-interval", "60s"}, ""); err != nil {
		t.Fatal(err)
	}
	if err := clusterWaitTCP(vrrpCtx(t, 30*time.Second), e.client, e.backends[0]); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, v := range []*lab.Vipd{e.v1, e.v2} {
			if v != nil && t.Failed() {
				t.Logf("%s vipd log (tail):\n%s", v.Host.Name, v.Tail(60))
			}
		}
	})
	return e
}

// TestClusterGossipE2E: (a) VRRP blocked with gossip flowing: split brain and blocked_vrrp within
// 2 s, resign-lower leaves the VIP on one host, unblocking clears everything; (b) config drift;
// (c) full partition: peer lost on both, VRRP as before, heal reforms the cluster; wrong key.
func TestClusterGossipE2E(t *testing.T) {
	e := newClusterEnv(t)
	e.startPair(clusterOpts{}, clusterOpts{})
	ctx := context.Background()

	t.Run("blocked VRRP, resign-lower", func(t *testing.T) {
		if err := e.lb2.DropVRRP(); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		wctx := vrrpCtx(t, 5*time.Second)
		_, tb, err := proxyWaitSnap(wctx, e.v2, "lb2 blocked_vrrp", clusterHas("blocked_vrrp"))
		if err != nil {
			t.Fatal(err)
		}
		s, ts, err := proxyWaitSnap(wctx, e.v2, "lb2 split_brain or resigned", func(s *stats.Snapshot) bool {
			return clusterHas("split_brain")(s) || s.VRRP.State == stats.StateFault
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("blocked_vrrp after %s, split brain/resign after %s (lb2 %s)", tb.Sub(t0).Round(time.Millisecond), ts.Sub(t0).Round(time.Millisecond), s.VRRP.State)
		if d := tb.Sub(t0); d > 3*time.Second {
			t.Errorf("blocked VRRP detected after %s, want about 2 s", d)
		}
		// Exactly one holder within ~2 s of the block.
		var oneAt time.Time
		for time.Since(t0) < 5*time.Second {
			if hs := e.holders(); len(hs) == 1 && hs[0] == "lb1" {
				st2, _ := proxySnap(ctx, e.v2)
				if st2 != nil && st2.VRRP.State == stats.StateFault {
					oneAt = time.Now()
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		if oneAt.IsZero() {
			t.Fatalf("VIP holders %v after 5 s of blocked VRRP with resign-lower", e.holders())
		}
		t.Logf("VIP on lb1 only, lb2 resigned (FAULT), %s after the block", oneAt.Sub(t0).Round(time.Millisecond))
		if d := oneAt.Sub(t0); d > 3*time.Second {
			t.Errorf("VIP on one host only after %s, want about 2 s", d)
		}
		// It stays so while blocked.
		time.Sleep(2 * time.Second)
		if hs := e.holders(); len(hs) != 1 || hs[0] != "lb1" {
			t.Fatalf("VIP holders %v while still blocked", hs)
		}
		if err := e.lb2.Undrop(); err != nil {
			t.Fatal(err)
		}
		wctx = vrrpCtx(t, 8*time.Second)
		for _, v := range []*lab.Vipd{e.v1, e.v2} {
			if _, _, err := proxyWaitSnap(wctx, v, "alarms clear", clusterNoAlarms); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := proxyWaitSnap(wctx, e.v2, "lb2 BACKUP", func(s *stats.Snapshot) bool { return s.VRRP.State == stats.StateBackup }); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("config drift", func(t *testing.T) {
		e.stop(e.v2)
		extra := append(slices.Clone(e.backends), net.JoinHostPort(e.l.Addr(99).String(), "6443"))
		v2 := e.start(e.lb2, 90, clusterOpts{backends: extra})
		wctx := vrrpCtx(t, 20*time.Second)
		for _, v := range []*lab.Vipd{e.v1, v2} {
			s, _, err := proxyWaitSnap(wctx, v, "config_drift", clusterHas("config_drift"))
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range s.Cluster.Alarms {
				if a.Kind == "config_drift" && !strings.Contains(a.Message, "backends") {
					t.Errorf("%s: drift message does not name the backends: %q", v.Host.Name, a.Message)
				}
			}
		}
		e.stop(v2)
		e.start(e.lb2, 90, clusterOpts{})
		for _, v := range []*lab.Vipd{e.v1, e.v2} {
			if _, _, err := proxyWaitSnap(wctx, v, "drift cleared", func(s *stats.Snapshot) bool {
				return clusterAlive(s) == 2 && !clusterHas("config_drift")(s)
			}); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("full partition and heal", func(t *testing.T) {
		if err := e.lb2.Isolate(); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		wctx := vrrpCtx(t, 10*time.Second)
		for _, v := range []*lab.Vipd{e.v1, e.v2} {
			_, at, err := proxyWaitSnap(wctx, v, "peer_lost", clusterHas("peer_lost"))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s reports peer_lost %s after the partition", v.Host.Name, at.Sub(t0).Round(time.Millisecond))
		}
		// VRRP as without gossip: lb2 hears nothing and becomes MASTER too (no resign without gossip).
		if _, _, err := proxyWaitSnap(wctx, e.v2, "lb2 MASTER", func(s *stats.Snapshot) bool { return s.VRRP.State == stats.StateMaster }); err != nil {
			t.Fatal(err)
		}
		if err := e.lb2.Rejoin(); err != nil {
			t.Fatal(err)
		}
		t0 = time.Now()
		wctx = vrrpCtx(t, 20*time.Second)
		for _, v := range []*lab.Vipd{e.v1, e.v2} {
			_, at, err := proxyWaitSnap(wctx, v, "cluster reformed", func(s *stats.Snapshot) bool { return clusterAlive(s) == 2 && clusterNoAlarms(s) })
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: cluster reformed, alarms clear, %s after the heal", v.Host.Name, at.Sub(t0).Round(time.Millisecond))
		}
		if _, _, err := proxyWaitSnap(wctx, e.v2, "lb2 BACKUP", func(s *stats.Snapshot) bool { return s.VRRP.State == stats.StateBackup }); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		e.stop(e.v2)
		other := make([]byte, 32)
		_, _ = rand.Read(other)
		v2 := e.start(e.lb2, 90, clusterOpts{key: other})
		wctx := vrrpCtx(t, 15*time.Second)
		if _, _, err := proxyWaitSnap(wctx, e.v1, "lb1 gossip_key alarm", clusterHas("gossip_key")); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(v2.Log(), "gossip key mismatch?") {
			if time.Now().After(deadline) {
				t.Fatalf("lb2's log does not say \"gossip key mismatch?\":\n%s", v2.Tail(30))
			}
			time.Sleep(100 * time.Millisecond)
		}
		// lb1 forgets the killed lb2 (right key) within ~2 s and never sees the new one.
		time.Sleep(4 * time.Second)
		for _, v := range []*lab.Vipd{e.v1, v2} {
			s, err := proxySnap(ctx, v)
			if err != nil {
				t.Fatal(err)
			}
			if clusterAlive(s) != 1 {
				t.Fatalf("%s: the node with the wrong key is a member: %+v", v.Host.Name, s.Cluster.Members)
			}
		}
		e.stop(v2)
	})
}

// clusterWatch opens an HTTPS watch through the VIP from the client, without TCP keepalive
// (like a client whose only liveness check is a 30-60 s ping), reads its first event, and returns
// a channel that yields the error that ends it.
func (e *clusterEnv) clusterWatch(ctx context.Context) (net.Conn, <-chan error, error) {
	var raw net.Conn
	if err := e.client.Do(func() error {
		d := net.Dialer{KeepAlive: -1, Timeout: 3 * time.Second}
		var err error
		raw, err = d.DialContext(ctx, "tcp4", net.JoinHostPort(e.vip.String(), "6443"))
		return err
	}); err != nil {
		return nil, nil, err
	}
	tc := tls.Client(raw, &tls.Config{RootCAs: e.ca.Pool(), ServerName: e.vip.String()})
	fmt.Fprintf(tc, "GET /api/v1/namespaces/default/pods?watch=1 HTTP/1.1\r\nHost: %s\r\n\r\n", e.vip)
	br := bufio.NewReader(tc)
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			raw.Close()
			return nil, nil, fmt.Errorf("watch: %w", err)
		}
		if strings.Contains(line, `"ADDED"`) {
			break
		}
	}
	_ = raw.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, br)
		if err == nil {
			err = io.EOF
		}
		done <- err
	}()
	return raw, done, nil
}

// TestClusterConnResetE2E: lb1 (MASTER) is cut off and killed while a client holds an idle
// watch through the VIP plus 1,000 idle connections; lb2 takes the VIP and resets them all.
// Runs several times and reports median/min/max; then shows that with conn_reset off the watch
// stays hung.
func TestClusterConnResetE2E(t *testing.T) {
	e := newClusterEnv(t)
	runs := 3
	var watchLat, allLat, lossLat, failover []time.Duration
	for run := 0; run < runs; run++ {
		_ = e.lb1.Rejoin()
		e.startPair(clusterOpts{connReset: true}, clusterOpts{connReset: true})
		ctx := vrrpCtx(t, 60*time.Second)
		conn, done, err := e.clusterWatch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		var idle []net.Conn
		idleDone := make(chan time.Time, 1000)
		if err := e.client.Do(func() error {
			d := net.Dialer{KeepAlive: -1, Timeout: 3 * time.Second}
			for i := 0; i < 1000; i++ {
				c, err := d.DialContext(ctx, "tcp4", net.JoinHostPort(e.vip.String(), "6443"))
				if err != nil {
					return err
				}
				idle = append(idle, c)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for _, c := range idle {
			t.Cleanup(func() { c.Close() })
			go func() {
				_, _ = c.Read(make([]byte, 1))
				idleDone <- time.Now()
			}()
		}
		time.Sleep(2500 * time.Millisecond) // two connection-table pushes
		// Power loss: cut lb1 off, then kill it (its FINs/RSTs reach nobody).
		if err := e.lb1.Isolate(); err != nil {
			t.Fatal(err)
		}
		e.v1.Kill()
		lossAt := time.Now()
		_, tm, err := proxyWaitSnap(ctx, e.v2, "lb2 MASTER", func(s *stats.Snapshot) bool { return s.VRRP.State == stats.StateMaster && s.VRRP.HoldsVIP })
		if err != nil {
			t.Fatal(err)
		}
		failover = append(failover, tm.Sub(lossAt))
		select {
		case err := <-done:
			lat := time.Since(tm)
			lossLat = append(lossLat, time.Since(lossAt))
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("watch ended with %v, want connection reset", err)
			}
			watchLat = append(watchLat, lat)
		case <-time.After(5 * time.Second):
			t.Fatalf("run %d: the watch was not reset within 5 s of lb2 taking the VIP", run)
		}
		var last time.Time
		for i := 0; i < 1000; i++ {
			select {
			case at := <-idleDone:
				last = at
			case <-time.After(10 * time.Second):
				t.Fatalf("run %d: only %d of 1000 idle connections reset", run, i)
			}
		}
		allLat = append(allLat, last.Sub(tm))
		// The client reconnects through the new master.
		c2, d2, err := e.clusterWatch(ctx)
		if err != nil {
			t.Fatalf("reconnect through lb2: %v", err)
		}
		c2.Close()
		<-d2
		for _, c := range idle {
			c.Close()
		}
		conn.Close()
	}
	stat := func(d []time.Duration) string {
		s := slices.Clone(d)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return fmt.Sprintf("median %s min %s max %s", s[len(s)/2].Round(time.Millisecond), s[0].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
	}
	t.Logf("%d runs, 200 ms adverts: failover (power loss -> lb2 MASTER seen in /stats.json) %s", runs, stat(failover))
	t.Logf("power loss -> idle watch reset: %s", stat(lossLat))
	t.Logf("lb2 MASTER -> watch reset: %s; -> all 1,000 idle connections reset: %s", stat(watchLat), stat(allLat))
	for _, d := range watchLat {
		if d > 1500*time.Millisecond {
			t.Errorf("watch reset %s after takeover, want < 1 s", d)
		}
	}

	// Without the feature the watch stays hung.
	_ = e.lb1.Rejoin()
	e.startPair(clusterOpts{connReset: false}, clusterOpts{connReset: false})
	ctx := vrrpCtx(t, 30*time.Second)
	conn, done, err := e.clusterWatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(2500 * time.Millisecond)
	_ = e.lb1.Isolate()
	e.v1.Kill()
	if _, _, err := proxyWaitSnap(ctx, e.v2, "lb2 MASTER", func(s *stats.Snapshot) bool { return s.VRRP.State == stats.StateMaster }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("with conn_reset off the watch ended anyway: %v", err)
	case <-time.After(5 * time.Second):
		t.Log("conn_reset off: the watch is still hung 5 s after the failover (as with Keepalived + HAProxy)")
	}
	_ = e.lb1.Rejoin()
}

// clusterWaitTCP waits until h can connect to addr.
func clusterWaitTCP(ctx context.Context, h *lab.Host, addr string) error {
	for {
		c, err := h.Dial(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: connect %s: %w (last: %v)", h.Name, addr, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
