package tcpproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vipd-project/vipd/pkg/health"
)

// Health is what the proxy needs from the health checker; *health.Monitor
// implements it. If the value also has Subscribe(func(health.Event)) func()
// (as *health.Monitor does), the proxy re-evaluates CanServe on every
// transition; otherwise call HealthChanged (a 1 s poll is the fallback).
type Health interface {
	IsUp(addr string) bool
	ReportFailure(addr string, err error)
}

type healthSubscriber interface {
	Subscribe(fn func(health.Event)) (unsubscribe func())
}

var (
	_ Health           = (*health.Monitor)(nil)
	_ healthSubscriber = (*health.Monitor)(nil)
)

// Options of a Proxy. All optional.
type Options struct {
	Logger *slog.Logger
	// Health decides which backends are UP; nil treats every backend as UP.
	Health Health
}

// Proxy is a TCP load balancer. Create with New, run with Run.
type Proxy struct {
	log    *slog.Logger
	health Health

	cfg atomic.Pointer[runtimeConfig]
	rr  atomic.Uint64

	wrrMu sync.Mutex // weighted round-robin's current weights (admin.go)

	ready     chan struct{}
	readyOnce sync.Once

	active atomic.Int64 // client connections being handled

	mu        sync.Mutex
	ln        *net.TCPListener
	running   bool
	stopping  bool
	listenErr error
	backends  map[string]*backendState // persistent across reloads
	sessions  map[uint64]*session
	nextID    uint64
	fe        counters
	wg        sync.WaitGroup

	servMu   sync.Mutex
	servCBs  []func(ok bool, reason string)
	servLast *bool

	capLog     rateLog
	dialLog    rateLog
	sourceLog  rateLog
	timeoutLog [numClosedReasons]rateLog
	sources    sources // current connections per client address (guard.go)

	bufs     sync.Pool       // *[]byte of bufSize: the rest of a message a slow destination could not take at once
	forceCtx context.Context // Run's: cancelled when the drain grace is over
}

type runtimeConfig struct {
	cfg      Config
	backends []*backendState
}

type counters struct {
	total        uint64
	refusedByCap uint64
	connErrors   uint64
	retries      uint64
	bytesIn      uint64 // closed sessions
	bytesOut     uint64
	// frontend only:
	refusedBySource uint64
	timedOut        [numClosedReasons]uint64
}

type backendState struct {
	addr    string
	current atomic.Int64
	adm     admin // run-time drain/disable/weight (admin.go)
	// under Proxy.mu:
	c counters
}

// New validates cfg and returns a Proxy; it does not bind yet.
func New(cfg Config, opts Options) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Proxy{
		log:      opts.Logger,
		health:   opts.Health,
		ready:    make(chan struct{}),
		backends: map[string]*backendState{},
		sessions: map[uint64]*session{},
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.bufs.New = func() any { b := make([]byte, bufSize); return &b }
	p.capLog.every = time.Second
	p.dialLog.every = time.Second
	p.sourceLog.every = sourceLogEvery
	for i := range p.timeoutLog {
		p.timeoutLog[i].every = sourceLogEvery
	}
	p.apply(cfg)
	return p, nil
}

func (p *Proxy) apply(cfg Config) {
	cfg.Backends = slices.Clone(cfg.Backends)
	rc := &runtimeConfig{cfg: cfg}
	p.mu.Lock()
	for _, a := range cfg.Backends {
		b := p.backends[a]
		if b == nil {
			b = &backendState{addr: a}
			b.adm.weight.Store(DefaultWeight)
			p.backends[a] = b
		}
		rc.backends = append(rc.backends, b)
	}
	for a, b := range p.backends {
		if !slices.Contains(cfg.Backends, a) {
			b.adm.resetLocked() // a backend the file no longer lists loses its run-time state
		}
	}
	p.mu.Unlock()
	p.cfg.Store(rc)
}

