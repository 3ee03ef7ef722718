package connreset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vipd-project/vipd/test/lab"
)

// clab is three hosts of the project's netns harness (test/lab): client "c" (labClient) and
// the two LBs "a" and "b", on a bridge that lives in a namespace of its own.
type clab struct{ *lab.Lab }

const (
	labVIP    = "10.231.0.100"
	labClient = "10.231.0.10"
)

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newLab(t *testing.T) *clab {
	t.Helper()
	return &clab{lab.New(t, lab.Options{Hosts: []string{"c", "a", "b"}, Subnet: netip.MustParsePrefix("10.231.0.0/24"), HostBase: 10})}
}

// ns is host h's namespace name, for ip -n.
func (l *clab) ns(h string) string { return l.Host(h).NS }

// in runs fn on a thread switched into host h's namespace; sockets fn creates live there.
func (l *clab) in(h string, fn func() error) error { return l.Host(h).Do(fn) }

type readResult struct {
	idx int
	err error
	at  time.Time
}

// TestResetAfterFailover: an idle client connection to the VIP on lb1; the VIP moves to lb2
// (lb1 cut off without a FIN, like a crash). Without a probe the client stays blocked; with the
// probe sent from lb2 its read fails with ECONNRESET within 1 s. Then 1,000 connections are
// reset at the default rate and timed; a connection lb2 holds itself is left alone.
func TestResetAfterFailover(t *testing.T) {
	l := newLab(t)
	const tracked = 1000
	vip := netip.MustParseAddr(labVIP)
	ipCmd(t, "-n", l.ns("a"), "addr", "add", labVIP+"/24", "dev", "eth0")

	// lb1: a server that accepts and never answers.
	var ln net.Listener
	if err := l.in("a", func() (err error) {
		ln, err = net.Listen("tcp4", labVIP+":6443")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var srvMu sync.Mutex
	var srvConns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			srvMu.Lock()
			srvConns = append(srvConns, c)
			srvMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		srvMu.Lock()
		defer srvMu.Unlock()
		for _, c := range srvConns {
			c.Close()
		}
	})

	// The client: tracked+1 idle connections without keepalive; conns[0] is the control.
	var conns []net.Conn
	if err := l.in("c", func() error {
		d := net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}
		for i := 0; i < tracked+1; i++ {
			c, err := d.Dial("tcp4", labVIP+":6443")
			if err != nil {
				return fmt.Errorf("dial %d: %w", i, err)
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
	results := make(chan readResult, len(conns))
	for i, c := range conns {
		go func() {
			_, err := c.Read(make([]byte, 1))
			results <- readResult{i, err, time.Now()}
		}()
	}

	// Failover: lb1 is cut off (no FIN), lb2 takes the VIP, the client learns lb2's MAC (GARP).
	ipCmd(t, "-n", l.ns("a"), "link", "set", "eth0", "down")
	ipCmd(t, "-n", l.ns("b"), "addr", "add", labVIP+"/24", "dev", "eth0")
	macB := strings.Fields(ipCmd(t, "-n", l.ns("b"), "-br", "link", "show", "eth0"))[2]
	ipCmd(t, "-n", l.ns("c"), "neigh", "replace", labVIP, "lladdr", macB, "dev", "eth0", "nud", "reachable")
	failover := time.Now()

	// lb2 holds a connection of its own to the VIP: it must never be probed.
	var own net.Listener
	if err := l.in("b", func() (err error) {
		own, err = net.Listen("tcp4", labVIP+":7000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Close() })
	var ownClient net.Conn
	if err := l.in("c", func() (err error) {
		ownClient, err = net.DialTimeout("tcp4", labVIP+":7000", 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ownClient.Close() })
	ownSrv, err := own.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ownSrv.Close() })

	conn := func(i int) Conn {
		return Conn{Client: netip.MustParseAddrPort(conns[i].LocalAddr().String()), VIP: netip.AddrPortFrom(vip, 6443)}
	}
	ownConn := Conn{Client: netip.MustParseAddrPort(ownClient.LocalAddr().String()), VIP: netip.AddrPortFrom(vip, 7000)}

	var r *Resetter
	if err := l.in("b", func() (err error) {
		r, err = New(Config{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	reset := func(cs []Conn) Result {
		var res Result
		if err := l.in("b", func() (err error) {
			res, err = r.Reset(context.Background(), cs)
			return err
		}); err != nil {
			t.Fatalf("Reset: %v", err)
		}
		return res
	}

	// 1. One connection (plus lb2's own, which must be skipped).
	start := time.Now()
	res := reset([]Conn{conn(1), ownConn})
	if res.Sent != 1 || res.Held != 1 {
		t.Fatalf("first reset: %+v (want 1 sent, 1 held here)", res)
	}
	select {
	case rr := <-results:
		if rr.idx != 1 {
			t.Fatalf("connection %d ended (%v), expected 1", rr.idx, rr.err)
		}
		if !errors.Is(rr.err, syscall.ECONNRESET) {
			t.Fatalf("client read error = %v, want connection reset", rr.err)
		}
		t.Logf("single connection: client read failed with %q %s after the probe", rr.err, rr.at.Sub(start).Round(time.Microsecond))
		if d := rr.at.Sub(start); d > time.Second {
			t.Errorf("reset took %s, want < 1s", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("client connection not reset within 2s of the probe")
	}
	// lb2's own connection still works.
	if _, err := ownClient.Write([]byte("x")); err != nil {
		t.Fatalf("lb2's own connection broken: %v", err)
	}
	_ = ownSrv.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(ownSrv, make([]byte, 1)); err != nil {
		t.Fatalf("lb2's own connection broken: %v", err)
	}

	// 2. The other 999 at the default rate (5000/s).
	var batch []Conn
	for i := 2; i <= tracked; i++ {
		batch = append(batch, conn(i))
	}
	start = time.Now()
	res = reset(batch)
	if res.Sent != len(batch) {
		t.Fatalf("batch: %+v", res)
	}
	var lat []time.Duration
	deadline := time.After(10 * time.Second)
	for len(lat) < len(batch) {
		select {
		case rr := <-results:
			if rr.idx == 0 {
				t.Fatalf("the control connection (never probed) ended: %v", rr.err)
			}
			if !errors.Is(rr.err, syscall.ECONNRESET) {
				t.Errorf("connection %d: %v, want connection reset", rr.idx, rr.err)
			}
			lat = append(lat, rr.at.Sub(start))
		case <-deadline:
			t.Fatalf("only %d of %d connections reset within 10s", len(lat), len(batch))
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("%d connections at the default rate: probes sent in %s; all clients reset after %s (median %s)",
		len(batch), res.Duration.Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), lat[len(lat)/2].Round(time.Millisecond))
	if last := lat[len(lat)-1]; last > 3*time.Second {
		t.Errorf("resetting %d connections took %s, want about 0.2s at 5000/s", len(batch), last)
	}

	// 3. Without the probe the control connection stays hung.
	if wait := 3*time.Second - time.Since(failover); wait > 0 {
		time.Sleep(wait)
	}
	select {
	case rr := <-results:
		t.Fatalf("connection %d ended without a probe: %v", rr.idx, rr.err)
	default:
	}
	t.Logf("control connection still blocked %s after failover (no probe sent)", time.Since(failover).Round(time.Millisecond))
}
