package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vipd-project/vipd/pkg/stats"
	"github.com/vipd-project/vipd/test/apiserverstub"
	"github.com/vipd-project/vipd/test/lab"
)

// TestProxyHoldersAreReclaimed: a host on the network (the "attacker") opens connections to
// the VIP until its per-source cap and leaves them silent (never a first byte) or half-closed
// (it sends a request with Connection: close, gets the answer and the apiserver's FIN, and
// never closes its side). Meanwhile a legitimate client's new TLS requests through the VIP
// keep succeeding; the connections beyond the cap are refused (counted on /stats.json and
// /metrics, logged); the attacker's sessions are closed within first_byte_timeout and
// half_closed_timeout; and vipd's descriptors and goroutines return to where they were.
func TestProxyHoldersAreReclaimed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces")
	}
	const (
		firstByte  = 4 * time.Second
		halfClosed = 8 * time.Second
		perSource  = 200
		halfHeld   = 80  // half-closed sessions the attacker holds
		silentTry  = 250 // silent connections it then tries (only perSource-halfHeld fit)
		slack      = 15 * time.Second
	)
	bin := vipdBin(t)
	ctx := context.Background()
	l := lab.New(t, lab.Options{Hosts: []string{"lb1", "m1", "m2", "client", "attacker"}, Prefix: lab.RandomPrefix("vh")})
	lb1, client, attacker := l.Host("lb1"), l.Host("client"), l.Host("attacker")
	masters := []*lab.Host{l.Host("m1"), l.Host("m2")}
	vip := l.Addr(100)
	vipAddr := net.JoinHostPort(vip.String(), "6443")
	var backends []string
	for _, m := range masters {
		backends = append(backends, net.JoinHostPort(m.Addr.String(), "6443"))
	}
	ms, err := apiserverstub.StartMasters(ctx, l, masters, []net.IP{vip.AsSlice()})
	if err != nil {
		t.Fatal(err)
	}
	tlsConf := ms.ClientTLS()
	tlsConf.ServerName = vip.String()
	v := proxyStartVipd(t, lb1, bin, proxyLBConfig{Name: "lb1", Priority: 100, VIP: vip, Backends: backends,
		ProxyExtra: fmt.Sprintf("  first_byte_timeout: %s\n  half_closed_timeout: %s\n  max_conns_per_source: %d\n", firstByte, halfClosed, perSource)})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("vipd log (tail):\n%s", v.Tail(80))
		}
	})
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, _, err := proxyWaitSnap(wctx, v, "lb1 MASTER with both backends UP", func(s *stats.Snapshot) bool {
		return s.VRRP.State == stats.StateMaster && s.VRRP.HoldsVIP && proxyAllUp(backends)(s)
	}); err != nil {
		t.Fatal(err)
	}

	// Baseline: vipd's descriptors and goroutines with only health checks running.
	usage := func() (fds int, goroutines float64) {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", v.Proc.PID))
		if err != nil {
			t.Fatalf("vipd's descriptors: %v", err)
		}
		m, err := proxyMetrics(ctx, v)
		if err != nil {
			t.Fatal(err)
		}
		g, ok := m["go_goroutines"]
		if !ok {
			t.Fatal("/metrics has no go_goroutines")
		}
		return len(ents), g
	}
	baseFDs, baseG := usage()
	t.Logf("baseline: %d descriptors, %.0f goroutines", baseFDs, baseG)

	probeStart := time.Now()
	prober := apiserverstub.StartProber(client.Dial, ms.ClientTLS(), vipAddr, 100*time.Millisecond, 10*time.Second)
	defer prober.Stop()

	// Half-closed holders: a full request with Connection: close, the answer and the server's
	// FIN read, then silence with the connection left open.
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	var lastFIN time.Time
	var wg sync.WaitGroup
	errs := make(chan error, halfHeld)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < halfHeld; i += 8 {
				raw, err := attacker.Dial(ctx, "tcp4", vipAddr)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				held = append(held, raw)
				mu.Unlock()
				_ = raw.SetDeadline(time.Now().Add(20 * time.Second))
				tc := tls.Client(raw, tlsConf)
				fmt.Fprintf(tc, "GET /version HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", vip)
				if _, err := io.Copy(io.Discard, tc); err != nil && !strings.Contains(err.Error(), "close_notify") {
					// (Go's server may close without close_notify: EOF is what matters.)
					errs <- fmt.Errorf("half-closed holder %d: %w", i, err)
					return
				}
				_ = raw.SetDeadline(time.Time{})
				mu.Lock()
				lastFIN = time.Now()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Silent holders: connect and never send a byte. Each records when the proxy closed it.
	type silentConn struct {
		opened, closed time.Time
	}
	silent := make([]silentConn, silentTry)
	var swg sync.WaitGroup
	for i := 0; i < silentTry; i++ {
		raw, err := attacker.Dial(ctx, "tcp4", vipAddr)
		opened := time.Now()
		if err != nil { // reset before the dial returned: refused
			silent[i] = silentConn{opened, opened}
			continue
		}
		mu.Lock()
		held = append(held, raw)
		mu.Unlock()
		swg.Add(1)
		go func() {
			defer swg.Done()
			_ = raw.SetReadDeadline(time.Now().Add(firstByte + 2*slack))
			_, _ = raw.Read(make([]byte, 1))
			silent[i] = silentConn{opened, time.Now()}
		}()
	}
	attackEnd := time.Now()
	t.Logf("attacker: %d half-closed and %d silent connections tried in %s", halfHeld, silentTry, attackEnd.Sub(probeStart).Round(time.Millisecond))

	// The cap bit: refusals counted and logged; the attacker never held more than its share.
	snap, _, err := proxyWaitSnap(wctx, v, "refusals by the per-source cap", func(s *stats.Snapshot) bool {
		return s.Frontend != nil && s.Frontend.RefusedPerSource > 0
	})
	if err != nil {
		t.Fatal(err)
	}
	if cur := snap.Frontend.CurrentConns; cur > perSource+64 { // + the prober's requests in flight (at most 64)
		t.Errorf("%d connections open with a per-source cap of %d", cur, perSource)
	}
	m, err := proxyMetrics(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	got := -1.0
	for k, x := range m {
		if strings.HasPrefix(k, "vipd_frontend_refused_per_source_total{") {
			got = x
		}
	}
	if got < float64(snap.Frontend.RefusedPerSource) {
		t.Errorf("vipd_frontend_refused_per_source_total %v, /stats.json %d", got, snap.Frontend.RefusedPerSource)
	}
	if !strings.Contains(v.Log(), "at its connection cap") || !strings.Contains(v.Log(), "source="+attacker.Addr.String()) {
		t.Errorf("no log line naming the attacker's address at its cap")
	}

	// Reclaimed within the timeouts.
	swg.Wait()
	refused, reclaimed := 0, 0
	for i, s := range silent {
		el := s.closed.Sub(s.opened)
		switch {
		case el < firstByte*3/4: // refused at accept (counted below against vipd's count)
			refused++
		case el > firstByte+slack:
			t.Errorf("silent connection %d still open %s after it was opened, first_byte_timeout %s", i, el, firstByte)
		default:
			reclaimed++
		}
	}
	t.Logf("silent: %d refused at once, %d closed by first_byte_timeout", refused, reclaimed)
	if refused == 0 || reclaimed == 0 {
		t.Errorf("silent connections: %d refused, %d reclaimed; want both (cap %d, %d half-closed held)", refused, reclaimed, perSource, halfHeld)
	}
	mu.Lock()
	finDone := lastFIN
	mu.Unlock()
	rctx, rcancel := context.WithDeadline(ctx, finDone.Add(halfClosed+slack))
	defer rcancel()
	if snap, _, err = proxyWaitSnap(rctx, v, "every attacker session closed by its timeout", func(s *stats.Snapshot) bool {
		f := s.Frontend
		return f != nil && f.TimedOut["half_closed_timeout"] >= halfHeld && f.TimedOut["first_byte_timeout"] >= uint64(reclaimed)
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("timed out: %v; refused per source %d", snap.Frontend.TimedOut, snap.Frontend.RefusedPerSource)
	// What the attacker saw is what vipd counted: a held connection closed early would show
	// as one refusal too many.
	if uint64(refused) != snap.Frontend.RefusedPerSource || uint64(reclaimed) != snap.Frontend.TimedOut["first_byte_timeout"] {
		t.Errorf("attacker saw %d refused and %d closed after first_byte_timeout; vipd counted %d and %d",
			refused, reclaimed, snap.Frontend.RefusedPerSource, snap.Frontend.TimedOut["first_byte_timeout"])
	}
	if n := snap.Frontend.TimedOut["half_closed_timeout"]; n != halfHeld {
		t.Errorf("%d sessions closed by half_closed_timeout, want %d (the prober never half-closes)", n, halfHeld)
	}

	// The legitimate client never failed, before, during or after.
	prober.Stop()
	results := prober.Between(probeStart, time.Now())
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			failed++
			if failed <= 3 {
				t.Errorf("client request at +%s failed: %v", r.Start.Sub(probeStart).Round(time.Millisecond), r.Err)
			}
		}
	}
	t.Logf("client: %d requests through the VIP during the attack, %d failed", len(results), failed)
	if len(results) < 20 || failed > 0 {
		t.Errorf("client: %d of %d requests failed, want 0 of at least 20", failed, len(results))
	}

	// Back to the baseline: no session left, descriptors and goroutines as before (loosely:
	// health checks come and go).
	deadline := time.Now().Add(slack)
	for {
		fds, g := usage()
		s, err := proxySnap(ctx, v)
		if err != nil {
			t.Fatal(err)
		}
		if s.Frontend.CurrentConns == 0 && fds <= baseFDs+10 && g <= baseG+10 {
			t.Logf("after: %d descriptors (baseline %d), %.0f goroutines (baseline %.0f)", fds, baseFDs, g, baseG)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s after the attack: %d sessions, %d descriptors (baseline %d), %.0f goroutines (baseline %.0f)",
				slack, s.Frontend.CurrentConns, fds, baseFDs, g, baseG)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
