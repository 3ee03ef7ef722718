package cluster

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vipd-project/vipd/test/lab"
)

// listConns is a ConnSource over a server's accepted connections.
type listConns struct {
	mu sync.Mutex
	cs []Conn
}

func (l *listConns) Conns() []Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Conn(nil), l.cs...)
}

// nsTransport dials gossip TCP connections from inside the host's namespace.
type nsTransport struct {
	*memberlist.NetTransport
	h *lab.Host
}

func (t *nsTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := t.h.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}

func (t *nsTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

// TestTakeoverResetsDeadMastersClients runs the whole path but VRRP in network namespaces: lb1
// holds 1,000 idle client connections through the VIP and shares its table over gossip; lb1 is
// cut off and stops without a word; 650 ms later (3 × 200 ms adverts + skew) lb2 takes the VIP
// and calls OnBecameMaster, and its raw-socket resetter makes every client's blocked read fail
// with ECONNRESET. Needs root.
func TestTakeoverResetsDeadMastersClients(t *testing.T) {
	l := lab.New(t, lab.Options{Hosts: []string{"lb1", "lb2", "client"}, Prefix: lab.RandomPrefix("vg")})
	lb1, lb2, client := l.Host("lb1"), l.Host("lb2"), l.Host("client")
	vip := l.Addr(100)
	ctx := context.Background()
	if _, err := lb1.Exec(ctx, "ip", "addr", "add", lab.Prefix24(vip), "dev", "eth0"); err != nil {
		t.Fatal(err)
	}

	// lb1's "proxy": accepts and holds connections, lists them as its table.
	table := &listConns{}
	var ln net.Listener
	if err := lb1.Do(func() (err error) {
		ln, err = net.Listen("tcp4", net.JoinHostPort(vip.String(), "6443"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var held []net.Conn
	var heldMu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, c)
			heldMu.Unlock()
			table.mu.Lock()
			table.cs = append(table.cs, Conn{Client: netip.MustParseAddrPort(c.RemoteAddr().String()),
				VIP: netip.MustParseAddrPort(c.LocalAddr().String())})
			table.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		heldMu.Lock()
		defer heldMu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})

	sa, sb := baseState("lb1", 100, lb1.Addr.String()), baseState("lb2", 90, lb2.Addr.String())
	sa.VRRPState = "MASTER"
	sa.VIPs, sb.VIPs = []string{lab.Prefix24(vip)}, []string{lab.Prefix24(vip)}
	la, lbl := &fakeLocal{st: sa}, &fakeLocal{st: sb}
	key := writeKey(t, testKey)
	logs := &syncBuf{}
	start := func(h *lab.Host, local *fakeLocal, conns ConnSource, peer *lab.Host) *Cluster {
		return startInNS(t, h, peer, local, conns, key, logs)
	}
	a := start(lb1, la, table, lb2)
	b := start(lb2, lbl, &listConns{}, lb1)
	if b.resetter == nil {
		t.Fatalf("lb2 has no resetter:\n%s", logs.String())
	}

	const n = 1000
	var conns []net.Conn
	if err := client.Do(func() error {
		d := net.Dialer{KeepAlive: -1, Timeout: 3 * time.Second}
		for i := 0; i < n; i++ {
			c, err := d.Dial("tcp4", net.JoinHostPort(vip.String(), "6443"))
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	type end struct {
		err error
		at  time.Time
	}
	ends := make(chan end, n)
	for _, c := range conns {
		go func() {
			_, err := c.Read(make([]byte, 1))
			ends <- end{err, time.Now()}
		}()
	}
	nb := &node{c: b}
	ok := false
	for i := 0; i < 100 && !ok; i++ {
		ok = nb.tableLen("lb1") == n
		time.Sleep(100 * time.Millisecond)
	}
	if !ok {
		t.Fatalf("lb2 has %d of lb1's connections (lb1 lists %d); view %+v\nlog:\n%s", nb.tableLen("lb1"), len(table.Conns()), b.View(), logs.String())
	}

	// Power loss on lb1: cut off, gossip stops without a leave.
	if err := lb1.Isolate(); err != nil {
		t.Fatal(err)
	}
	a.cancel()
	a.wg.Wait()
	_ = a.ml.Shutdown()
	a.cancel = nil
	time.Sleep(650 * time.Millisecond)
	// lb2 takes the VIP; the gratuitous ARP is simulated by setting the client's neighbour entry.
	if _, err := lb2.Exec(ctx, "ip", "addr", "add", lab.Prefix24(vip), "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	mac, err := lb2.MAC()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Exec(ctx, "ip", "neigh", "replace", vip.String(), "lladdr", mac, "dev", "eth0", "nud", "reachable"); err != nil {
		t.Fatal(err)
	}
	lbl.set(func(s *NodeState) { s.VRRPState = "MASTER"; s.HoldsVIP = true })
	took := time.Now()
	b.OnBecameMaster()
	var lat []time.Duration
	for len(lat) < n {
		select {
		case e := <-ends:
			if !errors.Is(e.err, syscall.ECONNRESET) {
				t.Fatalf("client read ended with %v, want connection reset", e.err)
			}
			lat = append(lat, e.at.Sub(took))
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d client connections reset; log:\n%s", len(lat), n, logs.String())
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("after OnBecameMaster: first client reset %s, median %s, last (1000th) %s",
		lat[0].Round(time.Millisecond), lat[n/2].Round(time.Millisecond), lat[n-1].Round(time.Millisecond))
	if lat[0] > time.Second {
		t.Errorf("first reset %s after takeover, want < 1 s", lat[0])
	}
	waitFor(t, 3*time.Second, "1000 probes counted in each of two rounds", func() bool { return b.View().Counters.ConnResetProbes == 2*n })
}

// startInNS starts a Cluster whose sockets all live in host h's namespace.
func startInNS(t *testing.T, h, peer *lab.Host, local Local, conns ConnSource, key string, logs *syncBuf) *Cluster {
	t.Helper()
	cfg := Config{Enabled: true, NodeName: h.Name, Bind: net.JoinHostPort(h.Addr.String(), "7946"),
		Peers: []string{net.JoinHostPort(peer.Addr.String(), "7946")}, KeyFile: key, ConnReset: true, ConnResetRate: 2000}
	c, err := New(cfg, Deps{Local: local, Conns: conns, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// Listening sockets (gossip, raw) are created in the host's namespace by Start; outbound
	// gossip connections are dialled there too by nsTransport (never from the test's own
	// namespace).
	c.configHook = func(mc *memberlist.Config) error {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{mc.BindAddr}, BindPort: mc.BindPort, Logger: mc.Logger})
		if err != nil {
			return err
		}
		mc.Transport = &nsTransport{NetTransport: nt, h: h}
		return nil
	}
	if err := h.Do(func() error { return c.Start(context.Background()) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

// TestPartitionHeals: a full partition (lb2's port off the bridge) makes both sides report the
// peer lost; when it heals the cluster reforms on its own and the alarms clear. Needs root.
func TestPartitionHeals(t *testing.T) {
	l := lab.New(t, lab.Options{Hosts: []string{"lb1", "lb2"}, Prefix: lab.RandomPrefix("vg")})
	lb1, lb2 := l.Host("lb1"), l.Host("lb2")
	key := writeKey(t, testKey)
	logs := &syncBuf{}
	a := &node{c: startInNS(t, lb1, lb2, &fakeLocal{st: baseState("lb1", 100, lb1.Addr.String())}, nil, key, logs)}
	b := &node{c: startInNS(t, lb2, lb1, &fakeLocal{st: baseState("lb2", 90, lb2.Addr.String())}, nil, key, logs)}
	both := func(what string, within time.Duration, cond func(n *node, peer string) bool) time.Duration {
		return waitFor(t, within, what, func() bool { return cond(a, "lb2") && cond(b, "lb1") })
	}
	both("joined", 10*time.Second, func(n *node, p string) bool { m, _ := n.member(p); return m.Alive })
	if err := lb2.Isolate(); err != nil {
		t.Fatal(err)
	}
	d := both("peer_lost on both sides", 5*time.Second, func(n *node, p string) bool { _, ok := n.alarm(AlarmPeerLost, p); return ok })
	t.Logf("partition: peer_lost on both after %s", d.Round(time.Millisecond))
	time.Sleep(3 * time.Second) // long enough for memberlist to declare the other dead
	if err := lb2.Rejoin(); err != nil {
		t.Fatal(err)
	}
	d = both("reformed, alarms clear", 15*time.Second, func(n *node, p string) bool {
		m, _ := n.member(p)
		return m.Alive && len(n.c.Alarms()) == 0
	})
	t.Logf("heal: cluster reformed and alarms cleared after %s", d.Round(time.Millisecond))
}
