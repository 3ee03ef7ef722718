package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipd-project/vipd/pkg/stats"
	"github.com/vipd-project/vipd/test/apiserverstub"
	"github.com/vipd-project/vipd/test/lab"
)

// TestProxyE2E runs vipd's proxy, health checks, stats and VRRP tracking on two LB hosts in
// front of three TLS kube-apiserver stand-ins, with a client sending 20 new TLS requests per
// second through VIP:6443 while (a) a master is SIGKILLed, (c) lb1 loses every backend (nft in
// lb1 only), (b) the master LB is SIGKILLed, (d) lb2 reloads with one backend fewer. /stats.json
// and /metrics are checked after each step; the /stats page is loaded in headless Chromium.
func TestProxyE2E(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces")
	}
	began := time.Now()
	// Registered before the lab, so it runs after the lab's Close: every process gone by PID.
	var procs []*lab.Proc
	t.Cleanup(func() {
		for _, p := range procs {
			if !proxyGone(p.PID) {
				t.Errorf("leak: %s (pid %d) in %s still exists after the lab closed", p.Name, p.PID, p.Host.Name)
			}
		}
	})
	bin := vipdBin(t)
	ctx := context.Background()

	l := lab.New(t, lab.Options{Hosts: []string{"lb1", "lb2", "m1", "m2", "m3", "client"}, Prefix: lab.RandomPrefix("vp")})
	lb1, lb2, client := l.Host("lb1"), l.Host("lb2"), l.Host("client")
	masters := []*lab.Host{l.Host("m1"), l.Host("m2"), l.Host("m3")}
	vip := l.Addr(100)
	vipAddr := net.JoinHostPort(vip.String(), "6443")
	be := func(m *lab.Host) string { return net.JoinHostPort(m.Addr.String(), "6443") }
	var backends []string
	for _, m := range masters {
		backends = append(backends, be(m))
	}
	if err := client.NoNeighLocktime(); err != nil {
		t.Fatal(err)
	}

	// Stand-in apiservers, with certificates for every name a client may use.
	ms, err := apiserverstub.StartMasters(ctx, l, masters, []net.IP{vip.AsSlice(), lb1.Addr.AsSlice(), lb2.Addr.AsSlice()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { procs = append(procs, ms.Procs()...) }()
	tlsConf := ms.ClientTLS()

	cfg1 := proxyLBConfig{Name: "lb1", Priority: 100, VIP: vip, Backends: backends}
	cfg2 := proxyLBConfig{Name: "lb2", Priority: 90, VIP: vip, Backends: backends}
	v1 := proxyStartVipd(t, lb1, bin, cfg1)
	v2 := proxyStartVipd(t, lb2, bin, cfg2)
	procs = append(procs, v1.Proc, v2.Proc)
	t.Cleanup(func() { // runs before the lab closes
		for _, v := range []*lab.Vipd{v1, v2} {
			if t.Failed() {
				t.Logf("%s vipd log (tail):\n%s", v.Host.Name, v.Tail(60))
			}
			if d := os.Getenv("VIPD_ARTIFACTS"); d != "" {
				_ = os.MkdirAll(d, 0o755)
				_ = os.WriteFile(filepath.Join(d, "proxy-e2e-"+v.Host.Name+"-vipd.log"), []byte(v.Log()), 0o644)
			}
		}
	})

	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, _, err := proxyWaitSnap(wctx, v1, "lb1 MASTER with 3 backends UP", func(s *stats.Snapshot) bool {
		return s.VRRP.State == stats.StateMaster && s.VRRP.HoldsVIP && proxyAllUp(backends)(s)
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := proxyWaitSnap(wctx, v2, "lb2 BACKUP with 3 backends UP", func(s *stats.Snapshot) bool {
		return s.VRRP.State == stats.StateBackup && !s.VRRP.HoldsVIP && proxyAllUp(backends)(s)
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("setup: lab, stand-ins and both vipd ready after %v", time.Since(began).Round(time.Millisecond))
	upMetrics := func(up map[string]float64) map[string]float64 {
		m := map[string]float64{}
		n := 0.0
		for _, b := range backends {
			if v, ok := up[b]; ok {
				m[`vipd_backend_up{backend="`+b+`"}`] = v
				n += max(v, 0)
			}
		}
		m["vipd_backends_up"] = n
		return m
	}
	merge := func(ms ...map[string]float64) map[string]float64 {
		out := map[string]float64{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	state := func(st string, holds bool) map[string]float64 {
		m := map[string]float64{"vipd_vrrp_holds_vip": 0}
		if holds {
			m["vipd_vrrp_holds_vip"] = 1
		}
		for _, s := range []string{stats.StateInit, stats.StateBackup, stats.StateMaster, stats.StateFault} {
			m[`vipd_vrrp_state{state="`+s+`"}`] = 0
		}
		m[`vipd_vrrp_state{state="`+st+`"}`] = 1
		return m
	}
	allUp := map[string]float64{}
	for _, b := range backends {
		allUp[b] = 1
	}
	proxyCheckMetrics(t, ctx, v1, merge(state(stats.StateMaster, true), upMetrics(allUp), map[string]float64{"vipd_backends": 3}))
	proxyCheckMetrics(t, ctx, v2, merge(state(stats.StateBackup, false), upMetrics(allUp)))

	load := apiserverstub.StartProber(client.Dial, tlsConf, vipAddr, 50*time.Millisecond, 2*time.Second)
	defer load.Stop()
	time.Sleep(time.Second)

	// (a) A master is SIGKILLed: no request fails, both LBs mark it DOWN within fall × interval.
	m3 := masters[2]
	if !t.Run("a_master_killed", func(t *testing.T) {
		from := time.Now().Add(-time.Second)
		killed := time.Now()
		if err := ms.Kill(m3.Name); err != nil {
			t.Fatal(err)
		}
		for _, v := range []*lab.Vipd{v1, v2} {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			s, seen, err := proxyWaitSnap(wctx, v, "m3 DOWN", func(s *stats.Snapshot) bool {
				b := proxyBackend(s, be(m3))
				return b != nil && !b.Up && b.StatusText() == stats.BackendDown
			})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			d := seen.Sub(killed)
			// fall 2 × interval 500 ms = 1 s, plus check timeout, jitter and the 50 ms poll.
			t.Logf("%s: m3 DOWN on /stats.json %v after the kill (fall×interval 1s): %s", v.Host.Name, d.Round(time.Millisecond), proxyDescribe(s))
			if d > 2500*time.Millisecond {
				t.Errorf("%s: m3 shown DOWN %v after the kill, want <= 2.5s (fall 2 × 500ms + slack)", v.Host.Name, d)
			}
			b := proxyBackend(s, be(m3))
			if b.Since.Before(killed) || b.LastResult == "" {
				t.Errorf("%s: m3 DOWN since %v (killed %v), last result %q", v.Host.Name, b.Since, killed, b.LastResult)
			}
		}
		until := killed.Add(3 * time.Second)
		load.WaitDone(until)
		total, failed, byHost, errs := apiserverstub.Summary(load.Between(from, until))
		t.Logf("requests started from 1s before to 3s after the kill: %d, failed %d, by master %v %q", total, failed, byHost, errs)
		if failed > 0 || total < 40 {
			t.Errorf("%d of %d requests failed around the master kill (want 0 of >= 40): %q", failed, total, errs)
		}
		for _, r := range load.Between(killed.Add(100*time.Millisecond), until) {
			if r.Host == m3.Name {
				t.Errorf("a request started %v after the kill was answered by the killed m3", r.Start.Sub(killed))
			}
		}
		// The counters a user reads moved: connections and bytes per backend, the frontend's total.
		s1, err := proxySnap(ctx, v1)
		if err != nil {
			t.Fatal(err)
		}
		var ok uint64
		for _, n := range byHost {
			ok += uint64(n)
		}
		if s1.Frontend == nil || s1.Frontend.TotalConns < ok || s1.Frontend.BytesIn == 0 || s1.Frontend.BytesOut == 0 {
			t.Errorf("lb1 frontend counters after %d requests: %+v", ok, s1.Frontend)
		}
		for _, m := range masters[:2] {
			if b := proxyBackend(s1, be(m)); b == nil || b.TotalConns == 0 || b.BytesIn == 0 || b.BytesOut == 0 {
				t.Errorf("lb1 backend %s counters did not move: %+v", m.Name, b)
			}
		}
		proxyMetricsAtLeast(t, ctx, v1, map[string]float64{
			`vipd_backend_sessions_total{backend="` + be(masters[0]) + `"}`:  1,
			`vipd_backend_bytes_out_total{backend="` + be(masters[0]) + `"}`: 1,
			`vipd_frontend_sessions_total{*}`:                                float64(ok),
			`vipd_backend_check_up_down_total{backend="` + be(m3) + `"}`:     1,
		})
		down := map[string]float64{be(masters[0]): 1, be(masters[1]): 1, be(m3): 0}
		proxyCheckMetrics(t, ctx, v1, merge(state(stats.StateMaster, true), upMetrics(down)))
		proxyCheckMetrics(t, ctx, v2, merge(state(stats.StateBackup, false), upMetrics(down)))

		// The stats page in Chromium, from the client: MASTER/BACKUP and each backend's status.
		want := map[string]string{be(masters[0]): "UP", be(masters[1]): "UP", be(m3): "DOWN"}
		for _, c := range []struct {
			v     *lab.Vipd
			state string
		}{{v1, "MASTER"}, {v2, "BACKUP"}} {
			url := "http://" + c.v.StatsAddr + "/stats"
			dom, err := proxyChromium(t, client, "--dump-dom", url)
			if err != nil {
				t.Errorf("%s: %v", c.v.Host.Name, err)
				continue
			}
			proxyCheckPage(t, c.v.Host.Name, dom, c.state, want)
		}
		shot := filepath.Join(proxyArtifactDir(t), "proxy-stats-lb1.png")
		if _, err := proxyChromium(t, client, "--screenshot="+shot, "--window-size=1280,1100", "--hide-scrollbars",
			"http://"+v1.StatsAddr+"/stats"); err != nil {
			t.Error(err)
		} else if fi, err := os.Stat(shot); err != nil || fi.Size() < 5000 {
			t.Errorf("screenshot %s: %v (size %v)", shot, err, fi)
		} else {
			t.Logf("stats page screenshot (lb1, m3 DOWN): %s (%d bytes)", shot, fi.Size())
		}

		// m3 comes back: UP again after rise 2 × 500 ms.
		back := time.Now()
		if err := ms.Start(ctx, m3.Name); err != nil {
			t.Fatal(err)
		}
		for _, v := range []*lab.Vipd{v1, v2} {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, seen, err := proxyWaitSnap(wctx, v, "m3 UP again", proxyAllUp(backends))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: m3 UP again %v after its restart", v.Host.Name, seen.Sub(back).Round(time.Millisecond))
		}
	}) {
		return
	}

	// (c) lb1 cannot reach any backend (nft in lb1 only): tracking hands the VIP to lb2.
	if !t.Run("c_lb1_cut_from_backends", func(t *testing.T) {
		var ips []string
		for _, m := range masters {
			ips = append(ips, m.Addr.String())
		}
		cut := time.Now()
		if err := lb1.Drop("ip daddr { " + strings.Join(ips, ", ") + " } tcp dport 6443"); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		moved, err := lb2.WaitAddr(wctx, vip, true)
		cancel()
		if err != nil {
			s, _ := proxySnap(ctx, v1)
			t.Fatalf("VIP did not move to lb2 after lb1 lost its backends: %v\nlb1: %s", err, proxyDescribe(s))
		}
		t.Logf("VIP on lb2 %v after the cut (fall×interval 1s + 3 adverts)", moved.Sub(cut).Round(time.Millisecond))
		if moved.Sub(cut) > 5*time.Second {
			t.Errorf("VIP moved %v after the cut, want <= 5s", moved.Sub(cut))
		}
		wctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		s1, _, err := proxyWaitSnap(wctx, v1, "lb1 BACKUP, all DOWN, priority lowered", func(s *stats.Snapshot) bool {
			for _, b := range backends {
				if x := proxyBackend(s, b); x == nil || x.Up {
					return false
				}
			}
			return s.VRRP.State != stats.StateMaster && !s.VRRP.HoldsVIP && s.VRRP.EffectivePriority < 90
		})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("lb1: %s", proxyDescribe(s1))
		if len(s1.VRRP.Faults) == 0 {
			t.Errorf("lb1 /stats.json shows no fault reason while 0/3 backends are UP")
		}
		s2, err := proxySnap(ctx, v2)
		if err != nil || s2.VRRP.State != stats.StateMaster || !s2.VRRP.HoldsVIP || !proxyAllUp(backends)(s2) {
			t.Errorf("lb2 after the cut: %s (%v), want MASTER holding the VIP with 3 UP", proxyDescribe(s2), err)
		}
		settle := moved.Add(500 * time.Millisecond)
		until := moved.Add(2500 * time.Millisecond)
		load.WaitDone(until)
		total, failed, byHost, errs := apiserverstub.Summary(load.Between(settle, until))
		t.Logf("requests 0.5-2.5s after the VIP moved: %d, failed %d, by master %v", total, failed, byHost)
		if failed > 0 || total < 20 {
			t.Errorf("%d of %d requests failed after the VIP moved to lb2 (want 0 of >= 20): %q", failed, total, errs)
		}
		tot, fl, _, errs := apiserverstub.Summary(load.Between(cut, settle))
		t.Logf("during the move (cut to VIP on lb2 + 0.5s): %d requests, %d failed %q", tot, fl, errs)
		proxyCheckMetrics(t, ctx, v1, merge(state(stats.StateBackup, false), upMetrics(map[string]float64{
			backends[0]: 0, backends[1]: 0, backends[2]: 0}), map[string]float64{"vipd_vrrp_effective_priority": 50}))
		proxyCheckMetrics(t, ctx, v2, merge(state(stats.StateMaster, true), upMetrics(allUp)))

		// Undo the cut: lb1's backends come back UP and lb1 (priority 100, preempt) takes the
		// VIP back.
		undo := time.Now()
		if err := lb1.Undrop(); err != nil {
			t.Fatal(err)
		}
		wctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		back, err := lb1.WaitAddr(wctx, vip, true)
		cancel()
		if err != nil {
			t.Fatalf("lb1 did not take the VIP back after the cut was undone: %v", err)
		}
		wctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		_, _, err = proxyWaitSnap(wctx, v1, "lb1 MASTER with 3 UP", func(s *stats.Snapshot) bool {
			return s.VRRP.State == stats.StateMaster && proxyAllUp(backends)(s) && s.VRRP.EffectivePriority == 100
		})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		load.WaitDone(back.Add(time.Second))
		tot, fl, _, errs = apiserverstub.Summary(load.Between(undo, back.Add(time.Second)))
		t.Logf("lb1 took the VIP back %v after the undo; %d requests meanwhile, %d failed %q", back.Sub(undo).Round(time.Millisecond), tot, fl, errs)
	}) {
		return
	}

	// (b) The master LB is SIGKILLed: requests resume through lb2 within the failover bound, and a
	// watch opened through lb2 keeps flowing.
	if !t.Run("b_master_lb_killed", func(t *testing.T) {
		viaLB2 := proxyOpenStream(t, client, tlsConf, "via-lb2", net.JoinHostPort(lb2.Addr.String(), "6443"))
		viaVIP := proxyOpenStream(t, client, tlsConf, "via-vip-lb1", vipAddr)
		time.Sleep(500 * time.Millisecond)
		killed := time.Now()
		v1.Kill()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		took, err := lb2.WaitAddr(wctx, vip, true)
		cancel()
		if err != nil {
			t.Fatalf("lb2 did not take the VIP after lb1's vipd was killed: %v", err)
		}
		until := killed.Add(4 * time.Second)
		load.WaitDone(until)
		first, ok := load.FirstOKAfter(killed)
		if !ok {
			total, failed, _, errs := apiserverstub.Summary(load.Between(killed, until))
			t.Fatalf("no request succeeded in 4s after the master LB was killed (%d/%d failed: %q)", failed, total, errs)
		}
		outage := first.End.Sub(killed)
		_, fl, _, errs := apiserverstub.Summary(load.Between(killed.Add(-time.Second), first.Start))
		t.Logf("VIP on lb2 %v after the kill; first request started after the kill succeeded %v after it (%d requests failed before: %q)",
			took.Sub(killed).Round(time.Millisecond), outage.Round(time.Millisecond), fl, errs)
		if outage > 3*time.Second {
			t.Errorf("requests resumed %v after the master LB was killed, want < 3s with 200ms adverts", outage)
		}
		total, failed, byHost, errs := apiserverstub.Summary(load.Between(first.Start.Add(300*time.Millisecond), until))
		t.Logf("after the first success: %d requests, %d failed, by master %v", total, failed, byHost)
		if failed > 0 {
			t.Errorf("%d of %d requests failed after requests had resumed through lb2: %q", failed, total, errs)
		}
		gap, n, err := viaLB2.Flowing(killed.Add(-200*time.Millisecond), time.Second)
		if err != nil {
			t.Error(err)
		}
		t.Logf("watch through lb2 (from %s) across the failover: %d events, longest gap %v", viaLB2.Host(), n, gap.Round(time.Millisecond))
		t.Logf("watch through the VIP on the killed lb1 (from %s): ended with %v after %d events", viaVIP.Host(), viaVIP.Err(), viaVIP.Count())
		if viaVIP.Err() == nil {
			t.Logf("note: the watch through the killed LB still reads (no reset reached the client)")
		}
		viaVIP.Close()
		s2, err := proxySnap(ctx, v2)
		if err != nil || s2.VRRP.State != stats.StateMaster || !s2.VRRP.HoldsVIP || s2.Frontend == nil || s2.Frontend.CurrentConns < 1 {
			t.Errorf("lb2 after the failover: %s (%v), want MASTER holding the VIP, the watch's connection open", proxyDescribe(s2), err)
		}
		proxyCheckMetrics(t, ctx, v2, merge(state(stats.StateMaster, true), upMetrics(allUp),
			map[string]float64{`vipd_frontend_listening{*}`: 1}))
		proxyMetricsAtLeast(t, ctx, v2, map[string]float64{`vipd_frontend_current_sessions{*}`: 1,
			`vipd_vrrp_transitions_total`: 2})
		viaLB2.Close()
	}) {
		return
	}

	// (d) lb2 reloads (SIGHUP) with m2 removed: open watches are not cut, m2 gets no new
	// requests and leaves /stats.json.
	t.Run("d_reload_removes_backend", func(t *testing.T) {
		// Open watches until they reach two masters; the first one's master is removed.
		var streams []*proxyStream
		var hosts []string
		distinct := map[string]bool{}
		for i := 0; i < 12 && (len(streams) < 3 || len(distinct) < 2); i++ {
			s := proxyOpenStream(t, client, tlsConf, fmt.Sprintf("watch%d", i), vipAddr)
			streams = append(streams, s)
			hosts = append(hosts, s.Host())
			distinct[s.Host()] = true
			// Break any lock-step with the request stream, which shares the round robin.
			time.Sleep(time.Duration(rand.IntN(60)) * time.Millisecond)
		}
		if len(distinct) < 2 {
			t.Fatalf("%d watches through the VIP all went to %v", len(streams), hosts)
		}
		t.Logf("watches open through the VIP (lb2) to %v", hosts)
		var m2 *lab.Host
		var kept []string
		for _, m := range masters {
			if m.Name == hosts[0] {
				m2 = m
			} else {
				kept = append(kept, be(m))
			}
		}
		if m2 == nil {
			t.Fatalf("watch from unknown master %q", hosts[0])
		}
		t.Logf("removing %s (%s) from lb2's backends", m2.Name, be(m2))
		cfg := cfg2
		cfg.Backends = kept
		if err := proxyRewrite(v2, cfg); err != nil {
			t.Fatal(err)
		}
		hup := time.Now()
		if err := v2.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, seen, err := proxyWaitSnap(wctx, v2, "the removed backend gone or draining", func(s *stats.Snapshot) bool {
			b := proxyBackend(s, be(m2))
			return (b == nil || b.StatusText() == stats.BackendDrain) && proxyBackend(s, kept[0]) != nil && proxyBackend(s, kept[1]) != nil
		})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("reload seen on /stats.json %v after SIGHUP: %s", seen.Sub(hup).Round(time.Millisecond), proxyDescribe(s))
		time.Sleep(2 * time.Second)
		for _, st := range streams {
			gap, n, err := st.Flowing(hup.Add(-100*time.Millisecond), time.Second)
			if err != nil {
				t.Error(err)
			} else {
				t.Logf("watch %s (from %s) across the reload: %d events, longest gap %v", st.Name, st.Host(), n, gap.Round(time.Millisecond))
			}
		}
		until := time.Now()
		load.WaitDone(until)
		total, failed, byHost, errs := apiserverstub.Summary(load.Between(hup, until))
		t.Logf("requests since SIGHUP: %d, failed %d, by master %v", total, failed, byHost)
		if failed > 0 {
			t.Errorf("%d of %d requests failed across the reload: %q", failed, total, errs)
		}
		for _, r := range load.Between(seen.Add(200*time.Millisecond), until) {
			if r.Host == m2.Name {
				t.Errorf("a request started %v after the reload was sent to the removed m2", r.Start.Sub(hup))
			}
		}
		if v1.Running() {
			t.Errorf("lb1's vipd runs again?")
		}
		// Once its watches end, the removed backend disappears from /stats.json and /metrics.
		for _, st := range streams {
			st.Close()
		}
		closed := time.Now()
		wctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		s, gone, err := proxyWaitSnap(wctx, v2, "the removed backend gone", func(s *stats.Snapshot) bool {
			return proxyBackend(s, be(m2)) == nil && proxyAllUp(kept)(s)
		})
		cancel()
		if err != nil {
			t.Error(err)
		} else {
			t.Logf("%s gone from /stats.json %v after its watches closed: %s", m2.Name, gone.Sub(closed).Round(time.Millisecond), proxyDescribe(s))
		}
		proxyCheckMetrics(t, ctx, v2, merge(state(stats.StateMaster, true), upMetrics(map[string]float64{
			kept[0]: 1, kept[1]: 1, be(m2): -1}), map[string]float64{"vipd_backends": 2}))
	})

	load.Stop()
	total, failed, byHost, errs := apiserverstub.Summary(load.Between(began, time.Now()))
	t.Logf("whole run: %d requests through the VIP, %d failed (first: %q), by master %v; longest time without an answer %v; %v",
		total, failed, errs, byHost, load.LongestGap(began).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

var proxyTagRE = regexp.MustCompile(`<[^>]*>`)

// proxyCheckPage checks the /stats page's DOM as Chromium rendered it: the VRRP state, and for
// each backend a table row with its address and its status.
func proxyCheckPage(t *testing.T, host, dom, state string, want map[string]string) {
	t.Helper()
	text := proxyTagRE.ReplaceAllString(dom, " ")
	if !regexp.MustCompile(`\b` + state + `\b`).MatchString(text) {
		t.Errorf("%s /stats in Chromium does not show %s: %.500s", host, state, strings.Join(strings.Fields(text), " "))
	}
	rows := strings.Split(dom, "<tr")
	for addr, st := range want {
		found := false
		for _, r := range rows {
			rt := proxyTagRE.ReplaceAllString("<tr"+r, " ")
			if strings.Contains(rt, addr) && regexp.MustCompile(`\b`+st+`\b`).MatchString(rt) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s /stats in Chromium has no row showing %s %s", host, addr, st)
		}
	}
	if !t.Failed() {
		t.Logf("%s /stats in Chromium shows %s and %v", host, state, want)
	}
}
