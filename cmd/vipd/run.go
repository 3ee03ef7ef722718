package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/vipd-project/vipd/pkg/cluster"
	"github.com/vipd-project/vipd/pkg/config"
	"github.com/vipd-project/vipd/pkg/health"
	"github.com/vipd-project/vipd/pkg/logx"
	"github.com/vipd-project/vipd/pkg/stats"
	"github.com/vipd-project/vipd/pkg/tcpproxy"
	"github.com/vipd-project/vipd/pkg/vrrp"
)

func newRunCmd() *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon (what the systemd unit starts)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The same function as `vipd check` and a reload: what check accepts, run accepts.
			cfg, err := config.LoadOnHost(path)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			level := new(slog.LevelVar)
			level.Set(parseLevel(cfg.LogLevel))
			log, err := logx.New(cmd.ErrOrStderr(), logx.Options{Format: cfg.LogFormat, Level: level, Getenv: os.Getenv})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			for _, w := range cfg.Warnings { // the same warnings `vipd check` prints
				log.Warn("config: " + w)
			}
			d, err := newDaemon(cfg, path, log, level)
			if err != nil {
				log.Error("cannot start", "err", err)
				return &exitError{code: 1}
			}
			if err := d.run(cmd.Context()); err != nil {
				log.Error("stopped with an error", "err", err)
				return &exitError{code: 1}
			}
			return nil
		},
	}
	c.Flags().StringVarP(&path, "config", "c", config.DefaultPath, "configuration file")
	return c
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(s)) // validated by config
	return l
}

// daemon wires the packages together. Data flows one way: health events feed the proxy; the
// proxy's "can serve" feeds the VRRP tracker; stats read snapshots of all of them.
type daemon struct {
	log     *slog.Logger
	level   *slog.LevelVar
	path    string
	started time.Time
	notify  *notifier

	mu          sync.Mutex // guards cfg and fingerprint
	cfg         *config.Config
	fingerprint string // cfg.Fingerprint(), for the gossip layer's frequent polls

	router  *vrrp.Router
	monitor *health.Monitor // nil without a proxy section
	proxy   *tcpproxy.Proxy // nil without a proxy section
	track   *vrrp.Track     // the proxy's weight on the VRRP priority
	stats   *stats.Server
	cluster *cluster.Cluster // nil unless cluster.enabled
	sbTrack *vrrp.Track      // FAULT while the cluster says resign (split_brain: resign-lower)

	stateMu sync.Mutex  // serializes writes of state_file (state.go)
	maint   atomic.Bool // maintenance mode (vipd maintenance on): stay BACKUP
}

func newDaemon(cfg *config.Config, path string, log *slog.Logger, level *slog.LevelVar) (*daemon, error) {
	d := &daemon{log: log, level: level, path: path, cfg: cfg, fingerprint: cfg.Fingerprint(), started: time.Now(), notify: newNotifier()}
	var err error
	if d.router, err = vrrp.New(cfg.VRRPConfig(), log.With("component", "vrrp")); err != nil {
		return nil, err
	}
	if cfg.Proxy != nil {
		if d.monitor, err = health.New(cfg.Proxy.Backends, cfg.HealthConfig(), health.Options{Logger: log.With("component", "health")}); err != nil {
			d.router.Close()
			return nil, err
		}
		if d.proxy, err = tcpproxy.New(cfg.ProxyConfig(), tcpproxy.Options{Logger: log.With("component", "proxy"), Health: d.monitor}); err != nil {
			d.router.Close()
			return nil, err
		}
		d.track = d.router.Track("proxy", cfg.TrackWeight())
		d.track.Set(true, "proxy starting") // cleared once the listener is bound and backends are UP
		d.proxy.OnServingChange(func(ok bool, reason string) { d.track.Set(!ok, reason) })
	}
	d.loadState() // what vipd backend/maintenance set before a restart
	d.router.SetHold(d.maint.Load())
	if err := d.newCluster(); err != nil {
		d.router.Close()
		return nil, err
	}
	if d.stats, err = stats.New(cfg.StatsConfig(d.healthz), stats.SourceFunc(d.snapshot), log.With("component", "stats")); err != nil {
		d.router.Close()
		return nil, err
	}
	return d, nil
}

// snapshot is the stats model of the whole daemon, read per request.
func (d *daemon) snapshot() stats.Snapshot {
	d.mu.Lock()
	node := d.cfg.NodeName
	d.mu.Unlock()
	s := stats.Snapshot{Node: node, Version: version, Time: time.Now(), Started: d.started, VRRP: vrrpView(d.router.Status())}
	s.VRRP.Maintenance = d.maint.Load()
	if d.proxy != nil {
		ps := d.proxy.Stats()
		s.Frontend = frontendView(ps)
		s.Backends = backendViews(ps, d.monitor.Status())
	}
	if d.cluster != nil {
		s.Cluster = clusterView(d.cluster.View())
	}
	return s
}

