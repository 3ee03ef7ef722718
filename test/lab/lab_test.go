package lab

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
}

func TestLabBasics(t *testing.T) {
	needRoot(t)
	l := New(t, Options{Hosts: []string{"a", "b"}})
	a, b := l.Host("a"), l.Host("b")
	if err := a.Ping(b.Addr, 3*time.Second); err != nil {
		t.Fatalf("a cannot ping b: %v", err)
	}
	macB, err := b.MAC()
	if err != nil || len(macB) != 17 {
		t.Fatalf("MAC of b: %q %v", macB, err)
	}
	if mac, _, err := a.Neighbour(b.Addr); err != nil || mac != macB {
		t.Fatalf("a's neighbour entry for b: %q (%v), want %s", mac, err, macB)
	}
	if ok, err := b.HasAddr(b.Addr.String() + "/24"); err != nil || !ok {
		t.Fatalf("b does not hold its own address: %v", err)
	}
	// No route out of a host: only the connected /24.
	out, err := a.Exec(context.Background(), "ip", "route", "show")
	if err != nil || strings.Contains(out, "default") {
		t.Fatalf("routes in a: %q %v", out, err)
	}

	// Drop cuts b from a; Undrop restores.
	if err := b.Drop("ip saddr " + a.Addr.String()); err != nil {
		t.Fatal(err)
	}
	if err := a.Ping(b.Addr, 500*time.Millisecond); err == nil {
		t.Fatal("ping went through an nft drop")
	}
	if err := b.Undrop(); err != nil {
		t.Fatal(err)
	}
	if err := a.Ping(b.Addr, 3*time.Second); err != nil {
		t.Fatalf("after Undrop: %v", err)
	}
	// DropPeer cuts one peer only.
	if err := a.DropPeer(b.Addr); err != nil {
		t.Fatal(err)
	}
	if err := a.Ping(b.Addr, 500*time.Millisecond); err == nil {
		t.Fatal("ping went through DropPeer")
	}
	if err := a.Undrop(); err != nil {
		t.Fatal(err)
	}
	// Isolate keeps carrier but cuts traffic; LinkDown drops carrier.
	if err := b.Isolate(); err != nil {
		t.Fatal(err)
	}
	if err := a.Ping(b.Addr, 500*time.Millisecond); err == nil {
		t.Fatal("ping reached an isolated host")
	}
	if err := b.Rejoin(); err != nil {
		t.Fatal(err)
	}
	if err := b.LinkDown(); err != nil {
		t.Fatal(err)
	}
	out, _ = b.Exec(context.Background(), "ip", "link", "show", "eth0")
	if !strings.Contains(out, "NO-CARRIER") {
		t.Fatalf("eth0 after LinkDown: %s", out)
	}
	if err := b.LinkUp(); err != nil {
		t.Fatal(err)
	}
	if err := a.Ping(b.Addr, 5*time.Second); err != nil {
		t.Fatalf("after LinkUp: %v", err)
	}

	// An address appears and WaitAddr sees it.
	vip := l.Addr(100)
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = b.Exec(context.Background(), "ip", "addr", "add", Prefix24(vip), "dev", "eth0")
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := b.WaitAddr(ctx, vip, true); err != nil {
		t.Fatal(err)
	}

	// Processes end by PID; SIGTERM reaches them.
	p, err := b.Start("sleep", []string{"sleep", "60"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(3 * time.Second); err == nil || p.Running() {
		t.Fatalf("sleep after SIGTERM: %v running=%v", err, p.Running())
	}
}

func TestPingerSeesOutage(t *testing.T) {
	needRoot(t)
	l := New(t, Options{Hosts: []string{"a", "b"}})
	a, b := l.Host("a"), l.Host("b")
	p, err := a.StartPinger(b.Addr, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	time.Sleep(200 * time.Millisecond)
	if err := b.Drop("icmp type echo-request"); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	time.Sleep(300 * time.Millisecond)
	if err := b.Undrop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	d, err := p.WaitReplyAfter(ctx, cut)
	if err != nil {
		t.Fatal(err)
	}
	if d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("first reply %v after the cut, want about 300ms", d)
	}
	sent, recv := p.Counts()
	t.Logf("first reply %v after a 300ms cut; %d sent, %d replies", d, sent, recv)
}

func TestCloseRemovesEverything(t *testing.T) {
	needRoot(t)
	l, err := Start(context.Background(), Options{Hosts: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.Host("x").Start("sleep", []string{"sleep", "60"}, "")
	if err != nil {
		_ = l.Close()
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if p.Running() {
		t.Fatal("process survived Close")
	}
	for _, ns := range []string{l.BridgeNS, l.Host("x").NS} {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			t.Fatalf("namespace %s survived Close", ns)
		}
	}
	if _, err := os.Stat(l.Dir); err == nil {
		t.Fatalf("dir %s survived Close", l.Dir)
	}
}
