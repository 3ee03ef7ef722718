package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipd-project/vipd/pkg/stats"
	"github.com/vipd-project/vipd/test/apiserverstub"
	"github.com/vipd-project/vipd/test/lab"
)

// TestBackendAdmin drives `vipd backend` on a real daemon in the lab, as an operator would,
// with a client's requests through the VIP: drain sends no new request to the backend and
// fails none, its open watch goes on until the grace and is closed then; disable closes the
// open watch at once; weights share requests out; every change is on /stats.json and /metrics
// and in the log with who asked; a user outside root and group vipd is refused even when the
// socket's mode lets it in; the states survive a reload and a restart (state_file).
func TestBackendAdmin(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces")
	}
	bin := vipdBin(t)
	ctx := context.Background()
	l := lab.New(t, lab.Options{Hosts: []string{"lb1", "m1", "m2", "client"}, Prefix: lab.RandomPrefix("vb")})
	lb1, client := l.Host("lb1"), l.Host("client")
	m1, m2 := l.Host("m1"), l.Host("m2")
	vip := l.Addr(100)
	vipAddr := net.JoinHostPort(vip.String(), "6443")
	be1, be2 := net.JoinHostPort(m1.Addr.String(), "6443"), net.JoinHostPort(m2.Addr.String(), "6443")
	if err := client.NoNeighLocktime(); err != nil {
		t.Fatal(err)
	}
	ms, err := apiserverstub.StartMasters(ctx, l, []*lab.Host{m1, m2}, []net.IP{vip.AsSlice()})
	if err != nil {
		t.Fatal(err)
	}
	tlsConf := ms.ClientTLS()
	cfg := proxyLBConfig{Name: "lb1", Priority: 100, VIP: vip, Backends: []string{be1, be2}}
	v := proxyStartVipd(t, lb1, bin, cfg)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("vipd log (tail):\n%s", v.Tail(60))
		}
	})
	if _, _, err := proxyWaitSnap(ctx, v, "MASTER with both backends UP", func(s *stats.Snapshot) bool {
		return s.VRRP.State == "MASTER" && proxyAllUp([]string{be1, be2})(s)
	}); err != nil {
		t.Fatal(err)
	}

	// cli runs `vipd backend ARGS --socket S` in lb1 and returns its output and exit code.
	cli := func(args ...string) (string, int) {
		t.Helper()
		argv := append([]string{bin, "backend"}, args...)
		argv = append(argv, "--socket", v.Socket)
		out, err := lb1.Command(ctx, argv...).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	backend := func(addr string) stats.BackendView {
		t.Helper()
		out, code := cli("list", "--json")
		var bs []stats.BackendView
		if code != 0 || json.Unmarshal([]byte(out), &bs) != nil {
			t.Fatalf("backend list --json: exit %d: %s", code, out)
		}
		for _, b := range bs {
			if b.Addr == addr {
				return b
			}
		}
		t.Fatalf("backend list has no %s: %s", addr, out)
		return stats.BackendView{}
	}

	// Open watches until one goes to each master.
	streams := map[string]*proxyStream{}
	for i := 0; i < 6 && len(streams) < 2; i++ {
		s := proxyOpenStream(t, client, tlsConf, "w", vipAddr)
		if streams[s.Host()] == nil {
			streams[s.Host()] = s
		} else {
			s.Close()
		}
	}
	if streams["m1"] == nil || streams["m2"] == nil {
		t.Fatalf("watches did not reach both masters: %v", streams)
	}

	prober := apiserverstub.StartProber(client.Dial, tlsConf, vipAddr, 20*time.Millisecond, 2*time.Second)
	defer prober.Stop()
	time.Sleep(300 * time.Millisecond)

	// Drain m1 by its host part, grace 3 s.
	drained := time.Now()
	if out, code := cli("drain", m1.Addr.String(), "--grace", "3s"); code != 0 || !strings.Contains(out, be1) {
		t.Fatalf("backend drain: exit %d: %s", code, out)
	}
	time.Sleep(1500 * time.Millisecond)
	rs := prober.Between(drained.Add(200*time.Millisecond), time.Now())
	if total, failed, byHost, errs := apiserverstub.Summary(rs); failed > 0 || byHost["m1"] > 0 || total < 20 {
		t.Fatalf("while m1 drains: %d requests, %d failed, by master %v (%v); want none failed and none to m1", total, failed, byHost, errs)
	}
	if err := streams["m1"].Err(); err != nil {
		t.Fatalf("m1's watch ended before the drain's grace: %v", err)
	}
	if b := backend(be1); b.Admin != "DRAIN" || b.Status != stats.BackendDrain || b.DrainEnds.IsZero() {
		t.Fatalf("backend list after drain: %+v", b)
	}
	proxyCheckMetrics(t, ctx, v, map[string]float64{
		`haproxy_server_status{proxy="kube-apiserver",server="` + be1 + `",state="DRAIN"}`: 1,
		`haproxy_server_status{proxy="kube-apiserver",server="` + be1 + `",state="UP"}`:    0,
	})
	deadline := time.Now().Add(8 * time.Second)
	for streams["m1"].Err() == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if streams["m1"].Err() == nil || time.Since(drained) < 2500*time.Millisecond {
		t.Fatalf("m1's watch: %v after %v; want it closed when the 3 s grace is over", streams["m1"].Err(), time.Since(drained))
	}
	if _, _, err := streams["m2"].Flowing(drained, 2*time.Second); err != nil {
		t.Fatalf("m2's watch was disturbed by m1's drain: %v", err)
	}

	// Enable m1 again; weights 3:1.
	if out, code := cli("enable", be1); code != 0 {
		t.Fatalf("backend enable: exit %d: %s", code, out)
	}
	if out, code := cli("weight", "m1", "3"); code == 0 {
		t.Fatalf("weight for a name that is no backend succeeded: %s", out)
	} else if code != 1 || !strings.Contains(out, `"m1"`) {
		t.Fatalf("weight for an unknown backend: exit %d (want 1), message %q should name it", code, out)
	}
	if out, code := cli("weight", be1, "3"); code != 0 {
		t.Fatalf("backend weight: exit %d: %s", code, out)
	}
	weighted := time.Now()
	time.Sleep(1200 * time.Millisecond)
	_, failed, byHost, _ := apiserverstub.Summary(prober.Between(weighted, time.Now()))
	if failed > 0 || byHost["m1"] < 2*byHost["m2"] || byHost["m2"] == 0 {
		t.Fatalf("weights 3:1: by master %v, %d failed; want about three times as many to m1", byHost, failed)
	}
	prober.Stop()

	// Disable m2: its watch is closed at once.
	disabled := time.Now()
	if out, code := cli("disable", be2); code != 0 || !strings.Contains(out, "1 open connections closed") {
		t.Fatalf("backend disable: exit %d: %s", code, out)
	}
	for streams["m2"].Err() == nil && time.Since(disabled) < 2*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	if streams["m2"].Err() == nil {
		t.Fatal("m2's watch still open 2 s after disable")
	}
	proxyCheckMetrics(t, ctx, v, map[string]float64{
		`haproxy_server_status{proxy="kube-apiserver",server="` + be2 + `",state="MAINT"}`: 1,
		`haproxy_server_weight{proxy="kube-apiserver",server="` + be1 + `"}`:               3,
	})
	if log := v.Log(); !strings.Contains(log, "backend disabled on request") || !strings.Contains(log, "by_uid=0") {
		t.Fatalf("the change is not logged with who asked:\n%s", v.Tail(10))
	}

	// A user outside root and group vipd: refused by its credentials, not only by the mode.
	// (The lab's directory is private: a hard link to the socket in an open one.)
	open, err := os.MkdirTemp("", "vipd-open-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(open)
	openSock := filepath.Join(open, "vipd.sock")
	if err := errors.Join(os.Chmod(open, 0o755), os.Chmod(v.Socket, 0o666), os.Link(v.Socket, openSock)); err != nil {
		t.Fatal(err)
	}
	out, err := lb1.Command(ctx, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		bin, "backend", "enable", be2, "--socket", openSock).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "may not change") {
		t.Fatalf("uid 65534 enabling a backend: %v: %s; want exit 1, refused", err, out)
	}
	if b := backend(be2); b.Admin != "MAINT" {
		t.Fatalf("a refused request changed the state: %+v", b)
	}
	if out, code := cli("weight", be1, "x"); code != 2 {
		t.Fatalf("weight x: exit %d (want 2, usage): %s", code, out)
	}

	// Reload: kept. Restart: kept (state_file).
	if err := v.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if b1, b2 := backend(be1), backend(be2); b1.Weight != 3 || b2.Admin != "MAINT" {
		t.Fatalf("after a reload: %+v %+v; want m1 weight 3, m2 MAINT", b1, b2)
	}
	if err := v.Term(); err != nil {
		t.Fatal(err)
	}
	if err := v.Wait(15 * time.Second); err != nil && !strings.Contains(err.Error(), "exit") {
		t.Logf("vipd stop: %v", err)
	}
	v2 := proxyStartVipd(t, lb1, bin, cfg)
	if _, _, err := proxyWaitSnap(ctx, v2, "restarted", func(s *stats.Snapshot) bool { return s.VRRP.State == "MASTER" }); err != nil {
		t.Fatal(err)
	}
	v = v2
	if b1, b2 := backend(be1), backend(be2); b1.Weight != 3 || b1.Admin != "READY" || b2.Admin != "MAINT" {
		t.Fatalf("after a restart: %+v %+v; want m1 READY weight 3, m2 MAINT (from state_file)", b1, b2)
	}
}