// Config returns the current configuration.
func (p *Proxy) Config() Config {
	c := p.cfg.Load().cfg
	c.Backends = slices.Clone(c.Backends)
	return c
}

// Ready is closed once the listener is bound (systemd READY=1).
func (p *Proxy) Ready() <-chan struct{} { return p.ready }

// Addr returns the bound listen address, nil before Run bound it.
func (p *Proxy) Addr() net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return nil
	}
	return p.ln.Addr()
}

// Update applies a reloaded configuration to new connections (see the
// package doc). Listen and Freebind cannot change. On error nothing changes.
func (p *Proxy) Update(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	old := p.cfg.Load().cfg
	if cfg.Listen != old.Listen {
		return fmt.Errorf("proxy.listen: cannot change from %q to %q on reload; restart vipd", old.Listen, cfg.Listen)
	}
	if cfg.freebind() != old.freebind() {
		return fmt.Errorf("proxy.freebind: cannot change on reload; restart vipd")
	}
	if limit, need := ensureFileLimit(cfg.MaxConns); limit < need {
		p.log.Warn("proxy: file descriptor limit too low for proxy.max_conns; raise LimitNOFILE", "limit", limit, "need", need, "max_conns", cfg.MaxConns)
	}
	p.apply(cfg)
	var removed []string
	for _, a := range old.Backends {
		if !slices.Contains(cfg.Backends, a) {
			removed = append(removed, a)
		}
	}
	p.log.Info("proxy: configuration reloaded", "backends", cfg.Backends, "balance", cfg.Balance, "removed", removed)
	if len(removed) > 0 && cfg.RemovedBackendGrace > 0 {
		time.AfterFunc(cfg.RemovedBackendGrace, p.closeRemoved)
	}
	p.evaluate()
	return nil
}

// closeRemoved closes sessions whose backend is no longer configured.
func (p *Proxy) closeRemoved() {
	cur := p.cfg.Load().cfg.Backends
	p.mu.Lock()
	var victims []*session
	for _, s := range p.sessions {
		if !slices.Contains(cur, s.be.addr) {
			victims = append(victims, s)
		}
	}
	p.mu.Unlock()
	if len(victims) > 0 {
		p.log.Info("proxy: closing connections to removed backends after grace", "connections", len(victims))
	}
	for _, s := range victims {
		s.abort()
	}
}

