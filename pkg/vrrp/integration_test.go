package vrrp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// node is one Router running inside a lab host.
type node struct {
	h      *thost
	r      *Router
	cancel context.CancelFunc
	errc   chan error
}

func startNode(t *testing.T, h *thost, cfg Config) *node {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t, h.Name}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var r *Router
	if err := h.Do(func() error {
		var err error
		r, err = New(cfg, log)
		return err
	}); err != nil {
		t.Fatalf("%s: New: %v", h.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{h: h, r: r, cancel: cancel, errc: make(chan error, 1)}
	go func() { n.errc <- r.Run(ctx) }()
	t.Cleanup(n.stop)
	select {
	case <-r.Ready():
	case err := <-n.errc:
		t.Fatalf("%s: Run: %v", h.Name, err)
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: not ready after 15 s", h.Name)
	}
	return n
}

func (n *node) stop() {
	n.cancel()
	select {
	case <-n.r.Done():
	case <-time.After(15 * time.Second):
	}
}

type testWriter struct {
	t    *testing.T
	name string
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s: %s", w.name, strings.TrimSpace(string(p)))
	return len(p), nil
}

// labAdvert is the advert interval of the lab tests that check that nothing
// moves: long enough that a loaded machine (load average 30 on 2 cores here)
// does not starve a backup of its master's adverts for a Master_Down_Interval
// (3 x 300 ms + skew); labMasterDown is a wait longer than that interval.
const (
	labAdvert     = 300 * time.Millisecond
	labMasterDown = 4 * labAdvert
)

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timeout after %v waiting for %s", timeout, what)
	return 0
}

func (n *node) is(s State) bool { return n.r.Status().State == s }

