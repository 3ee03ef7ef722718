// Command cluster measures what vipd's gossip cluster (pkg/cluster) costs and what it buys, in
// one run on a netns lab (test/lab) on this machine (`go run ./bench/cluster -vipd bin/vipd`, as
// root; about 1.5 minutes with the defaults):
//
//   - idle overhead: two vipd (VRRP defaults, the proxy on :6443 to one stand-in backend with TCP
//     health checks) with cluster.enabled false, then true (-idle-rounds times, alternating): CPU
//     (% of one core over -idle, from utime+stime in /proc/PID/stat), RSS (VmRSS, split into
//     RssAnon and RssFile) and Go heap in use (from /metrics) of each daemon, and the differences
//     (targets < 1 % CPU and < 5 MiB per daemon);
//   - recovery of long-lived connections after the VIP holder loses power (its port unplugged and
//     its vipd SIGKILLed at once, like bench/failover's crash): the client holds -conns idle TCP
//     connections through the VIP and one watch-like stream (a request, one event, then silence),
//     none with TCP keepalive; the times from the power loss until the backup holds the VIP
//     (failover), until the new master starts sending reset probes (its log), until the first
//     connection, the watch and the last of the idle connections are reset at the client,
//     median/min/max over -runs runs, and the target watch reset <= failover + 0.5 s; then a new
//     watch through the new master;
//   - the same once with cluster.conn_reset false: the watch is still hung -hung after the
//     failover.
//
// The stand-in backend runs inside this program (in the backend host's namespace): it holds
// every connection open and answers "WATCH\n" with one "ADDED" line. Ctrl-C ends the run; the
// lab (namespaces, daemons by PID, temporary files) is removed on every exit path.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vipd-project/vipd/bench/internal/measure"

	"github.com/vipd-project/vipd/pkg/stats"
	"github.com/vipd-project/vipd/test/lab"
)

type config struct {
	bin        string
	runs       int
	conns      int
	idle       time.Duration
	idleRounds int
	hung       time.Duration
	resetRate  int
	verbose    bool
}

func main() {
	var c config
	flag.StringVar(&c.bin, "vipd", "bin/vipd", "vipd binary")
	flag.IntVar(&c.runs, "runs", 5, "power-loss runs with conn_reset on")
	flag.IntVar(&c.conns, "conns", 1000, "idle client connections through the VIP per run (besides the watch)")
	flag.DurationVar(&c.idle, "idle", 10*time.Second, "window for idle CPU (0 skips the idle part)")
	flag.IntVar(&c.idleRounds, "idle-rounds", 2, "idle windows per mode (gossip off and on alternate; CPU is averaged)")
	flag.DurationVar(&c.hung, "hung", 5*time.Second, "how long the conn_reset: false run waits for a reset after the failover (0 skips it)")
	flag.IntVar(&c.resetRate, "reset-rate", 0, "cluster.conn_reset_rate for both daemons (0: vipd's default)")
	flag.BoolVar(&c.verbose, "v", false, "print the vipd logs of a failed run")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintf(os.Stderr, "bench-cluster: %v\n", err)
		os.Exit(1)
	}
}

const (
	proxyPort  = "6443"
	gossipPort = "7946"
	// tableWait lets the master push its connection table (at most once a second) twice.
	tableWait = 2500 * time.Millisecond
)

// bench is the lab and what runs in it.
type bench struct {
	c        config
	l        *lab.Lab
	lb1, lb2 *lab.Host
	client   *lab.Host
	vip      netip.Addr
	backend  *backend
	keyFile  string
	bin      string
	v1, v2   *lab.Vipd
}