// healthz is the daemon's own liveness: every main loop still running.
func (d *daemon) healthz() error {
	select {
	case <-d.router.Done():
		return errors.New("vrrp loop stopped")
	default:
	}
	return nil
}

func (d *daemon) run(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	var wg sync.WaitGroup
	errc := make(chan error, 8)
	start := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}

	// The VRRP router runs on its own context: on shutdown it must resign (priority 0,
	// VIP removed) while the proxy drains, not after.
	vctx, vcancel := context.WithCancel(context.Background())
	defer vcancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := d.router.Run(vctx); err != nil {
			errc <- fmt.Errorf("vrrp: %w", err)
		}
	}()
	if d.monitor != nil {
		start("health", d.monitor.Run)
		start("proxy", d.proxy.Run)
	}
	start("stats", d.stats.Run)
	if d.cluster != nil {
		start("cluster", d.runCluster)
	}
	ctl, err := d.serveControl(ctx)
	if err != nil {
		d.log.Warn("control socket unavailable; `vipd status --url` still works", "err", err)
	}

	if err := d.waitReady(ctx, errc); err != nil {
		cancel()
		vcancel()
		wg.Wait()
		return err
	}
	_ = d.notify.send("READY=1\nSTATUS=running")
	d.log.Info("vipd started", "version", version, "node", d.cfg.NodeName, "config", d.path,
		"vrid", d.cfg.VRRP.VRID, "priority", d.cfg.VRRP.Priority, "proxy", d.proxy != nil)

	var wd <-chan time.Time
	if iv := watchdogInterval(); iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		wd = t.C
	}
	var runErr error
loop:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				_ = d.notify.send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
				d.reload()
				_ = d.notify.send("READY=1")
				continue
			}
			d.log.Info("stopping", "signal", sig.String())
			break loop
		case err := <-errc:
			runErr = err
			break loop
		case <-wd:
			if d.healthz() == nil {
				_ = d.notify.send("WATCHDOG=1")
			}
		case <-parent.Done():
			break loop
		}
	}
	_ = d.notify.send("STOPPING=1")
	d.stop(vcancel, cancel)
	if ctl != nil {
		ctl.Close()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if runErr == nil {
			runErr = err
		}
	}
	d.log.Info("vipd stopped")
	return runErr
}

// waitReady returns when every part is up (VRRP sockets open, proxy and stats listening),
// or with the first error.
func (d *daemon) waitReady(ctx context.Context, errc chan error) error {
	waits := []<-chan struct{}{d.router.Ready(), d.stats.Ready()}
	if d.proxy != nil {
		waits = append(waits, d.proxy.Ready())
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for _, w := range waits {
		select {
		case <-w:
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			return errors.New("not ready after 30s")
		}
	}
	return nil
}

// reload re-reads the configuration file and applies what can change without a restart.
// Anything it cannot apply is refused as a whole and the running configuration stays.
func (d *daemon) reload() {
	log := d.log.With("config", d.path)
	nc, err := config.LoadOnHost(d.path)
	if err != nil {
		log.Error("reload refused: the new configuration is invalid; keeping the running one", "err", err)
		return
	}
	d.mu.Lock()
	old := d.cfg
	d.mu.Unlock()
	if err := config.RestartError(config.RestartRequired(old, nc)); err != nil {
		log.Error("reload refused; keeping the running configuration", "err", err)
		return
	}
	if err := d.router.Reconfigure(nc.VRRPConfig()); err != nil {
		log.Error("reload refused; keeping the running configuration", "err", err)
		return
	}
	if d.proxy != nil {
		if err := d.monitor.Update(nc.Proxy.Backends, nc.HealthConfig()); err != nil {
			log.Error("reload of health checks failed; VRRP changes applied, proxy unchanged", "err", err)
			return
		}
		if err := d.proxy.Update(nc.ProxyConfig()); err != nil {
			log.Error("reload of the proxy failed; VRRP and health changes applied", "err", err)
			return
		}
	}
	d.level.Set(parseLevel(nc.LogLevel))
	d.mu.Lock()
	d.cfg, d.fingerprint = nc, nc.Fingerprint()
	d.mu.Unlock()
	if _, err := os.Stat(nc.StateFile); err == nil {
		// Backends the file no longer lists lost their run-time state in the proxy: forget
		// them in state_file too.
		if err := d.saveState(); err != nil {
			log.Error("cannot update state_file after the reload", "state_file", nc.StateFile, "err", err)
		}
	}
	for _, w := range nc.Warnings {
		log.Warn("config: " + w)
	}
	log.Info("configuration reloaded")
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano() / 1000
}