func (n *node) hasVIP(t *testing.T, vip netip.Addr) bool {
	t.Helper()
	ok, err := n.h.HasAddr(vip.String())
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// sendHostile sends hand-made IPv4 packets (IP_HDRINCL, so TTL and source
// can be anything) from host h to dst.
func sendHostile(t *testing.T, h *thost, dst netip.Addr, pkts [][]byte) {
	t.Helper()
	err := h.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Addr: dst.As4()}
		for i, p := range pkts {
			if err := unix.Sendto(fd, p, 0, to); err != nil {
				return fmt.Errorf("sendto %s: %w", dst, err)
			}
			if i%100 == 99 {
				// Bounded rate: the point is counting, not overflowing
				// the kernel's socket buffer.
				time.Sleep(2 * time.Millisecond)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// hostilePackets builds the hostile stream. src is the (possibly forged)
// source; in unicast mode pass the target's configured peer to forge it, and
// stranger for the unknown_source packets.
func hostilePackets(src, stranger, dst netip.Addr, vip netip.Addr, unicast bool) ([][]byte, map[string]int) {
	mk := func(mod func(p *Packet)) []byte {
		p := Packet{Version: 3, VRID: 51, Priority: 254, AdvertInterval: 100 * time.Millisecond, Addrs: []netip.Addr{vip}}
		mod(&p)
		b, _ := p.Marshal(src, dst)
		return b
	}
	var out [][]byte
	want := map[string]int{}
	add := func(reason string, n int, pkt []byte) {
		for i := 0; i < n; i++ {
			out = append(out, pkt)
		}
		want[reason] += n
	}
	good := mk(func(*Packet) {})
	add("ttl", 200, ipPacket(64, src, dst, good))
	bad := append([]byte(nil), good...)
	bad[6] ^= 0xff
	add("checksum", 200, ipPacket(255, src, dst, bad))
	v4 := append([]byte(nil), good...)
	v4[0] = 0x41
	add("version", 200, ipPacket(255, src, dst, v4))
	add("length", 200, ipPacket(255, src, dst, good[:5]))
	add("vrid", 50, ipPacket(255, src, dst, mk(func(p *Packet) { p.VRID = 52 })))
	add("addr_list", 50, ipPacket(255, src, dst, mk(func(p *Packet) { p.Addrs = []netip.Addr{src} })))
	if unicast {
		// A well-formed, on-link, higher-priority advert from a host that
		// is not a configured peer.
		sg := Packet{Version: 3, VRID: 51, Priority: 254, AdvertInterval: 100 * time.Millisecond, Addrs: []netip.Addr{vip}}
		sb, _ := sg.Marshal(stranger, dst)
		add("unknown_source", 200, ipPacket(255, stranger, dst, sb))
	}
	return out, want
}

// TestRouterFailoverLab runs two Routers in network namespaces of a lab
// (root only): exactly one master, hostile packets dropped and counted
// without effect, graceful handover by priority 0, preemption back,
// tracking, link loss, for multicast and unicast.
func TestRouterFailoverLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	for _, mode := range []string{"multicast", "unicast"} {
		t.Run(mode, func(t *testing.T) { testFailover(t, mode == "unicast") })
	}
}

func testFailover(t *testing.T, unicast bool) {
	l := newTLab(t, "10.77.51.0/24", "lb1", "lb2", "client")
	lb1h, lb2h, client := l.Host("lb1"), l.Host("lb2"), l.Host("client")
	vip := l.Addr(100)
	base := Config{
		Interface: lb1h.Iface, VRID: 51, Version: 3, AdvertInterval: labAdvert,
		Preempt: true, VIPs: []netip.Prefix{netip.PrefixFrom(vip, 24)}, TrackInterface: true,
		GARPCount: 3, GARPInterval: 100 * time.Millisecond,
	}.WithDefaults()
	c1, c2 := base, base
	c1.Priority, c2.Priority = 100, 90
	if unicast {
		c1.UnicastPeers = []netip.Addr{lb2h.Addr}
		c2.UnicastPeers = []netip.Addr{lb1h.Addr}
	}
	// A VIP left behind on lb2 by a "crash" must be removed at start.
	if _, err := lb2h.Exec(context.Background(), "ip", "addr", "add", netip.PrefixFrom(vip, 24).String(), "dev", lb2h.Iface); err != nil {
		t.Fatal(err)
	}
	if err := client.NoNeighLocktime(); err != nil {
		t.Fatal(err)
	}

	lb2 := startNode(t, lb2h, c2)
	changes := make(chan [2]State, 64)
	lb2.r.OnStateChange(func(from, to State) {
		select {
		case changes <- [2]State{from, to}:
		default:
		}
	})
	sub, unsub := lb2.r.Subscribe()
	defer unsub()
	lb1 := startNode(t, lb1h, c1)
	d := waitFor(t, "lb1 MASTER and lb2 BACKUP", 15*time.Second, func() bool { return lb1.is(StateMaster) && lb2.is(StateBackup) })
	t.Logf("election settled %v after start", d)
	// Started together, both may time out before hearing the other (seen
	// under load): the higher priority then wins within an interval. Let a
	// Master_Down_Interval pass, then wait for the settled state again.
	time.Sleep(labMasterDown)
	waitFor(t, "lb1 MASTER with the VIP, lb2 BACKUP without it", 15*time.Second, func() bool {
		return lb1.is(StateMaster) && lb2.is(StateBackup) && lb1.hasVIP(t, vip) && !lb2.hasVIP(t, vip)
	})
	for len(changes) > 0 {
		<-changes // the startup transitions; the test below looks at later ones
	}
	if !lb1.hasVIP(t, vip) || lb2.hasVIP(t, vip) {
		t.Fatalf("VIP on lb1=%v lb2=%v, want only lb1", lb1.hasVIP(t, vip), lb2.hasVIP(t, vip))
	}
	if st := lb2.r.Status(); st.MasterAddr != lb1h.Addr || st.LastAdvertFrom != lb1h.Addr || lb2.r.LastAdvertFrom(lb1h.Addr).IsZero() {
		t.Fatalf("lb2 status: master %v last advert from %v", st.MasterAddr, st.LastAdvertFrom)
	}
	// The client reaches the VIP at lb1's MAC.
	if _, err := client.Exec(context.Background(), "ping", "-c1", "-W1", vip.String()); err != nil {
		t.Fatal(err)
	}
	mac1, _ := lb1h.MAC()
	mac2, _ := lb2h.MAC()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := client.WaitNeighbour(ctx, vip, mac1); err != nil {
		t.Fatal(err)
	}

	// Hostile packets at both routers: nothing moves, every one counted.
	for _, n := range []*node{lb1, lb2} {
		src := client.Addr
		if unicast {
			// Forge the configured peer's address: only TTL, checksum,
			// etc. can catch these.
			src = lb1h.Addr
			if n == lb1 {
				src = lb2h.Addr
			}
		}
		pkts, want := hostilePackets(src, client.Addr, n.h.Addr, vip, unicast)
		before := n.r.Status().Drops
		sendHostile(t, client, n.h.Addr, pkts)
		deadline := time.Now().Add(15 * time.Second)
		for {
			got := n.r.Status().Drops
			missing := ""
			for k, v := range want {
				if got[k]-before[k] < uint64(v) {
					missing += fmt.Sprintf(" %s: %d of %d", k, got[k]-before[k], v)
				}
			}
			if missing == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not count all hostile packets:%s", n.h.Name, missing)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// A flood (1 s at full speed, at most 100k packets) of garbage at the
	// backup: it must keep hearing the master (no transition).
	trans := len(lb2.r.Status().Transitions)
	sum := func(m map[string]uint64) (n uint64) {
		for _, v := range m {
			n += v
		}
		return n
	}
	before := sum(lb2.r.Status().Drops)
	flood := ipPacket(64, client.Addr, lb2h.Addr, []byte{0x31, 51, 200, 1, 0, 10, 0, 0, 10, 77, 51, 100})
	sent := 0
	if err := client.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Addr: lb2h.Addr.As4()}
		end := time.Now().Add(time.Second)
		for sent < 100000 && time.Now().Before(end) {
			if err := unix.Sendto(fd, flood, 0, to); err == nil {
				sent++
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(labMasterDown) // > Master_Down_Interval: a stalled loop would show
	st2 := lb2.r.Status()
	t.Logf("flood: %d packets sent in 1 s, %d counted as drops by lb2 (%v)", sent, sum(st2.Drops)-before, st2.Drops)
	if len(st2.Transitions) != trans || st2.State != StateBackup {
		t.Fatalf("garbage flood moved lb2: %v, transitions %+v", st2.State, st2.Transitions[trans:])
	}
	if !lb1.is(StateMaster) || !lb2.is(StateBackup) || !lb1.hasVIP(t, vip) {
		t.Fatalf("hostile packets moved the VIP: lb1 %v lb2 %v", lb1.r.Status().State, lb2.r.Status().State)
	}
	t.Logf("lb1 drops %v", lb1.r.Status().Drops)

	// Graceful stop of the master: priority 0, lb2 takes over after Skew_Time.
	start := time.Now()
	lb1.stop()
	d = waitFor(t, "lb2 MASTER with the VIP", 15*time.Second, func() bool { return lb2.is(StateMaster) && lb2.hasVIP(t, vip) })
	t.Logf("graceful handover: lb2 master with VIP %v after cancel (skew %v)", time.Since(start), 166*labAdvert/256)
	sawMaster := false
	for len(changes) > 0 {
		c := <-changes
		sawMaster = sawMaster || (c == [2]State{StateBackup, StateMaster})
	}
	if !sawMaster {
		t.Fatal("OnStateChange did not report BACKUP -> MASTER on lb2")
	}
	select {
	case st := <-sub:
		if st.State != StateMaster {
			t.Fatalf("Subscribe: latest status %v, want MASTER", st.State)
		}
	default:
		t.Fatal("Subscribe delivered nothing")
	}
	if err := <-lb1.errc; err != nil {
		t.Fatalf("lb1 Run: %v", err)
	}
	if lb1.hasVIP(t, vip) {
		t.Fatal("lb1 kept the VIP after a graceful stop")
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel2()
	if err := client.WaitNeighbour(ctx2, vip, mac2); err != nil {
		t.Fatalf("client's neighbour entry did not move to lb2: %v", err)
	}
	_ = d

	// lb1 returns and preempts.
	lb1 = startNode(t, lb1h, c1)
	d = waitFor(t, "lb1 preempting", 15*time.Second, func() bool {
		return lb1.is(StateMaster) && lb2.is(StateBackup) && lb1.hasVIP(t, vip) && !lb2.hasVIP(t, vip)
	})
	t.Logf("preemption took %v", d)

	// Tracking: lb1 drops to 80 < 90, lb2 preempts; back to 100, lb1 preempts.
	tr := lb1.r.Track("proxy", 20)
	tr.Set(true, "no backends")
	d = waitFor(t, "lb2 taking over from tracked-down lb1", 15*time.Second, func() bool { return lb2.is(StateMaster) && lb1.is(StateBackup) })
	t.Logf("tracking handover took %v", d)
	if st := lb1.r.Status(); st.EffectivePriority != 80 || len(st.Tracks) != 1 || !st.Tracks[0].Failing {
		t.Fatalf("lb1 status after track: %+v", st)
	}
	tr.Set(false, "")
	waitFor(t, "lb1 back", 15*time.Second, func() bool { return lb1.is(StateMaster) && lb2.is(StateBackup) })

	// Weight 0 = FAULT.
	ft := lb1.r.Track("listener", 0)
	ft.Set(true, "bind failed")
	waitFor(t, "lb1 FAULT, lb2 MASTER", 15*time.Second, func() bool { return lb1.is(StateFault) && lb2.is(StateMaster) && !lb1.hasVIP(t, vip) })
	ft.Set(false, "")
	waitFor(t, "lb1 back after fault", 15*time.Second, func() bool { return lb1.is(StateMaster) && lb2.is(StateBackup) })

	// Link down on lb1: FAULT and VIP removed; up again: back to master.
	if err := lb1h.LinkDown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "lb1 FAULT on link down", 15*time.Second, func() bool { return lb1.is(StateFault) && !lb1.hasVIP(t, vip) && lb2.is(StateMaster) })
	if err := lb1h.LinkUp(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "lb1 MASTER after link up", 15*time.Second, func() bool { return lb1.is(StateMaster) && lb2.is(StateBackup) })
	// Partition (carrier stays up): both become master; heal: exactly one
	// master again, and lb1's re-announce moves the client back to it.
	if err := lb1h.Isolate(); err != nil {
		t.Fatal(err)
	}
	d = waitFor(t, "both MASTER during the partition", 15*time.Second, func() bool { return lb1.is(StateMaster) && lb2.is(StateMaster) })
	t.Logf("partition: lb2 became master too after %v", d)
	// The client now follows lb2 (its GARP); after healing lb1 must win it back.
	ctx3, cancel3 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel3()
	if err := client.WaitNeighbour(ctx3, vip, mac2); err != nil {
		t.Fatal(err)
	}
	if err := lb1h.Rejoin(); err != nil {
		t.Fatal(err)
	}
	d = waitFor(t, "one master after healing", 15*time.Second, func() bool { return lb1.is(StateMaster) && lb2.is(StateBackup) && !lb2.hasVIP(t, vip) })
	t.Logf("partition healed: one master again %v after rejoin", d)
	if err := client.WaitNeighbour(ctx3, vip, mac1); err != nil {
		t.Fatalf("client not moved back to lb1 after healing: %v", err)
	}
	if _, err := client.Exec(context.Background(), "ping", "-c1", "-W1", vip.String()); err != nil {
		t.Fatal(err)
	}

	garps := lb1.r.Status().GARPsSent
	lb1.r.Announce()
	waitFor(t, "GARPs after Announce", 15*time.Second, func() bool { return lb1.r.Status().GARPsSent > garps })

	st := lb1.r.Status()
	if len(st.Transitions) < 5 || st.AdvertsSent == 0 || st.GARPsSent == 0 {
		t.Fatalf("lb1 status: %d transitions, %d adverts, %d GARPs", len(st.Transitions), st.AdvertsSent, st.GARPsSent)
	}
}

// TestNewPreflightErrors checks the start-up errors a user sees (root only).
func TestNewPreflightErrors(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	l := newTLab(t, "10.77.52.0/24", "h")
	h := l.Host("h")
	if _, err := h.Exec(context.Background(), "ip", "link", "add", "vx0", "type", "veth", "peer", "name", "vx1"); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Interface: "nosuch0", VRID: 51, VIPs: []netip.Prefix{netip.MustParsePrefix("10.77.52.100/24")}}.WithDefaults()
	err := h.Do(func() error { _, err := New(cfg, nil); return err })
	if err == nil || !strings.Contains(err.Error(), `"nosuch0"`) || !strings.Contains(err.Error(), "eth0") {
		t.Fatalf("missing interface: %v", err)
	}
	cfg.Interface = "vx0"
	err = h.Do(func() error { _, err := New(cfg, nil); return err })
	if err == nil || !strings.Contains(err.Error(), "no IPv4 address") || !strings.Contains(err.Error(), "unicast_source") {
		t.Fatalf("address-less interface: %v", err)
	}
	cfg.Interface = "eth0"
	cfg.Version = 3
	cfg.AuthPass = "x"
	err = h.Do(func() error { _, err := New(cfg, nil); return err })
	if err == nil || !strings.Contains(err.Error(), "vrrp.auth_pass") {
		t.Fatalf("invalid config: %v", err)
	}
}

// TestNewMissingCapabilities drops CAP_NET_ADMIN and CAP_NET_RAW from the
// effective set of one OS thread (capabilities are per thread on Linux) and
// checks that New says what is missing and what to do.
func TestNewMissingCapabilities(t *testing.T) {
	cfg := Config{Interface: "lo", VRID: 51, VIPs: []netip.Prefix{netip.MustParsePrefix("10.77.53.100/24")}}.WithDefaults()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is discarded
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		data[0].Effective &^= 1<<unix.CAP_NET_ADMIN | 1<<unix.CAP_NET_RAW
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		_, err := New(cfg, nil)
		errc <- err
	}()
	err := <-errc
	if err == nil {
		t.Fatal("New succeeded without CAP_NET_ADMIN/CAP_NET_RAW")
	}
	for _, want := range []string{"CAP_NET_ADMIN", "CAP_NET_RAW", "deploy/vipd.service", "root"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not mention %s", err, want)
		}
	}
}