// Run binds the listener and serves until ctx is cancelled, then drains
// (see the package doc). It returns an error if the listener cannot be
// bound or Run is already running.
func (p *Proxy) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return errors.New("proxy: already running")
	}
	p.running = true
	p.stopping = false
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.running = false
		p.mu.Unlock()
	}()

	cfg := p.cfg.Load().cfg
	if limit, need := ensureFileLimit(cfg.MaxConns); limit < need {
		p.log.Warn("proxy: file descriptor limit too low for proxy.max_conns (each connection needs 2 sockets, and 4 more per direction while a large transfer moves); raise LimitNOFILE",
			"limit", limit, "need", need, "max_conns", cfg.MaxConns)
	}
	lc := net.ListenConfig{KeepAliveConfig: keepAliveConfig(cfg.KeepAlive)}
	if cfg.KeepAlive < 0 {
		lc.KeepAlive = -1
	}
	if cfg.freebind() {
		lc.Control = freebindControl
	}
	l, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		err = fmt.Errorf("proxy.listen %s: %w", cfg.Listen, err)
		p.mu.Lock()
		p.listenErr = err
		p.mu.Unlock()
		p.evaluate()
		return err
	}
	ln := l.(*net.TCPListener)
	// One event loop per P: established connections wait there (see loop).
	loops := make([]*loop, runtime.GOMAXPROCS(0))
	var loopWG sync.WaitGroup
	for i := range loops {
		if loops[i], err = newLoop(p.log); err != nil {
			for _, x := range loops[:i] {
				x.close()
			}
			_ = ln.Close()
			p.mu.Lock()
			p.listenErr = err
			p.mu.Unlock()
			p.evaluate()
			return err
		}
		loopWG.Add(1)
		go func() { defer loopWG.Done(); loops[i].run() }()
	}
	defer func() {
		for _, x := range loops {
			x.close()
		}
		loopWG.Wait()
	}()
	p.mu.Lock()
	p.ln = ln
	p.listenErr = nil
	p.mu.Unlock()
	p.readyOnce.Do(func() { close(p.ready) })
	p.log.Info("proxy: listening", "addr", ln.Addr().String(), "freebind", cfg.freebind(), "backends", cfg.Backends)

	if hs, ok := p.health.(healthSubscriber); ok {
		unsub := hs.Subscribe(func(health.Event) { p.evaluate() })
		defer unsub()
	}
	p.evaluate()

	// forceCtx aborts dials in progress when the drain grace is over.
	forceCtx, force := context.WithCancel(context.Background())
	defer force()
	p.forceCtx = forceCtx // set before any session starts, read by replays

	bg := make(chan struct{})
	var bgWG sync.WaitGroup
	bgWG.Add(1)
	go func() { defer bgWG.Done(); p.background(bg) }()

	stopAccept := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.stopping = true
		p.mu.Unlock()
		_ = ln.Close()
		p.evaluate()
	})
	defer stopAccept()

	delay := time.Duration(0)
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				break
			}
			// EMFILE and friends: back off like net/http and go on.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			p.log.Error("proxy: accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
			}
			continue
		}
		delay = 0
		rc := p.cfg.Load()
		if max := rc.cfg.MaxConns; max > 0 && p.active.Load() >= int64(max) {
			_ = c.Close()
			p.mu.Lock()
			p.fe.refusedByCap++
			n := p.fe.refusedByCap
			p.mu.Unlock()
			if sup, ok := p.capLog.allow(); ok {
				p.log.Warn("proxy: connection cap reached, refusing new connections", "max_conns", max, "refused_total", n, "suppressed", sup)
			}
			continue
		}
		ap, ok := p.admitSource(c, rc)
		if !ok {
			continue
		}
		p.active.Add(1)
		p.wg.Add(1)
		p.handle(forceCtx, c, ap, rc, loops)
	}
	_ = ln.Close()

	// Drain.
	p.mu.Lock()
	p.stopping = true
	n := len(p.sessions)
	p.mu.Unlock()
	p.evaluate()
	p.log.Info("proxy: stopped accepting, draining", "connections", p.active.Load(), "established", n, "grace", cfg.DrainGrace)
	drained := make(chan struct{})
	go func() { p.wg.Wait(); close(drained) }()
	grace := p.cfg.Load().cfg.DrainGrace
	t := time.NewTimer(grace)
	select {
	case <-drained:
		t.Stop()
	case <-t.C:
		p.log.Info("proxy: drain grace over, closing connections", "connections", p.active.Load())
		force()
		p.mu.Lock()
		victims := make([]*session, 0, len(p.sessions))
		for _, s := range p.sessions {
			victims = append(victims, s)
		}
		p.mu.Unlock()
		for _, s := range victims {
			s.abort()
		}
		<-drained
	}
	close(bg)
	bgWG.Wait()
	p.mu.Lock()
	p.ln = nil
	p.mu.Unlock()
	return nil
}

