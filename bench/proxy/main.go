// Command proxy benchmarks vipd's TCP proxy side by side with HAProxy (Debian's 2.6, configured
// like the reference setup) and with no proxy at all, in one run on one network-namespace lab:
//
//	go run ./bench/proxy -vipd bin/vipd     (root; `make bench-proxy`)
//
// Hosts: a client, lbv (vipd), lbh (HAProxy) and three masters running the TLS kube-apiserver
// stand-in (test/apiserverstub) and an iperf3 server. It measures
//
//	(i)   bulk single-stream throughput (iperf3) through each, against direct;
//	(ii)  new TLS connections per second (one GET /version each) with 64 concurrent clients,
//	      p50/p99 latency, through each and direct;
//	(iii) 10,000 idle TLS connections held through each: the proxy's resident memory (VmRSS);
//	(iv)  one master SIGKILLed under steady load (50 new TLS connections/s through each for 10 s,
//	      the kill at 3 s): failed requests, and when each proxy marked the master DOWN;
//
// and prints every figure with its baseline from the same run. The load generator is this
// program run again in the client's namespace (`proxy loadgen ...`). Everything it starts is
// ended by PID and the lab is removed at the end, also on Ctrl-C.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vipd-project/vipd/bench/internal/measure"
	"github.com/vipd-project/vipd/pkg/stats"
	"github.com/vipd-project/vipd/test/apiserverstub"
	"github.com/vipd-project/vipd/test/lab"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "loadgen" {
		if err := loadgenMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run())
}

type options struct {
	vipd, haproxy     string
	iperfTime         time.Duration
	tlsTime           time.Duration
	conc              int
	idle              int
	killRate          int
	killTime, killAt  time.Duration
	keep, verbose     bool
	connectTimeout    time.Duration
	jsonOut, markdown string
	rounds            int
	storm             int
	stormRounds       int
	watchRounds       int
	kaTime            time.Duration
	only              map[string]bool
}

// sections of the benchmark, in the order they run (-only picks some).
var sections = []string{"bulk", "tls", "keepalive", "storm", "idle", "watch", "faults"}

func (o *options) runs(section string) bool { return len(o.only) == 0 || o.only[section] }

func run() int {
	var o options
	flag.StringVar(&o.vipd, "vipd", "", "vipd binary (default: build ./cmd/vipd into a temp dir)")
	flag.StringVar(&o.haproxy, "haproxy", "haproxy", "HAProxy binary")
	flag.DurationVar(&o.iperfTime, "iperf-time", 5*time.Second, "iperf3 time per path (two rounds of half, each after 1 s omitted)")
	flag.DurationVar(&o.tlsTime, "tls-time", 12*time.Second, "new-TLS-connection load per path (-rounds rounds, order rotated)")
	flag.DurationVar(&o.kaTime, "keepalive-time", 18*time.Second, "HTTPS keep-alive load (wrk) per path (-rounds rounds, order rotated)")
	flag.IntVar(&o.rounds, "rounds", 6, "alternating rounds of the TLS connection and keep-alive loads")
	flag.IntVar(&o.storm, "storm", 2000, "clients connecting at once in the connection storm")
	flag.IntVar(&o.stormRounds, "storm-rounds", 3, "rounds of the connection storm per proxy (order alternated)")
	flag.IntVar(&o.watchRounds, "watch-rounds", 3, "rounds of the watch recovery after a master SIGKILL per proxy (order alternated)")
	only := flag.String("only", "", "run only these sections, comma separated: "+strings.Join(sections, ","))
	flag.IntVar(&o.conc, "c", 64, "concurrent clients for the TLS connection rate")
	flag.IntVar(&o.idle, "idle", 10000, "idle connections to hold through each proxy")
	flag.IntVar(&o.killRate, "kill-rate", 200, "new TLS connections per second during the master kill and the link cut")
	flag.DurationVar(&o.killTime, "kill-time", 10*time.Second, "duration of the master-kill load")
	flag.DurationVar(&o.killAt, "kill-at", 3*time.Second, "when the master is killed, from the start of that load")
	flag.DurationVar(&o.connectTimeout, "connect-timeout", 0, "vipd's proxy.connect_timeout (0: vipd's default)")
	flag.BoolVar(&o.keep, "keep", false, "keep the lab directory (configs, logs) after the run")
	flag.BoolVar(&o.verbose, "v", false, "log lab events")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&o.markdown, "markdown", "", "also write the table as Markdown to this file")
	flag.Parse()
	if *only != "" {
		o.only = map[string]bool{}
		for _, x := range strings.Split(*only, ",") {
			if !slices.Contains(sections, x) {
				fmt.Fprintf(os.Stderr, "-only: unknown section %q (want %s)\n", x, strings.Join(sections, ","))
				return 2
			}
			o.only[x] = true
		}
	}
	if o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "-rounds: must be >= 1")
		return 2
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if os.Geteuid() != 0 {
		log.Error("the proxy benchmark needs root (network namespaces)")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	defer cancel()
	b := &bench{o: o, log: log, started: time.Now()}
	err := b.run(ctx)
	if b.l != nil {
		if o.keep {
			log.Info("lab directory kept", "dir", b.l.Dir)
		}
		if cerr := b.l.Close(); cerr != nil {
			log.Warn("close lab", "err", cerr)
		}
	}
	if b.tmp != "" {
		_ = os.RemoveAll(b.tmp)
	}
	if err != nil {
		log.Error("benchmark failed", "err", err)
		return 1
	}
	return 0
}