func run(c config) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root (network namespaces)")
	}
	if c.runs < 1 || c.conns < 0 || c.conns > 5000 {
		return fmt.Errorf("-runs %d, -conns %d: want runs >= 1 and 0 <= conns <= 5000", c.runs, c.conns)
	}
	if _, err := os.Stat(c.bin); err != nil {
		return fmt.Errorf("vipd binary %s: %w (make build)", c.bin, err)
	}
	bin, err := filepath.Abs(c.bin)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	l, err := lab.Start(ctx, lab.Options{Hosts: []string{"lb1", "lb2", "m1", "client"}, Prefix: lab.RandomPrefix("vk")})
	if err != nil {
		return err
	}
	defer func() {
		if err := l.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "bench-cluster: close lab: %v\n", err)
		}
	}()
	b := &bench{c: c, l: l, lb1: l.Host("lb1"), lb2: l.Host("lb2"), client: l.Host("client"), vip: l.Addr(100), bin: bin}
	if b.backend, err = startBackend(l.Host("m1")); err != nil {
		return err
	}
	defer b.backend.close()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	b.keyFile = filepath.Join(l.Dir, "gossip.key")
	if err := os.WriteFile(b.keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return fmt.Errorf("write gossip key: %w", err)
	}

	fmt.Printf("cluster benchmark, %s, %s; vipd %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), loadavg(), c.bin)
	fmt.Println("two vipd (VRRP defaults, proxy :6443 to one stand-in backend, TCP health checks), one client; the client keeps Linux's default neighbour settings")
	if c.resetRate > 0 {
		fmt.Printf("cluster.conn_reset_rate: %d probes/s\n", c.resetRate)
	} else {
		fmt.Println("cluster.conn_reset_rate: vipd's default")
	}

	var idles []idleResult
	if c.idle > 0 {
		for round := 0; round < c.idleRounds; round++ {
			for _, gossip := range []bool{false, true} {
				fmt.Printf("  idle, gossip %-5v round %d ...", gossip, round+1)
				r, err := b.idle(ctx, gossip)
				if err != nil {
					return fmt.Errorf("idle (gossip %v): %w", gossip, err)
				}
				idles = append(idles, r)
				fmt.Printf(" lb1/lb2: CPU %.2f%% / %.2f%%, RSS %.1f / %.1f MiB, Go heap %.1f / %.1f MiB\n",
					r.cpu[0], r.cpu[1], mib(r.rss[0]), mib(r.rss[1]), r.heap[0]/(1<<20), r.heap[1]/(1<<20))
			}
		}
	}

	var runs []runResult
	for i := 0; i < c.runs; i++ {
		fmt.Printf("  power loss, conn_reset on, run %d ...", i+1)
		r := b.powerLoss(ctx, true, 10*time.Second)
		runs = append(runs, r)
		fmt.Println(" " + r.summary())
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	var off *runResult
	if c.hung > 0 {
		fmt.Print("  power loss, conn_reset off ...")
		r := b.powerLoss(ctx, false, c.hung)
		off = &r
		fmt.Println(" " + r.summary())
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	report(os.Stdout, c, idles, runs, off)
	return nil
}

// vipdYAML is the part of the config lab.VipdConfig does not write: the proxy, health checks
// and the cluster section.
func (b *bench) vipdYAML(h *lab.Host, gossip, connReset bool) string {
	peer := b.lb2
	if h == b.lb2 {
		peer = b.lb1
	}
	// The idle connections stand in for established watches (they have spoken, so
	// first_byte_timeout never closes them) and all come from the one client host.
	y := fmt.Sprintf("proxy:\n  listen: \":%s\"\n  backends:\n    - %s\n  first_byte_timeout: 0s\n  max_conns_per_source: 0\nhealth:\n  type: tcp\n",
		proxyPort, b.backend.addr)
	if !gossip {
		return y + "cluster:\n  enabled: false\n"
	}
	rate := ""
	if b.c.resetRate > 0 {
		rate = fmt.Sprintf("  conn_reset_rate: %d\n", b.c.resetRate)
	}
	return y + fmt.Sprintf(`cluster:
  enabled: true
  bind: "%s:%s"
  peers:
    - %s:%s
  key_file: %s
  conn_reset: %v
`, h.Addr, gossipPort, peer.Addr, gossipPort, b.keyFile, connReset) + rate
}

func (b *bench) startVipd(h *lab.Host, prio int, gossip, connReset bool) (*lab.Vipd, error) {
	return h.StartVipd(lab.VipdOptions{Bin: b.bin, VIP: b.vip, Priority: prio, LogLevel: "info", ExtraYAML: b.vipdYAML(h, gossip, connReset)})
}

// startPair starts lb1 (priority 100) until it is MASTER with the VIP and its backend up, then
// lb2 (90) until BACKUP, and with gossip waits until both see two members alive.
func (b *bench) startPair(ctx context.Context, gossip, connReset bool) error {
	b.stopPair()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var err error
	if b.v1, err = b.startVipd(b.lb1, 100, gossip, connReset); err != nil {
		return err
	}
	if err := waitSnap(ctx, b.v1, "MASTER with the VIP and priority 100", func(s *snap) bool {
		return s.VRRP.State == stats.StateMaster && s.VRRP.HoldsVIP && s.VRRP.EffectivePriority == 100
	}); err != nil {
		return err
	}
	if b.v2, err = b.startVipd(b.lb2, 90, gossip, connReset); err != nil {
		return err
	}
	if err := waitSnap(ctx, b.v2, "BACKUP with priority 90", func(s *snap) bool {
		return s.VRRP.State == stats.StateBackup && s.VRRP.EffectivePriority == 90
	}); err != nil {
		return err
	}
	if gossip {
		for _, v := range []*lab.Vipd{b.v1, b.v2} {
			if err := waitSnap(ctx, v, "two gossip members alive", func(s *snap) bool { return clusterAlive(s) == 2 }); err != nil {
				return err
			}
		}
	}
	return nil
}

// stopPair kills both daemons (by PID) and removes a VIP a killed master left behind.
func (b *bench) stopPair() {
	for _, v := range []*lab.Vipd{b.v1, b.v2} {
		if v == nil {
			continue
		}
		v.Kill()
		_ = v.Wait(5 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = v.Host.Exec(ctx, "ip", "addr", "del", lab.Prefix24(b.vip), "dev", "eth0")
		cancel()
	}
	b.v1, b.v2 = nil, nil
}

// snap is /stats.json decoded into pkg/stats's model.
type snap = stats.Snapshot

func getSnap(ctx context.Context, v *lab.Vipd) (*snap, error) {
	s, err := v.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return &s.Snapshot, nil
}

func waitSnap(ctx context.Context, v *lab.Vipd, what string, ok func(*snap) bool) error {
	var last error
	for {
		if !v.Running() {
			return fmt.Errorf("%s: vipd exited while waiting for %s: %v\n%s", v.Host.Name, what, v.Wait(0), v.Tail(20))
		}
		s, err := getSnap(ctx, v)
		if err == nil && ok(s) {
			return nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("state %s, priority %d, holds VIP %v, gossip members alive %d", s.VRRP.State, s.VRRP.EffectivePriority, s.VRRP.HoldsVIP, clusterAlive(s))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting for %s: %w (last: %v)\n%s", v.Host.Name, what, ctx.Err(), last, v.Tail(20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func clusterAlive(s *snap) int {
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

// idleResult is one idle window of the pair: [0] lb1 (master), [1] lb2 (backup).
type idleResult struct {
	gossip bool
	cpu    [2]float64 // percent of one core
	rss    [2]int     // KiB
	heap   [2]float64 // Go heap in use, bytes (go_memstats_heap_inuse_bytes from /metrics)
	anon   [2]int     // RssAnon, KiB: heap, stacks, runtime
	file   [2]int     // RssFile, KiB: pages of the binary (code, read-only data) mapped in
}

// idle starts the pair with or without gossip, lets it settle and measures it over c.idle.
func (b *bench) idle(ctx context.Context, gossip bool) (idleResult, error) {
	r := idleResult{gossip: gossip}
	if err := b.startPair(ctx, gossip, true); err != nil {
		return r, err
	}
	defer b.stopPair()
	// Start-up allocations, the first joins and health checks settle.
	if err := sleep(ctx, 3*time.Second); err != nil {
		return r, err
	}
	pids := []int{b.v1.PID, b.v2.PID}
	before := make([]uint64, 2)
	for i, pid := range pids {
		t, err := measure.CPUTicks(pid)
		if err != nil {
			return r, err
		}
		before[i] = t
	}
	t0 := time.Now()
	if err := sleep(ctx, b.c.idle); err != nil {
		return r, err
	}
	el := time.Since(t0).Seconds()
	for i, pid := range pids {
		t, err := measure.CPUTicks(pid)
		if err != nil {
			return r, err
		}
		r.cpu[i] = float64(t-before[i]) / 100 / el * 100 // USER_HZ is 100 on Linux
		if r.rss[i], err = measure.StatusKiB(pid, "VmRSS"); err != nil {
			return r, err
		}
		if r.anon[i], err = measure.StatusKiB(pid, "RssAnon"); err != nil {
			return r, err
		}
		if r.file[i], err = measure.StatusKiB(pid, "RssFile"); err != nil {
			return r, err
		}
	}
	for i, v := range []*lab.Vipd{b.v1, b.v2} {
		body, err := v.Get(ctx, "/metrics")
		if err != nil {
			return r, err
		}
		if r.heap[i], err = metric(body, "go_memstats_heap_inuse_bytes"); err != nil {
			return r, fmt.Errorf("%s: %w", v.Host.Name, err)
		}
	}
	// Both must still be what they were: an idle window with a failover in it measures nothing.
	for i, v := range []*lab.Vipd{b.v1, b.v2} {
		s, err := getSnap(ctx, v)
		if err != nil {
			return r, err
		}
		want := []string{stats.StateMaster, stats.StateBackup}[i]
		if s.VRRP.State != want || (gossip && clusterAlive(s) != 2) {
			return r, fmt.Errorf("%s: %s with %d gossip members alive after the idle window, want %s", v.Host.Name, s.VRRP.State, clusterAlive(s), want)
		}
	}
	return r, nil
}

// runResult is one power-loss run; times are from the power loss.
type runResult struct {
	connReset bool
	failover  time.Duration // backup holds the VIP
	first     time.Duration // first reset among the watch and the idle connections
	watch     time.Duration // the watch reset (0: not reset)
	last      time.Duration // last of the idle connections reset
	idleReset int           // idle connections reset (of conns)
	conns     int
	watchErr  error // what ended the watch (nil: still hung)
	refused   int   // resets that were not ECONNRESET (e.g. EOF)
	reconnect bool  // a new watch through the new master worked
	// From the new master's log line of the first reset round (0 if not found).
	probes     int           // probes sent
	probeStart time.Duration // sweep start, from the power loss
	sweep      time.Duration // how long sending took
	err        error
}

func (r runResult) summary() string {
	if r.err != nil {
		return "ERROR: " + r.err.Error()
	}
	s := fmt.Sprintf("failover %s s", measure.Secs(r.failover))
	if r.watchErr == nil {
		s += fmt.Sprintf(", watch still hung; %d of %d idle connections reset", r.idleReset, r.conns)
		return s
	}
	how := "ECONNRESET"
	if !errors.Is(r.watchErr, syscall.ECONNRESET) {
		how = r.watchErr.Error()
	}
	s += fmt.Sprintf(", first reset %s s, watch reset %s s (%s), last of %d reset %s s", measure.Secs(r.first), measure.Secs(r.watch), how, r.idleReset, measure.Secs(r.last))
	if r.probes > 0 {
		s += fmt.Sprintf("; lb2 sent %d probes from %s s, in %s s", r.probes, measure.Secs(r.probeStart), measure.Secs(r.sweep))
	}
	if r.refused > 0 {
		s += fmt.Sprintf(", %d ended otherwise than by a reset", r.refused)
	}
	if !r.reconnect {
		s += ", RECONNECT FAILED"
	}
	return s
}

// ended is when and how a client connection ended.
type ended struct {
	at  time.Time
	err error
}

// powerLoss runs one power loss of the master with the watch and c.conns idle connections open.
// wait bounds how long after the failover it waits for resets.
func (b *bench) powerLoss(ctx context.Context, connReset bool, wait time.Duration) (r runResult) {
	r.connReset, r.conns = connReset, b.c.conns
	defer b.backend.closeAll()
	defer b.stopPair()
	defer func() {
		if r.err == nil || !b.c.verbose {
			return
		}
		for _, v := range []*lab.Vipd{b.v1, b.v2} {
			if v != nil {
				fmt.Printf("\n---- %s vipd log (tail) ----\n%s\n", v.Host.Name, v.Tail(30))
			}
		}
	}()
	defer func() {
		if err := b.lb1.LinkUp(); err != nil && r.err == nil {
			r.err = err
		}
	}()
	if r.err = b.startPair(ctx, true, connReset); r.err != nil {
		return r
	}
	var clientConns []net.Conn
	defer func() {
		for _, c := range clientConns {
			c.Close()
		}
	}()
	watch, watchEnd, err := b.openWatch(ctx)
	if err != nil {
		r.err = err
		return r
	}
	clientConns = append(clientConns, watch)
	idle, err := b.dialIdle(ctx, b.c.conns)
	clientConns = append(clientConns, idle...)
	if err != nil {
		r.err = err
		return r
	}
	idleEnd := make(chan ended, len(idle))
	for _, c := range idle {
		go func() {
			_, err := c.Read(make([]byte, 1))
			idleEnd <- ended{time.Now(), err}
		}()
	}
	if r.err = sleep(ctx, tableWait); r.err != nil {
		return r
	}
	// The master's proxy holds them all.
	if s, err := getSnap(ctx, b.v1); err != nil {
		r.err = err
		return r
	} else if s.Frontend == nil || s.Frontend.CurrentConns < int64(len(idle)+1) {
		r.err = fmt.Errorf("lb1's proxy holds %v connections, want %d", s.Frontend, len(idle)+1)
		return r
	}
	select {
	case e := <-watchEnd:
		r.err = fmt.Errorf("the watch ended before the power loss: %v", e.err)
		return r
	default:
	}

	tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	vipAt := make(chan time.Time, 1)
	vipErr := make(chan error, 1)
	go func() {
		at, err := b.lb2.WaitAddr(tctx, b.vip, true)
		if err != nil {
			vipErr <- err
			return
		}
		vipAt <- at
	}()
	// Power loss: the port goes dark and the daemon dies with it (no FIN, no RST, no advert).
	if r.err = b.lb1.LinkDown(); r.err != nil {
		return r
	}
	t0 := time.Now()
	b.v1.Kill()
	var took time.Time
	select {
	case took = <-vipAt:
	case err := <-vipErr:
		r.err = fmt.Errorf("lb2 did not take the VIP: %w", err)
		return r
	}
	r.failover = took.Sub(t0)
	deadline := time.NewTimer(time.Until(took.Add(wait)))
	defer deadline.Stop()
	var first, last time.Time
	note := func(e ended) {
		if first.IsZero() || e.at.Before(first) {
			first = e.at
		}
		if !errors.Is(e.err, syscall.ECONNRESET) {
			r.refused++
		}
	}
	watchDone := false
	for !watchDone || r.idleReset < len(idle) {
		select {
		case e := <-watchEnd:
			watchDone = true
			r.watch, r.watchErr = e.at.Sub(t0), e.err
			if r.watchErr == nil {
				r.watchErr = io.EOF
			}
			note(e)
		case e := <-idleEnd:
			r.idleReset++
			if e.at.After(last) {
				last = e.at
			}
			note(e)
		case <-deadline.C:
			if connReset {
				r.err = fmt.Errorf("%s after the failover: watch reset %v, %d of %d idle connections reset", wait, watchDone, r.idleReset, len(idle))
			}
			return r
		case <-ctx.Done():
			r.err = ctx.Err()
			return r
		}
	}
	r.first = first.Sub(t0)
	if !last.IsZero() {
		r.last = last.Sub(t0)
	}
	for range 20 {
		if at, took, sent, ok := resetLogLine(b.v2.Log(), t0); ok {
			r.probes, r.sweep, r.probeStart = sent, took, at.Add(-took).Sub(t0)
			break
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			break
		}
	}
	// The client comes back through the new master.
	if c, end, err := b.openWatch(ctx); err == nil {
		r.reconnect = true
		c.Close()
		<-end
	} else if b.c.verbose {
		fmt.Printf("\n    reconnect through lb2: %v", err)
	}
	return r
}

// resetLogLine finds the new master's log line of the first reset round logged after t0 and
// returns when it was logged, how long the sweep took and how many probes were sent.
func resetLogLine(log string, t0 time.Time) (at time.Time, took time.Duration, sent int, ok bool) {
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "reset clients of the previous master's connections") || !strings.Contains(line, " round=1 ") {
			continue
		}
		f := map[string]string{}
		for _, kv := range strings.Fields(line) {
			if k, v, found := strings.Cut(kv, "="); found {
				f[k] = v
			}
		}
		t, err1 := time.Parse(time.RFC3339Nano, f["time"])
		d, err2 := time.ParseDuration(f["took"])
		n, err3 := strconv.Atoi(f["sent"])
		if err1 != nil || err2 != nil || err3 != nil || t.Before(t0) {
			continue
		}
		at, took, sent, ok = t, d, n, true
	}
	return at, took, sent, ok
}

// openWatch opens a watch-like stream through the VIP from the client without TCP keepalive,
// reads its one event and returns a channel that says when and how it ended.
func (b *bench) openWatch(ctx context.Context) (net.Conn, <-chan ended, error) {
	var c net.Conn
	if err := b.client.Do(func() error {
		d := net.Dialer{KeepAlive: -1, Timeout: 3 * time.Second}
		var err error
		c, err = d.DialContext(ctx, "tcp4", net.JoinHostPort(b.vip.String(), proxyPort))
		return err
	}); err != nil {
		return nil, nil, fmt.Errorf("watch: dial the VIP: %w", err)
	}
	if _, err := io.WriteString(c, "WATCH\n"); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("watch: send: %w", err)
	}
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDED") {
		c.Close()
		return nil, nil, fmt.Errorf("watch: first event: %q, %v", line, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	end := make(chan ended, 1)
	go func() {
		_, err := io.Copy(io.Discard, br)
		end <- ended{time.Now(), err}
	}()
	return c, end, nil
}

// dialIdle opens n connections to the VIP from the client (8 at a time), without keepalive.
func (b *bench) dialIdle(ctx context.Context, n int) ([]net.Conn, error) {
	const workers = 8
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := 0; w < workers; w++ {
		share := n / workers
		if w < n%workers {
			share++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = b.client.Do(func() error {
				d := net.Dialer{KeepAlive: -1, Timeout: 3 * time.Second}
				for i := 0; i < share; i++ {
					c, err := d.DialContext(ctx, "tcp4", net.JoinHostPort(b.vip.String(), proxyPort))
					if err != nil {
						return fmt.Errorf("idle connection: dial the VIP: %w", err)
					}
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
				return nil
			})
		}()
	}
	wg.Wait()
	return conns, errors.Join(errs...)
}

// backend is the stand-in behind the proxy, listening in the backend host's namespace: it holds
// every connection open and answers "WATCH\n" with one "ADDED" line.
type backend struct {
	addr string
	ln   net.Listener
	mu   sync.Mutex
	open map[net.Conn]struct{}
}

func startBackend(h *lab.Host) (*backend, error) {
	b := &backend{addr: net.JoinHostPort(h.Addr.String(), proxyPort), open: map[net.Conn]struct{}{}}
	if err := h.Do(func() error {
		var err error
		b.ln, err = net.Listen("tcp4", b.addr)
		return err
	}); err != nil {
		return nil, fmt.Errorf("backend: listen %s: %w", b.addr, err)
	}
	go b.serve()
	return b, nil
}

func (b *backend) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.open[c] = struct{}{}
		b.mu.Unlock()
		go func() {
			defer func() {
				c.Close()
				b.mu.Lock()
				delete(b.open, c)
				b.mu.Unlock()
			}()
			br := bufio.NewReader(c)
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "WATCH\n" {
				if _, err := io.WriteString(c, `ADDED {"kind":"Pod","metadata":{"name":"p1"}}`+"\n"); err != nil {
					return
				}
			}
			_, _ = io.Copy(io.Discard, br)
		}()
	}
}

// closeAll closes the connections the backend holds (the dead master's side stays open
// otherwise).
func (b *backend) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.open {
		c.Close()
	}
}

func (b *backend) close() {
	b.ln.Close()
	b.closeAll()
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// metric returns the value of an unlabelled metric from a Prometheus text exposition.
func metric(body []byte, name string) (float64, error) {
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("/metrics: no %s", name)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load average unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "load average unknown"
	}
	return "load average " + strings.Join(f[:3], " ")
}

func mib(kib int) float64 { return float64(kib) / 1024 }

func okMark(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

func report(w io.Writer, c config, idles []idleResult, runs []runResult, off *runResult) {
	if len(idles) > 0 {
		fmt.Fprintf(w, "\nidle overhead of gossip (CPU %% of one core over %s; each value the mean of %d window(s) per mode):\n", c.idle, c.idleRounds)
		var cpu, rss, anon, file, heap [2][2]float64 // [gossip][node]
		var n [2]float64
		for _, r := range idles {
			g := 0
			if r.gossip {
				g = 1
			}
			n[g]++
			for i := range 2 {
				cpu[g][i] += r.cpu[i]
				rss[g][i] += mib(r.rss[i])
				heap[g][i] += r.heap[i] / (1 << 20)
				anon[g][i] += mib(r.anon[i])
				file[g][i] += mib(r.file[i])
			}
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "daemon\tgossip\tCPU %\tRSS MiB\tof which anon / file MiB\tGo heap in use MiB\t")
		for i, name := range []string{"lb1 (master)", "lb2 (backup)"} {
			for g, mode := range []string{"off", "on"} {
				if n[g] == 0 {
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.1f\t%.1f / %.1f\t%.1f\t\n", name, mode, cpu[g][i]/n[g], rss[g][i]/n[g], anon[g][i]/n[g], file[g][i]/n[g], heap[g][i]/n[g])
			}
			if n[0] > 0 && n[1] > 0 {
				dc := cpu[1][i]/n[1] - cpu[0][i]/n[0]
				dr := rss[1][i]/n[1] - rss[0][i]/n[0]
				dh := heap[1][i]/n[1] - heap[0][i]/n[0]
				da := anon[1][i]/n[1] - anon[0][i]/n[0]
				df := file[1][i]/n[1] - file[0][i]/n[0]
				fmt.Fprintf(tw, "%s\tdiff\t%+.2f (target < 1: %s)\t%+.2f (target < 5: %s)\t%+.1f / %+.1f\t%+.1f\t\n", name, dc, okMark(dc < 1), dr, okMark(dr < 5), da, df, dh)
			}
		}
		tw.Flush()
		fmt.Fprintln(w, "(file: pages of the vipd binary mapped in, shared with the page cache; anon: heap, stacks, runtime)")
	}

	var fo, first, watch, last, after, pstart, sweep []time.Duration
	failed, missed, reconnected := 0, 0, 0
	for _, r := range runs {
		if r.err != nil {
			failed++
			continue
		}
		fo = append(fo, r.failover)
		first = append(first, r.first)
		watch = append(watch, r.watch)
		last = append(last, r.last)
		after = append(after, r.watch-r.failover)
		if r.probes > 0 {
			pstart = append(pstart, r.probeStart)
			sweep = append(sweep, r.sweep)
		}
		if r.watch > r.failover+500*time.Millisecond {
			missed++
		}
		if r.reconnect {
			reconnected++
		}
	}
	fmt.Fprintf(w, "\npower loss of the VIP holder (port unplugged + SIGKILL), %d idle connections + one idle watch through the VIP, conn_reset on: %d runs, %d failed\n", c.conns, len(runs), failed)
	if len(fo) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "from the power loss to\ts (median / min / max)\t")
		fmt.Fprintf(tw, "failover (backup holds the VIP)\t%s\t\n", measure.Summarize(fo))
		if len(pstart) > 0 {
			fmt.Fprintf(tw, "new master starts sending reset probes (its log)\t%s\t\n", measure.Summarize(pstart))
		}
		fmt.Fprintf(tw, "first connection reset\t%s\t\n", measure.Summarize(first))
		fmt.Fprintf(tw, "watch reset\t%s\t\n", measure.Summarize(watch))
		fmt.Fprintf(tw, "last of the %d idle connections reset\t%s\t\n", c.conns, measure.Summarize(last))
		fmt.Fprintf(tw, "(watch reset - failover)\t%s\t\n", measure.Summarize(after))
		if len(sweep) > 0 {
			fmt.Fprintf(tw, "(time to send round 1 of the probes)\t%s\t\n", measure.Summarize(sweep))
		}
		tw.Flush()
		fmt.Fprintf(w, "target watch reset <= failover + 0.5 s: %s (%d of %d runs); the client reconnected through the new master in %d of %d runs\n",
			okMark(missed == 0 && failed == 0), len(fo)-missed, len(runs), reconnected, len(fo))
	}
	if off != nil {
		fmt.Fprint(w, "\nconn_reset off: ")
		switch {
		case off.err != nil:
			fmt.Fprintf(w, "ERROR: %v\n", off.err)
		case off.watchErr == nil:
			fmt.Fprintf(w, "failover %s s; the watch is still hung %s after it and %d of %d idle connections were reset (as with Keepalived + HAProxy: until the client's own keepalive or ping)\n",
				measure.Secs(off.failover), c.hung, off.idleReset, off.conns)
		default:
			fmt.Fprintf(w, "the watch ended anyway (%v) %s s after the power loss: UNEXPECTED\n", off.watchErr, measure.Secs(off.watch))
		}
	}
}