// candidates returns the dial order: UP backends first (rotated for
// round-robin, sorted by current sessions for leastconn, by weight when
// weights differ), then the others. A backend drained, disabled or at
// weight 0 is never a candidate.
func (p *Proxy) candidates(rc *runtimeConfig) []*backendState {
	n := len(rc.backends)
	up := make([]*backendState, 0, n)
	var down []*backendState
	for _, b := range rc.backends {
		if !b.adm.accepting() {
			continue
		}
		if p.health == nil || p.health.IsUp(b.addr) {
			up = append(up, b)
		} else {
			down = append(down, b)
		}
	}
	rot := p.rr.Add(1) - 1
	rotate := func(l []*backendState) {
		if len(l) > 1 {
			k := int(rot % uint64(len(l)))
			slices.Reverse(l[:k])
			slices.Reverse(l[k:])
			slices.Reverse(l)
		}
	}
	rotate(up)
	rotate(down)
	p.weighted(up, rc.cfg.Balance == LeastConn)
	if rc.cfg.Balance == LeastConn {
		cur := make(map[*backendState]int64, len(up))
		for _, b := range up {
			cur[b] = b.current.Load()
		}
		sort.SliceStable(up, func(i, j int) bool {
			return lessLoaded(cur[up[i]], int64(up[i].adm.weight.Load()), cur[up[j]], int64(up[j].adm.weight.Load()))
		})
	}
	return append(up, down...)
}

// handle starts proxying the accepted client c (on the accept loop): a
// nonblocking connect to the first candidate backend, completed in an event
// loop (connect.go); backends given by host name are dialed by a goroutine
// (handleDial). The session then ends on its own (session.end calls
// sessionEnded, which releases p.wg, p.active and the client's source
// count). ap is the client's address.
func (p *Proxy) handle(forceCtx context.Context, c *net.TCPConn, ap netip.AddrPort, rc *runtimeConfig, loops []*loop) {
	order := p.candidates(rc)
	cands := order[:min(1+rc.cfg.Retries, len(order))]
	if len(cands) == 0 || !backendAddrs(cands) {
		go p.handleDial(forceCtx, c, ap, rc, cands, loops)
		return
	}
	s := &session{p: p, since: time.Now(), cfg: rc, firstOK: true, clientAP: ap}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		s.localAP = a.AddrPort()
	}
	cfd, err := takeFD(c)
	if err != nil {
		p.log.Warn("proxy: cannot take over a connection's socket", "client", s.clientAP.String(), "err", err)
		p.mu.Lock()
		p.fe.total++
		p.fe.connErrors++
		p.mu.Unlock()
		p.connEnded(ap)
		return
	}
	p.startConnect(forceCtx, s, cfd, cands, loops)
}

// handleDial dials cands with net.Dialer (host names) and hands the
// established session to an event loop.
func (p *Proxy) handleDial(forceCtx context.Context, c *net.TCPConn, ap netip.AddrPort, rc *runtimeConfig, cands []*backendState, loops []*loop) {
	cfg := rc.cfg
	server, be, rest := p.dial(forceCtx, cfg, cands)
	if server == nil {
		p.mu.Lock()
		p.fe.total++
		p.fe.connErrors++
		p.mu.Unlock()
		_ = c.SetLinger(0)
		_ = c.Close()
		p.connEnded(ap)
		return
	}

	s := &session{p: p, be: be, since: time.Now(), cfg: rc, rest: rest, firstOK: true, clientAP: ap}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		s.localAP = a.AddrPort()
	}
	// The sockets leave Go's net package (see session).
	cfd, err1 := takeFD(c)
	sfd, err2 := takeFD(server)
	if err := errors.Join(err1, err2); err != nil {
		for _, fd := range []int{cfd, sfd} {
			if fd >= 0 {
				_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
				_ = unix.Close(fd)
			}
		}
		p.log.Warn("proxy: cannot take over a connection's sockets", "client", s.clientAP.String(), "err", err)
		p.mu.Lock()
		p.fe.total++
		p.fe.connErrors++
		p.mu.Unlock()
		p.connEnded(ap)
		return
	}
	s.fd = [2]int{cfd, sfd}
	s.clientRC, s.serverRC = &fdConn{s, 0}, &fdConn{s, 1}
	s.lastActive.Store(s.since.UnixNano())
	be.current.Add(1)
	p.mu.Lock()
	p.nextID++
	s.id = p.nextID
	p.sessions[s.id] = s
	p.fe.total++
	be.c.total++
	p.mu.Unlock()
	s.l = loops[s.id%uint64(len(loops))]
	if err := s.l.add(s); err != nil {
		p.log.Warn("proxy: cannot register a connection with the event loop", "client", s.clientAP.String(), "err", err)
		s.abort()
		s.l.remove(s) // in case abort ended the session before add
		return
	}
	if forceCtx.Err() != nil { // drain grace ended while we dialed
		s.abort()
	}
}