type bench struct {
	o       options
	log     *slog.Logger
	started time.Time
	tmp     string

	l                *lab.Lab
	client, lbv, lbh *lab.Host
	masters          []*lab.Host
	exe              string
	caFile           string
	ms               *apiserverstub.Masters
	res              results
}

// results is every figure of one run (also written with -json).
type results struct {
	Date           time.Time `json:"date"`
	VipdVersion    string    `json:"vipd_version"`
	HAProxyVersion string    `json:"haproxy_version"`
	VipdConfig     string    `json:"vipd_config"` // what differs from deploy/vipd.yaml's defaults
	CPUs           int       `json:"cpus"`

	BulkGbps map[string]float64 `json:"bulk_gbps"` // direct, vipd, haproxy

	TLSRate  map[string]float64 `json:"tls_conns_per_sec"`
	TLSP50   map[string]float64 `json:"tls_p50_ms"`
	TLSP99   map[string]float64 `json:"tls_p99_ms"`
	TLSErrs  map[string]int     `json:"tls_errors"`
	TLSTotal map[string]int     `json:"tls_requests"`
	// Per round (-rounds), for the medians of the vipd/haproxy ratios.
	TLSRoundRate roundStats `json:"tls_round_conns_per_sec"`
	TLSRoundP99  roundStats `json:"tls_round_p99_ms"`
	TLSRoundCPU  roundStats `json:"tls_round_cpu_ms_per_1000_conns"` // the proxy process's utime+stime
	TLSRoundLoad roundStats `json:"tls_round_loadavg_1m"`

	KeepAlive keepAliveResult `json:"keepalive"`

	NoFile       int                 `json:"rlimit_nofile"`
	IdleN        int                 `json:"idle_conns"` // connections held per proxy
	RSSStartMiB  map[string]float64  `json:"rss_start_mib"`
	RSSBeforeMiB map[string]float64  `json:"rss_before_idle_mib"`
	RSSIdleMiB   map[string]float64  `json:"rss_idle_mib"`
	RSSIdleExt   map[string]float64  `json:"rss_idle_extrapolated_mib"` // to the requested count
	FDsPerConn   map[string]float64  `json:"fds_per_idle_conn"`
	IdleHeld     map[string]int      `json:"idle_held"`
	IdleClosed   map[string]int      `json:"idle_closed"`
	IdleMem      map[string]memSplit `json:"idle_mem"`
	IdleLoad     map[string]float64  `json:"idle_loadavg_1m"`

	Storm stormResult `json:"storm"`
	Watch watchResult `json:"watch_recovery"`

	Kill faultResult `json:"master_kill"`
	Cut  faultResult `json:"master_link_cut"`

	Seconds float64 `json:"seconds"`
	// LoadAvg is /proc/loadavg's 1-minute figure at the start and at the end of the run.
	LoadAvg [2]float64 `json:"loadavg_1m"`
}

func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return f
}

