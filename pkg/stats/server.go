package stats

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vipd-project/vipd/pkg/hostport"
)

// Defaults for Config.
const (
	DefaultListen  = ":8404"
	DefaultRefresh = 5 * time.Second
)

// Config configures the stats server (the stats: section of vipd.yaml).
type Config struct {
	// Listen is the address for /stats, /stats.json, /metrics and /healthz
	// (stats.listen). Default ":8404".
	Listen string
	// Refresh is the HTML page's auto-refresh period (stats.refresh).
	// Default 5s.
	Refresh time.Duration
	// BasicAuth, when not nil, protects /stats and /stats.json (not
	// /metrics or /healthz). The caller reads the password from
	// stats.basic_auth.password_file.
	BasicAuth *BasicAuth
	// Healthz reports whether the daemon's main loops are alive: nil error
	// is 200 "ok", an error is 503 with the error's text. Nil means always
	// healthy.
	Healthz func() error
	// ShutdownTimeout bounds the graceful shutdown in Run. Default 5s.
	ShutdownTimeout time.Duration
}

// BasicAuth is a username and password, compared in constant time.
type BasicAuth struct {
	Username string
	Password string
}

// Validate reports every invalid field, naming it as in the YAML file.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := hostport.Listen(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("stats.listen: %w", err))
	}
	// The page reloads itself this often: below 1 s it is a load on the daemon, above an hour
	// it is a stale page.
	if c.Refresh < time.Second || c.Refresh > time.Hour {
		errs = append(errs, fmt.Errorf("stats.refresh: must be 1s-1h, got %s", c.Refresh))
	}
	if ba := c.BasicAuth; ba != nil {
		if ba.Username == "" {
			errs = append(errs, errors.New("stats.basic_auth.username: empty"))
		}
		if ba.Password == "" {
			errs = append(errs, errors.New("stats.basic_auth.password_file: empty password"))
		}
	}
	return errors.Join(errs...)
}

// Server serves the stats endpoints. Create it with New, start it with Run.
type Server struct {
	cfg     Config
	src     Source
	log     *slog.Logger
	handler http.Handler
	reg     *prometheus.Registry

	authMu     sync.Mutex // guards the rate limit of the basic-auth failure log
	authFails  int        // failures since the last log line
	authLogged time.Time  // when the last one was written

	ready     chan struct{}
	readyOnce sync.Once
	mu        sync.Mutex
	addr      net.Addr
}

// New checks cfg, fills its defaults and builds the handlers. It does not
// bind: Run does.
func New(cfg Config, src Source, log *slog.Logger) (*Server, error) {
	if src == nil {
		return nil, errors.New("stats: nil Source")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = DefaultRefresh
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	s := &Server{cfg: cfg, src: src, log: log, ready: make(chan struct{})}

	s.reg = prometheus.NewRegistry()
	s.reg.MustRegister(
		newCollector(src, log),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	s.handler = s.routes()
	return s, nil
}

// Handler returns the HTTP handler with every endpoint (for tests, or to
// mount elsewhere).
func (s *Server) Handler() http.Handler { return s.handler }

// Registry returns the server's own Prometheus registry (not the global one).
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Ready is closed once Run has bound the listener.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the bound address once Ready is closed, else nil.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run binds Config.Listen and serves until ctx is done, then shuts down
// gracefully (in-flight requests get Config.ShutdownTimeout). It returns nil
// after a shutdown asked by ctx, or the error that stopped it; a bind error
// reads like "stats.listen :8404: address already in use".
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		var se *os.SyscallError
		if errors.As(err, &se) {
			err = se.Err
		}
		return fmt.Errorf("stats.listen %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller bound (for example one handed over by
// systemd). It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	s.mu.Lock()
	s.addr = ln.Addr()
	s.mu.Unlock()
	s.readyOnce.Do(func() { close(s.ready) })
	s.log.Info("stats server listening", "addr", ln.Addr().String(),
		"basic_auth", s.cfg.BasicAuth != nil)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("stats server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		<-errc
		return fmt.Errorf("stats server shutdown: %w", err)
	}
	<-errc // http.ErrServerClosed
	s.log.Info("stats server stopped")
	return nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/stats", s.auth(http.HandlerFunc(s.serveStats)))
	mux.Handle("/stats.json", s.auth(http.HandlerFunc(s.serveJSON)))
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		ErrorLog:          slogPromLogger{s.log},
		Registry:          s.reg,
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("/healthz", s.serveHealthz)
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/stats", http.StatusFound)
	})
	return methods(mux)
}

// methods allows only GET and HEAD.
func methods(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) auth(h http.Handler) http.Handler {
	ba := s.cfg.BasicAuth
	if ba == nil {
		return h
	}
	wantUser := sha256.Sum256([]byte(ba.Username))
	wantPass := sha256.Sum256([]byte(ba.Password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		gotUser := sha256.Sum256([]byte(user))
		gotPass := sha256.Sum256([]byte(pass))
		// Both compared always, so timing does not tell which one was wrong.
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if !ok || userOK&passOK != 1 {
			if ok {
				s.authFailed(r.RemoteAddr)
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="vipd stats", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// authLogEvery is the least time between two "basic auth failed" log lines: a client guessing
// passwords must not flood the journal. The line counts the failures in between.
const authLogEvery = 10 * time.Second

// authFailed logs a failed basic auth, at most once per authLogEvery, with the number of
// failures since the last line and the last client's address (never what it sent).
func (s *Server) authFailed(remote string) {
	s.authMu.Lock()
	s.authFails++
	now := time.Now()
	if !s.authLogged.IsZero() && now.Sub(s.authLogged) < authLogEvery {
		s.authMu.Unlock()
		return
	}
	n := s.authFails
	s.authFails, s.authLogged = 0, now
	s.authMu.Unlock()
	s.log.Warn("stats: basic auth failed", "remote", remote, "failures", n, "log_interval", authLogEvery.String())
}

func (s *Server) snapshot() Snapshot {
	snap := s.src.Snapshot()
	if snap.Time.IsZero() {
		snap.Time = time.Now()
	}
	return snap
}

func (s *Server) serveJSON(w http.ResponseWriter, r *http.Request) {
	b, err := json.MarshalIndent(s.snapshot(), "", "  ")
	if err != nil {
		s.log.Error("stats: encode JSON", "err", err)
		http.Error(w, "encode stats: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	b = append(b, '\n')
	_, _ = w.Write(b)
}

func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("format") == "json" {
		s.serveJSON(w, r)
		return
	}
	snap := s.snapshot()
	page := buildPage(snap, s.cfg.Refresh)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if err := renderPage(w, page); err != nil {
		s.log.Error("stats: render page", "err", err)
	}
}

func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.cfg.Healthz != nil {
		if err := s.cfg.Healthz(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "unhealthy: %v\n", err)
			return
		}
	}
	fmt.Fprintln(w, "ok")
}

// slogPromLogger adapts slog to promhttp's error logger.
type slogPromLogger struct{ log *slog.Logger }

func (l slogPromLogger) Println(v ...any) { l.log.Warn("metrics: " + fmt.Sprint(v...)) }