// dial tries cands in order and returns the first connection, its backend
// and the candidates not tried. Each failed dial is counted, reported to
// Health (a passive check) and logged; a local resource error ends the
// attempts (another backend would fail the same way).
func (p *Proxy) dial(ctx context.Context, cfg Config, cands []*backendState) (*net.TCPConn, *backendState, []*backendState) {
	d := net.Dialer{Timeout: cfg.ConnectTimeout, KeepAliveConfig: keepAliveConfig(cfg.KeepAlive)}
	if cfg.KeepAlive < 0 {
		d.KeepAlive = -1
	}
	for i, b := range cands {
		conn, err := d.DialContext(ctx, "tcp", b.addr)
		if err == nil {
			return conn.(*net.TCPConn), b, cands[i+1:]
		}
		if ctx.Err() != nil {
			break
		}
		if localResourceError(err) {
			// Out of file descriptors or memory here: not the backend's
			// fault, and another backend would fail the same way.
			if sup, ok := p.dialLog.allow(); ok {
				p.log.Error("proxy: cannot open a backend connection: local resources exhausted", "backend", b.addr, "err", err, "suppressed", sup)
			}
			break
		}
		retry := i+1 < len(cands)
		p.mu.Lock()
		b.c.connErrors++
		if retry {
			b.c.retries++
			p.fe.retries++
		}
		p.mu.Unlock()
		if p.health != nil {
			p.health.ReportFailure(b.addr, err)
		}
		if sup, ok := p.dialLog.allow(); ok {
			p.log.Warn("proxy: backend dial failed", "backend", b.addr, "err", err, "retry", retry, "suppressed", sup)
		}
	}
	return nil, nil, nil
}

// sessionEnded accounts for a session whose both directions are done.
func (p *Proxy) sessionEnded(s *session) {
	s.l.remove(s)
	s.be.current.Add(-1)
	p.mu.Lock()
	delete(p.sessions, s.id)
	in, out := s.bytesIn.Load(), s.bytesOut.Load()
	p.fe.bytesIn += in
	p.fe.bytesOut += out
	s.be.c.bytesIn += in
	s.be.c.bytesOut += out
	p.mu.Unlock()
	p.connEnded(s.clientAP)
}

// connEnded releases what an accepted connection held (the accept loop
// took them): its source count, p.active and p.wg.
func (p *Proxy) connEnded(client netip.AddrPort) {
	p.sources.release(sourceOf(client))
	p.active.Add(-1)
	p.wg.Done()
}

// background runs the timeout sweeper (guard.go) and the serving poll
// until stop closes.
func (p *Proxy) background(stop <-chan struct{}) {
	const poll = time.Second
	nextPoll := time.Now().Add(poll)
	for {
		t := time.NewTimer(sweepEvery(p.cfg.Load().cfg))
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		p.sweep(p.cfg.Load().cfg)
		if now := time.Now(); now.After(nextPoll) {
			nextPoll = now.Add(poll)
			p.evaluate()
		}
	}
}

// rateLog allows one log line per period and counts the suppressed ones.
type rateLog struct {
	mu         sync.Mutex
	every      time.Duration
	last       time.Time
	suppressed int
}

func (r *rateLog) allow() (suppressed int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < r.every {
		r.suppressed++
		return 0, false
	}
	r.last = now
	s := r.suppressed
	r.suppressed = 0
	return s, true
}