func (b *bench) run(ctx context.Context) error {
	b.res = results{Date: time.Now().UTC(), CPUs: runtime.NumCPU(),
		BulkGbps: map[string]float64{}, TLSRate: map[string]float64{}, TLSP50: map[string]float64{},
		TLSP99: map[string]float64{}, TLSErrs: map[string]int{}, TLSTotal: map[string]int{},
		RSSStartMiB: map[string]float64{}, RSSIdleMiB: map[string]float64{}, RSSBeforeMiB: map[string]float64{},
		RSSIdleExt: map[string]float64{}, FDsPerConn: map[string]float64{}, IdleHeld: map[string]int{},
		IdleClosed: map[string]int{}, IdleMem: map[string]memSplit{}, IdleLoad: map[string]float64{},
		TLSRoundRate: roundStats{}, TLSRoundP99: roundStats{}, TLSRoundCPU: roundStats{}, TLSRoundLoad: roundStats{}}
	b.res.LoadAvg[0] = loadAvg()
	b.res.VipdConfig = "defaults"
	if b.o.connectTimeout > 0 {
		b.res.VipdConfig = "proxy.connect_timeout " + b.o.connectTimeout.String()
	}
	if err := b.setup(ctx); err != nil {
		return err
	}
	if b.o.runs("bulk") {
		if err := b.bulk(ctx); err != nil {
			return fmt.Errorf("bulk throughput: %w", err)
		}
	}
	v, h, err := b.startProxies(ctx)
	if err != nil {
		return err
	}
	if b.o.runs("tls") {
		if err := b.tlsRate(ctx, map[string]int{"vipd": v.PID, "haproxy": h.PID}); err != nil {
			return fmt.Errorf("TLS connection rate: %w", err)
		}
	}
	if b.o.runs("keepalive") {
		if err := b.keepAlive(ctx, map[string]int{"vipd": v.PID, "haproxy": h.PID}); err != nil {
			return fmt.Errorf("HTTPS keep-alive rate: %w", err)
		}
	}
	if b.o.runs("storm") {
		if err := b.connStorm(ctx, map[string]int{"vipd": v.PID, "haproxy": h.PID}); err != nil {
			return fmt.Errorf("connection storm: %w", err)
		}
	}
	if b.o.runs("idle") {
		if err := b.idleConns(ctx, v, h); err != nil {
			return fmt.Errorf("idle connections: %w", err)
		}
	}
	if b.o.runs("watch") {
		if err := b.watchRecovery(ctx, v); err != nil {
			return fmt.Errorf("watch recovery: %w", err)
		}
	}
	if b.o.runs("faults") {
		if err := b.masterFaults(ctx, v); err != nil {
			return fmt.Errorf("master faults: %w", err)
		}
	}
	b.res.Seconds = time.Since(b.started).Seconds()
	b.res.LoadAvg[1] = loadAvg()
	return b.report()
}

func (b *bench) setup(ctx context.Context) error {
	// 10,000 idle connections through a proxy are 20,000 sockets in it (and the client's 10,000):
	// raise the descriptor limit; the lab's processes inherit it.
	// Without CAP_SYS_RESOURCE (some containers) the hard limit cannot be raised: then fewer
	// idle connections are held and the memory is extrapolated to the requested count.
	lim := syscall.Rlimit{Cur: 262144, Max: 262144}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("read RLIMIT_NOFILE: %w", err)
		}
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raise RLIMIT_NOFILE to its hard limit %d: %w", lim.Max, err)
		}
		b.log.Warn("cannot raise RLIMIT_NOFILE's hard limit (no CAP_SYS_RESOURCE?)", "hard", lim.Max)
	}
	b.res.NoFile = int(lim.Max)
	// An idle proxied connection costs a proxy 2 descriptors (its two sockets; vipd takes splice
	// pipes only while bytes move). A proxy that needs more holds fewer than asked, which the
	// table shows.
	b.res.IdleN = min(b.o.idle, (int(lim.Max)-1000)/2)
	if b.res.IdleN < b.o.idle {
		b.log.Warn("holding fewer idle connections than asked; RSS is extrapolated", "asked", b.o.idle,
			"holding", b.res.IdleN, "nofile", lim.Max)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable (for the load generator): %w", err)
	}
	b.exe = exe
	if b.tmp, err = os.MkdirTemp("", "bench-proxy-"); err != nil {
		return err
	}
	if b.o.vipd == "" {
		b.o.vipd = filepath.Join(b.tmp, "vipd")
		b.log.Info("building vipd", "out", b.o.vipd)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.o.vipd, "github.com/vipd-project/vipd/cmd/vipd")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build vipd: %w: %s", err, out)
		}
	}
	if b.o.vipd, err = filepath.Abs(b.o.vipd); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, b.o.vipd, "version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s version: %w: %s", b.o.vipd, err, out)
	}
	b.res.VipdVersion = strings.TrimSpace(string(out))
	out, err = exec.CommandContext(ctx, b.o.haproxy, "-v").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s -v: %w: %s (apt-get install haproxy)", b.o.haproxy, err, out)
	}
	b.res.HAProxyVersion = strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
	for _, tool := range []string{"iperf3", "wrk"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is missing (apt-get install %s)", tool, tool)
		}
	}

	l, err := lab.Start(ctx, lab.Options{Hosts: []string{"client", "lbv", "lbh", "m1", "m2", "m3"},
		Prefix: lab.RandomPrefix("bp"), KeepDir: b.o.keep, Logger: b.log})
	if err != nil {
		return err
	}
	b.l = l
	b.client, b.lbv, b.lbh = l.Host("client"), l.Host("lbv"), l.Host("lbh")
	b.masters = []*lab.Host{l.Host("m1"), l.Host("m2"), l.Host("m3")}
	for _, h := range []*lab.Host{b.client, b.lbv, b.lbh} {
		if err := h.Sysctl("net.ipv4.ip_local_port_range", "1024 65535"); err != nil {
			return err
		}
		if err := h.Sysctl("net.ipv4.tcp_tw_reuse", "1"); err != nil {
			return err
		}
	}
	sans := []net.IP{b.lbv.Addr.AsSlice(), b.lbh.Addr.AsSlice(), l.Addr(100).AsSlice()}
	if b.ms, err = apiserverstub.StartMasters(ctx, l, b.masters, sans); err != nil {
		return err
	}
	b.caFile = b.ms.CAFile
	if _, err := b.masters[0].Start("iperf3", []string{"iperf3", "-s", "-p", "5201"}, ""); err != nil {
		return err
	}
	if err := b.waitTCP(ctx, b.client, hostPort(b.masters[0], 5201)); err != nil {
		return fmt.Errorf("iperf3 server: %w", err)
	}
	b.log.Info("lab ready", "prefix", l.Prefix, "dir", l.Dir)
	return nil
}

