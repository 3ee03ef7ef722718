package tcpproxy

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// Drain: no new connection goes to the drained backend, its open connection keeps working
// until the grace is over and is closed then; enable brings it back.
func TestAdminDrain(t *testing.T) {
	a := startBackend(t, "a", nameThenEcho)
	b := startBackend(t, "b", nameThenEcho)
	r := startProxy(t, testConfig(a.addr(), b.addr()), newFakeHealth())

	var open *net.TCPConn
	for i := 0; i < 4 && open == nil; i++ {
		name, c, err := hello(t, r.addr())
		if err != nil {
			t.Fatal(err)
		}
		if name == "a" {
			open = c
		} else {
			_ = c.Close()
		}
	}
	if open == nil {
		t.Fatal("no connection reached a")
	}
	if _, err := r.p.SetAdmin(a.addr(), AdminDrain, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		name, c, err := hello(t, r.addr())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		if name != "b" {
			t.Fatalf("new connection %d went to %s while a drains", i, name)
		}
	}
	if err := roundTrip(open, "still here"); err != nil {
		t.Fatalf("open connection to the draining backend failed before the grace: %v", err)
	}
	if st := r.p.Stats().Backends[0]; st.Admin.State != AdminDrain || st.Admin.GraceEnd.IsZero() {
		t.Fatalf("stats of a: %+v", st.Admin)
	}
	waitFor(t, 10*time.Second, "the drained backend's connection closed after the grace", func() bool {
		return r.p.Stats().Backends[0].CurrentSessions == 0
	})
	if err := roundTrip(open, "x"); err == nil {
		t.Fatal("connection to a still works after the grace")
	}
	if _, err := r.p.SetAdmin(a.addr(), AdminReady, 0); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for i := 0; i < 4; i++ {
		name, c, err := hello(t, r.addr())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		got[name]++
	}
	if got["a"] != 2 {
		t.Fatalf("after enable: %v, want 2 each", got)
	}
}

// Disable (MAINT) closes the open connections at once and takes no new ones; with every
// backend held the proxy cannot serve (the VRRP tracker hears it).
func TestAdminDisableAndServing(t *testing.T) {
	a := startBackend(t, "a", nameThenEcho)
	r := startProxy(t, testConfig(a.addr()), newFakeHealth())
	_, c, err := hello(t, r.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n, err := r.p.SetAdmin(a.addr(), AdminMaint, 0)
	if err != nil || n != 1 {
		t.Fatalf("SetAdmin maint: closed %d, %v; want 1 closed", n, err)
	}
	if err := roundTrip(c, "x"); err == nil {
		t.Fatal("connection to a disabled backend still works")
	}
	if ok, reason := r.p.CanServe(); ok {
		t.Fatalf("CanServe with the only backend disabled: %v %s", ok, reason)
	}
	// Refused: reset at once, which may beat the client's own connect (an error there).
	if c2, err := net.DialTimeout("tcp", r.addr(), 5*time.Second); err == nil {
		_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
		if line, err := bufio.NewReader(c2).ReadString('\n'); err == nil {
			t.Fatalf("a new connection was proxied to a disabled backend (%q)", line)
		}
		_ = c2.Close()
	}
	if _, err := r.p.SetAdmin("127.0.0.1:1", AdminMaint, 0); err == nil {
		t.Fatal("SetAdmin of an unknown backend succeeded")
	}
}

// Weights share out new connections for roundrobin; weight 0 takes none.
func TestAdminWeights(t *testing.T) {
	a := startBackend(t, "a", nameThenEcho)
	b := startBackend(t, "b", nameThenEcho)
	r := startProxy(t, testConfig(a.addr(), b.addr()), newFakeHealth())
	if err := r.p.SetWeight(a.addr(), 3); err != nil {
		t.Fatal(err)
	}
	count := func(n int) map[string]int {
		got := map[string]int{}
		for i := 0; i < n; i++ {
			name, c, err := hello(t, r.addr())
			if err != nil {
				t.Fatal(err)
			}
			_ = c.Close()
			got[name]++
		}
		return got
	}
	if got := count(8); got["a"] != 6 || got["b"] != 2 {
		t.Fatalf("weights 3:1: %v, want a=6 b=2", got)
	}
	if err := r.p.SetWeight(b.addr(), 0); err != nil {
		t.Fatal(err)
	}
	if got := count(4); got["b"] != 0 {
		t.Fatalf("weight 0: %v, want none to b", got)
	}
	if err := r.p.SetWeight(b.addr(), MaxWeight+1); err == nil {
		t.Fatal("weight above the maximum accepted")
	}
}

// A reload keeps the run-time state of a backend still in the file; a backend removed and
// added back starts READY at the default weight.
func TestAdminSurvivesReload(t *testing.T) {
	a := startBackend(t, "a", nameThenEcho)
	b := startBackend(t, "b", nameThenEcho)
	cfg := testConfig(a.addr(), b.addr())
	r := startProxy(t, cfg, newFakeHealth())
	if _, err := r.p.SetAdmin(a.addr(), AdminDrain, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := r.p.SetAdmin(b.addr(), AdminMaint, 0); err != nil {
		t.Fatal(err)
	}
	if err := r.p.SetWeight(b.addr(), 7); err != nil {
		t.Fatal(err)
	}
	if err := r.p.Update(testConfig(a.addr())); err != nil {
		t.Fatal(err)
	}
	if err := r.p.Update(cfg); err != nil {
		t.Fatal(err)
	}
	adm := r.p.Admin()
	if adm[0].State != AdminDrain || adm[1].State != AdminReady || adm[1].Weight != DefaultWeight {
		t.Fatalf("after reloads: %+v; want a DRAIN (kept), b READY weight %d (removed, then added)", adm, DefaultWeight)
	}
}
