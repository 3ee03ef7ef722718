package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestKeepalivedPair checks the Keepalived harness itself (config, pid files, Crash): two
// Keepalived peers like the reference elect the higher priority, and the other takes over
// after a crash.
func TestKeepalivedPair(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Skip("keepalived not installed (apt-get install keepalived)")
	}
	l := New(t, Options{Hosts: []string{"lb1", "lb2", "client"}})
	lb1, lb2 := l.Host("lb1"), l.Host("lb2")
	vip := l.Addr(100)
	k1, err := lb1.StartKeepalived(KeepalivedOptions{VIP: vip, Priority: 100, State: "MASTER"})
	if err != nil {
		t.Fatal(err)
	}
	k2, err := lb2.StartKeepalived(KeepalivedOptions{VIP: vip, Priority: 90})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*Keepalived{k1, k2} {
		if err := k.WaitStarted(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := lb1.WaitAddr(ctx, vip, true); err != nil {
		t.Fatalf("%v\n%s", err, k1.Tail(20))
	}
	child := k1.VRRPPID()
	k1.Crash()
	for i := 0; isChild(child, k1.PID) || alive(child); i++ {
		if i > 100 {
			t.Fatal("VRRP child survived Crash")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t0 := time.Now()
	if _, err := lb2.WaitAddr(ctx, vip, true); err != nil {
		t.Fatalf("%v\n%s", err, k2.Tail(20))
	}
	t.Logf("keepalived backup took the VIP %v after the crash", time.Since(t0).Round(time.Millisecond))
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && !strings.HasPrefix(s[i+1:], " Z")
}