func hostPort(h *lab.Host, port int) string {
	return net.JoinHostPort(h.Addr.String(), strconv.Itoa(port))
}

func (b *bench) waitTCP(ctx context.Context, h *lab.Host, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		c, err := h.Dial(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("connect %s from %s: %w (%v)", addr, h.Name, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// vipdConfig is vipd as an operator would deploy it (deploy/vipd.yaml's defaults: HTTPS
// /readyz checks every 2 s, fall 3, rise 2, 500 ms while changing), on eth0 with the lab's VIP.
func (b *bench) vipdConfig(listen string, backends []string, check, sock string) string {
	var s strings.Builder
	fmt.Fprintf(&s, `node_name: lbv
log_level: info
vrrp:
  interface: eth0
  vrid: 51
  priority: 100
  advert_interval: 1s
  vips:
    - %s
proxy:
  listen: %q
  backends:
`, lab.Prefix24(b.l.Addr(100)), listen)
	for _, be := range backends {
		fmt.Fprintf(&s, "    - %s\n", be)
	}
	if b.o.connectTimeout > 0 {
		fmt.Fprintf(&s, "  connect_timeout: %s\n", b.o.connectTimeout)
	}
	fmt.Fprintf(&s, `  balance: roundrobin
  max_conns: 30000
  # every client is one host, and HAProxy (the baseline) has no per-source cap
  max_conns_per_source: 0
  drain_grace: 1s
health:
  type: %s
`, check)
	if check == "https" {
		s.WriteString("  path: /readyz\n  tls:\n    insecure_skip_verify: true\n")
	}
	fmt.Fprintf(&s, "stats:\n  listen: \":8404\"\ncontrol_socket: %s\n", sock)
	return s.String()
}

// haproxyConfig is the reference's HAProxy: mode tcp, roundrobin, TCP checks every 2 s
// (fall 3 rise 2), no redispatch, long client/server timeouts, stats on :8404.
// maxconn is 30000, or what the descriptor limit allows (HAProxy refuses to start otherwise).
func haproxyConfig(port int, backends []string, nofile int) string {
	var s strings.Builder
	fmt.Fprintf(&s, "global\n    maxconn %d\n", min(30000, (nofile-100)/2))
	fmt.Fprintf(&s, `
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    retries 3

frontend k8s-api
    bind *:%d
    default_backend k8s-masters

backend k8s-masters
    balance roundrobin
`, port)
	for i, be := range backends {
		fmt.Fprintf(&s, "    server m%d %s check inter 2s fall 3 rise 2\n", i+1, be)
	}
	s.WriteString(`
listen stats
    bind *:8404
    mode http
    stats enable
    stats uri /stats
    stats refresh 10s
`)
	return s.String()
}

// startVipd writes the config and starts vipd in lbv; it waits until every backend is UP.
func (b *bench) startVipd(ctx context.Context, name string, port int, backends []string, check string) (*lab.Vipd, error) {
	dir := filepath.Join(b.l.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "vipd.sock")
	path := filepath.Join(dir, "vipd.yaml")
	if err := os.WriteFile(path, []byte(b.vipdConfig(":"+strconv.Itoa(port), backends, check, sock)), 0o600); err != nil {
		return nil, err
	}
	p, err := b.lbv.Start(name, []string{b.o.vipd, "run", "-c", path}, "")
	if err != nil {
		return nil, err
	}
	v := &lab.Vipd{Proc: p, Opts: lab.VipdOptions{Bin: b.o.vipd}, ConfigPath: path, Socket: sock, StatsAddr: hostPort(b.lbv, 8404)}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		s, err := vipdSnap(wctx, v)
		if err == nil && len(s.Backends) == len(backends) {
			up := 0
			for _, be := range s.Backends {
				if be.Up {
					up++
				}
			}
			if up == len(backends) {
				return v, nil
			}
		}
		if !v.Running() {
			return nil, fmt.Errorf("vipd exited: %v\n%s", v.Wait(0), v.Tail(20))
		}
		select {
		case <-wctx.Done():
			return nil, fmt.Errorf("vipd: backends not all UP (%v): %w\n%s", err, wctx.Err(), v.Tail(20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func vipdSnap(ctx context.Context, v *lab.Vipd) (*stats.Snapshot, error) {
	s, err := v.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return &s.Snapshot, nil
}

// startHAProxy writes the config and starts `haproxy -f CONF -db` in lbh; it waits until every
// server is UP on the stats page.
func (b *bench) startHAProxy(ctx context.Context, name string, port int, backends []string) (*lab.Proc, error) {
	path := filepath.Join(b.l.Dir, name+".cfg")
	if err := os.WriteFile(path, []byte(haproxyConfig(port, backends, b.res.NoFile)), 0o600); err != nil {
		return nil, err
	}
	p, err := b.lbh.Start(name, []string{b.o.haproxy, "-f", path, "-db"}, "")
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		st, err := b.haproxyStatus(wctx)
		up := 0
		for _, s := range st {
			if s == "UP" {
				up++
			}
		}
		if err == nil && up == len(backends) {
			return p, nil
		}
		if !p.Running() {
			return nil, fmt.Errorf("haproxy exited: %v\n%s", p.Wait(0), p.Tail(20))
		}
		select {
		case <-wctx.Done():
			return nil, fmt.Errorf("haproxy: servers not all UP (%v %v): %w\n%s", st, err, wctx.Err(), p.Tail(20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// haproxyStatus reads the stats CSV: server name -> status (UP, DOWN, "UP 1/2"...).
func (b *bench) haproxyStatus(ctx context.Context) (map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostPort(b.lbh, 8404)+"/stats;csv", nil)
	if err != nil {
		return nil, err
	}
	resp, err := b.lbh.HTTPClient(2 * time.Second).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	col := map[string]int{}
	out := map[string]string{}
	for sc.Scan() {
		f := strings.Split(sc.Text(), ",")
		if strings.HasPrefix(sc.Text(), "# ") {
			f[0] = strings.TrimPrefix(f[0], "# ")
			for i, n := range f {
				col[n] = i
			}
			continue
		}
		si, ok1 := col["status"]
		if !ok1 || len(f) <= si || f[0] != "k8s-masters" || f[1] == "BACKEND" {
			continue
		}
		out[f[1]] = f[si]
	}
	return out, sc.Err()
}

// loadgen runs this program's load generator in the client namespace and decodes its result.
func (b *bench) loadgen(ctx context.Context, args ...string) (*lgResult, error) {
	cmd := b.client.Command(ctx, append([]string{b.exe, "loadgen", "-ca", b.caFile}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("loadgen %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	var r lgResult
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("loadgen %s: decode %q: %w", strings.Join(args, " "), out, err)
	}
	return &r, nil
}

// (i) bulk single-stream throughput, iperf3 to m1 directly and through each proxy.
func (b *bench) bulk(ctx context.Context) error {
	be := []string{hostPort(b.masters[0], 5201)}
	v, err := b.startVipd(ctx, "vipd-iperf", 5201, be, "tcp")
	if err != nil {
		return err
	}
	h, err := b.startHAProxy(ctx, "haproxy-iperf", 5201, be)
	if err != nil {
		return err
	}
	// Two rounds, each path in turn, the order reversed in the second, so that a change in the
	// machine's load during the run weighs on every path alike.
	secs := strconv.Itoa(max(1, int(b.o.iperfTime.Seconds()/2+0.5)))
	addr := map[string]string{"direct": b.masters[0].Addr.String(), "vipd": b.lbv.Addr.String(), "haproxy": b.lbh.Addr.String()}
	for _, name := range []string{"direct", "vipd", "haproxy", "haproxy", "vipd", "direct"} {
		b.log.Info("bulk throughput (iperf3)", "path", name, "seconds", secs)
		var r struct {
			End struct {
				SumReceived struct {
					BPS float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
			Error string `json:"error"`
		}
		// The server takes one test at a time and may still be closing the previous one.
		for try := 0; ; try++ {
			cctx, cancel := context.WithTimeout(ctx, b.o.iperfTime+20*time.Second)
			out, err := b.client.Command(cctx, "iperf3", "-c", addr[name], "-p", "5201", "-t", secs, "-O", "1", "-J").Output()
			cancel()
			r.Error = ""
			jerr := json.Unmarshal(out, &r)
			if strings.Contains(r.Error, "busy") && try < 20 {
				time.Sleep(250 * time.Millisecond)
				continue
			}
			if err != nil || jerr != nil || r.Error != "" || r.End.SumReceived.BPS == 0 {
				return fmt.Errorf("iperf3 via %s: %v %v %s", name, err, jerr, r.Error)
			}
			break
		}
		b.res.BulkGbps[name] += r.End.SumReceived.BPS / 1e9 / 2
	}
	if err := v.Stop(5 * time.Second); err != nil {
		b.log.Warn("vipd (iperf) did not stop on SIGTERM", "err", err)
	}
	if err := h.Stop(5 * time.Second); err != nil {
		b.log.Warn("haproxy (iperf) did not stop on SIGTERM", "err", err)
	}
	return nil
}

func (b *bench) backends6443() []string {
	var be []string
	for _, m := range b.masters {
		be = append(be, hostPort(m, 6443))
	}
	return be
}

func (b *bench) startProxies(ctx context.Context) (*lab.Vipd, *lab.Proc, error) {
	v, err := b.startVipd(ctx, "vipd", 6443, b.backends6443(), "https")
	if err != nil {
		return nil, nil, err
	}
	h, err := b.startHAProxy(ctx, "haproxy", 6443, b.backends6443())
	if err != nil {
		return nil, nil, err
	}
	time.Sleep(time.Second)
	b.res.RSSStartMiB["vipd"] = rssMiB(v.PID)
	b.res.RSSStartMiB["haproxy"] = rssMiB(h.PID)
	return v, h, nil
}

// (ii) new TLS connections per second with b.o.conc clients, in two interleaved halves.
func (b *bench) tlsRate(ctx context.Context, pids map[string]int) error {
	targets := map[string]string{
		"direct":  strings.Join(b.backends6443(), ","),
		"vipd":    hostPort(b.lbv, 6443),
		"haproxy": hostPort(b.lbh, 6443),
	}
	// -rounds rounds, the order rotated each round (see bulk); each round's rate and p99 are
	// kept for the median of the per-round ratios.
	slot := b.o.tlsTime / time.Duration(b.o.rounds)
	lat := map[string][]float64{}
	secs := map[string]float64{}
	for i, order := range roundOrder([]string{"vipd", "haproxy", "direct"}, b.o.rounds) {
		for _, path := range order {
			b.log.Info("new TLS connections", "round", i+1, "path", path, "clients", b.o.conc, "for", slot)
			la := loadAvg()
			t0, _ := measure.CPUTicks(pids[path])
			r, err := b.loadgen(ctx, "-mode", "tls", "-targets", targets[path], "-c", strconv.Itoa(b.o.conc), "-d", slot.String())
			if err != nil {
				return err
			}
			if t1, err := measure.CPUTicks(pids[path]); err == nil && pids[path] != 0 && r.OK > 0 {
				// CPU ms of the proxy process per 1,000 connections (USER_HZ ticks are 10 ms).
				b.res.TLSRoundCPU[path] = append(b.res.TLSRoundCPU[path], float64(t1-t0)*10/float64(r.OK)*1000)
			}
			if r.Errors > 0 {
				b.log.Warn("TLS requests failed", "path", path, "errors", r.Errors, "first", r.ErrText)
			}
			lat[path] = append(lat[path], r.LatMs...)
			secs[path] += r.Secs
			b.res.TLSErrs[path] += r.Errors
			b.res.TLSTotal[path] += r.OK + r.Errors
			rl := append([]float64(nil), r.LatMs...)
			sort.Float64s(rl)
			b.res.TLSRoundRate[path] = append(b.res.TLSRoundRate[path], float64(len(rl))/r.Secs)
			b.res.TLSRoundP99[path] = append(b.res.TLSRoundP99[path], pct(rl, 0.99))
			b.res.TLSRoundLoad[path] = append(b.res.TLSRoundLoad[path], la)
		}
	}
	for path, l := range lat {
		sort.Float64s(l)
		b.res.TLSRate[path] = float64(len(l)) / secs[path]
		b.res.TLSP50[path] = pct(l, 0.50)
		b.res.TLSP99[path] = pct(l, 0.99)
	}
	return nil
}

func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// (iii) b.o.idle idle TLS connections held through each proxy: VmRSS of the proxy.
func (b *bench) idleConns(ctx context.Context, v *lab.Vipd, h *lab.Proc) error {
	for _, p := range []struct {
		name, addr string
		pid        int
		host       *lab.Host
	}{{"vipd", hostPort(b.lbv, 6443), v.PID, b.lbv}, {"haproxy", hostPort(b.lbh, 6443), h.PID, b.lbh}} {
		b.log.Info("idle connections", "path", p.name, "count", b.res.IdleN)
		b.res.IdleLoad[p.name] = loadAvg()
		var ms memSplit
		measure := func(i int) {
			if p.name == "vipd" {
				ms.HeapMiB[i], ms.StackMiB[i], ms.Goroutines[i] = goMem(ctx, v)
			}
			ms.SockKiB[i], ms.Sockets[i] = sockMem(ctx, p.host)
		}
		measure(0)
		b.res.RSSBeforeMiB[p.name] = rssMiB(p.pid)
		fdsBefore := countFDs(p.pid)
		cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		cmd := b.client.Command(cctx, b.exe, "loadgen", "-ca", b.caFile, "-mode", "idle", "-targets", p.addr,
			"-n", strconv.Itoa(b.res.IdleN), "-c", "64", "-timeout", "10s")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			cancel()
			return err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			cancel()
			return err
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			cancel()
			return err
		}
		rd := bufio.NewReader(stdout)
		var first, last lgResult
		line, err := rd.ReadBytes('\n')
		if err == nil {
			err = json.Unmarshal(line, &first)
		}
		if err != nil {
			_ = stdin.Close()
			_ = cmd.Wait()
			cancel()
			return fmt.Errorf("idle loadgen via %s: %w: %s", p.name, err, stderr.String())
		}
		time.Sleep(2 * time.Second) // let the proxy settle (GC, buffers)
		b.res.RSSIdleMiB[p.name] = rssMiB(p.pid)
		measure(1)
		b.res.IdleMem[p.name] = ms
		b.res.IdleHeld[p.name] = first.Held
		if first.Held > 0 {
			b.res.FDsPerConn[p.name] = float64(countFDs(p.pid)-fdsBefore) / float64(first.Held)
			b.res.RSSIdleExt[p.name] = b.res.RSSBeforeMiB[p.name] +
				(b.res.RSSIdleMiB[p.name]-b.res.RSSBeforeMiB[p.name])*float64(b.o.idle)/float64(first.Held)
		}
		if first.Errors > 0 {
			b.log.Warn("idle connections failed", "path", p.name, "errors", first.Errors, "first", first.ErrText)
		}
		_ = stdin.Close()
		rest, _ := io.ReadAll(rd)
		werr := cmd.Wait()
		cancel()
		if err := json.Unmarshal(rest, &last); err != nil || werr != nil {
			return fmt.Errorf("idle loadgen via %s: %v %v: %s", p.name, werr, err, stderr.String())
		}
		b.res.IdleClosed[p.name] = last.Closed
		b.log.Info("idle connections held", "path", p.name, "held", first.Held, "closed_by_proxy", last.Closed,
			"rss_mib", fmt.Sprintf("%.1f", b.res.RSSIdleMiB[p.name]), "open_secs", fmt.Sprintf("%.1f", first.Secs))
		time.Sleep(time.Second)
	}
	return nil
}

func countFDs(pid int) int {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(es)
}

func rssMiB(pid int) float64 { return rssSplit(pid)[0] }

// rssSplit is a process's VmRSS, RssAnon (private memory: heap, stacks, pools) and RssFile
// (pages of its binary and libraries, shared with the page cache), MiB; -1 where unknown.
func rssSplit(pid int) [3]float64 {
	out := [3]float64{-1, -1, -1}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		i := slices.Index([]string{"VmRSS:", "RssAnon:", "RssFile:"}, f[0])
		if i >= 0 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			out[i] = kb / 1024
		}
	}
	return out
}

// faultResult is what one fault under load did to the requests through each proxy.
type faultResult struct {
	Failed   map[string]int     `json:"failed"`
	InFlight map[string]int     `json:"failed_in_flight"` // of Failed, started before the fault + 50 ms
	Total    map[string]int     `json:"requests"`
	DownSecs map[string]float64 `json:"down_after_secs"` // 0: not seen DOWN
}

// underLoad sends b.o.killRate new TLS connections per second for b.o.killTime through both
// proxies at once, calls fault at b.o.killAt, and records the failures and when each proxy
// showed victim DOWN (polled until 15 s after the fault).
func (b *bench) underLoad(ctx context.Context, v *lab.Vipd, what string, victim *lab.Host, fault func() error) (faultResult, error) {
	res := faultResult{Failed: map[string]int{}, InFlight: map[string]int{}, Total: map[string]int{}, DownSecs: map[string]float64{}}
	type out struct {
		r   *lgResult
		err error
	}
	run := func(addr string) chan out {
		c := make(chan out, 1)
		go func() {
			r, err := b.loadgen(ctx, "-mode", "rate", "-targets", addr, "-rate", strconv.Itoa(b.o.killRate),
				"-d", b.o.killTime.String(), "-timeout", "2s")
			c <- out{r, err}
		}()
		return c
	}
	b.log.Info(what+" under load", "rate", b.o.killRate, "for", b.o.killTime, "at", b.o.killAt, "master", victim.Name)
	cv, ch := run(hostPort(b.lbv, 6443)), run(hostPort(b.lbh, 6443))
	select {
	case <-time.After(b.o.killAt):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	at := time.Now()
	if err := fault(); err != nil {
		return res, err
	}
	deadline := at.Add(15 * time.Second)
	for time.Now().Before(deadline) && (res.DownSecs["vipd"] == 0 || res.DownSecs["haproxy"] == 0) {
		if res.DownSecs["vipd"] == 0 {
			if s, err := vipdSnap(ctx, v); err == nil {
				for _, be := range s.Backends {
					if be.Addr == hostPort(victim, 6443) && !be.Up {
						res.DownSecs["vipd"] = time.Since(at).Seconds()
					}
				}
			}
		}
		if res.DownSecs["haproxy"] == 0 {
			if st, err := b.haproxyStatus(ctx); err == nil && strings.HasPrefix(st[victim.Name], "DOWN") {
				res.DownSecs["haproxy"] = time.Since(at).Seconds()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	for name, c := range map[string]chan out{"vipd": cv, "haproxy": ch} {
		o := <-c
		if o.err != nil {
			return res, o.err
		}
		res.Failed[name] = o.r.Errors
		for _, f := range o.r.FailAt {
			// A request whose connection reached the master before the fault fails through any
			// TCP proxy (its TLS session is with that master); count those apart.
			if o.r.Start.Add(time.Duration(f * float64(time.Second))).Before(at.Add(50 * time.Millisecond)) {
				res.InFlight[name]++
			}
		}
		res.Total[name] = o.r.OK + o.r.Errors
		if o.r.Errors > 0 {
			b.log.Info("requests failed: "+what, "path", name, "failed", o.r.Errors, "first", o.r.ErrText)
		}
	}
	return res, nil
}

// (iv) one master's process SIGKILLed under load; then (v) another master's link cut.
// waitAllUp waits (20 s at most) until every master is UP on both proxies.
func (b *bench) waitAllUp(ctx context.Context, v *lab.Vipd) error {
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		s, err1 := vipdSnap(wctx, v)
		st, err2 := b.haproxyStatus(wctx)
		up := 0
		if err1 == nil && err2 == nil {
			for _, be := range s.Backends {
				if be.Up {
					up++
				}
			}
			for _, x := range st {
				if x == "UP" {
					up++
				}
			}
		}
		if up == 2*len(b.masters) {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("masters not all UP again on both proxies: %w", wctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (b *bench) masterFaults(ctx context.Context, v *lab.Vipd) error {
	m3 := b.masters[2]
	var err error
	if b.res.Kill, err = b.underLoad(ctx, v, "master killed", m3, func() error {
		return b.ms.Kill(m3.Name)
	}); err != nil {
		return err
	}
	// m3 back, and UP on both proxies, before the next fault.
	if err := b.ms.Start(ctx, m3.Name); err != nil {
		return err
	}
	if err := b.waitAllUp(ctx, v); err != nil {
		return err
	}
	m2 := b.masters[1]
	b.res.Cut, err = b.underLoad(ctx, v, "master link cut", m2, m2.LinkDown)
	if uerr := m2.LinkUp(); uerr != nil && err == nil {
		err = uerr
	}
	return err
}

func downText(secs float64) string {
	if secs == 0 {
		return "> 15"
	}
	return strconv.FormatFloat(secs, 'f', 1, 64)
}
