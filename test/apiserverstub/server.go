package apiserverstub

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Options configure the stand-in's handler.
type Options struct {
	// Host names this master in /version and in watch events (e.g. "m1").
	Host string
	// WatchInterval is the time between two watch events (default 200 ms).
	WatchInterval time.Duration
	// Ready, when set, decides what /readyz answers (false: 500 "not ready"); /healthz and
	// /livez always answer ok.
	Ready func() bool
	// Logger gets one line per watch opened and closed; default discards.
	Logger *slog.Logger
}

// Version is what /version answers (the fields kubectl reads, plus Host).
type Version struct {
	Major      string `json:"major"`
	Minor      string `json:"minor"`
	GitVersion string `json:"gitVersion"`
	Platform   string `json:"platform"`
	// Host is the master that answered.
	Host string `json:"host"`
}

// Event is one line of the watch stream.
type Event struct {
	Type   string    `json:"type"`
	Object EventObj  `json:"object"`
	Host   string    `json:"host"`
	Seq    int64     `json:"seq"`
	Time   time.Time `json:"time"`
}

// EventObj is the object of an Event (a minimal Pod).
type EventObj struct {
	Kind     string            `json:"kind"`
	Metadata map[string]string `json:"metadata"`
}

// Handler returns the stand-in's HTTP handler.
func Handler(o Options) http.Handler {
	if o.WatchInterval <= 0 {
		o.WatchInterval = 200 * time.Millisecond
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var watches atomic.Int64
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok"))
	}
	mux.HandleFunc("/healthz", ok)
	mux.HandleFunc("/livez", ok)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if o.Ready != nil && !o.Ready() {
			http.Error(w, "not ready", http.StatusInternalServerError)
			return
		}
		ok(w, r)
	})
	mux.HandleFunc("/version", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Version{Major: "1", Minor: "30", GitVersion: "v1.30.0-standin",
			Platform: "linux/amd64", Host: o.Host})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query().Get("watch")
		if q != "1" && q != "true" {
			if r.URL.Path == "/" {
				w.Header().Set("Content-Type", "application/json")
				_, _ = fmt.Fprintf(w, "{\"paths\":[\"/healthz\",\"/livez\",\"/readyz\",\"/version\",\"/api/v1/namespaces/default/pods?watch=1\"],\"host\":%q}\n", o.Host)
				return
			}
			http.NotFound(w, r)
			return
		}
		fl, canFlush := w.(http.Flusher)
		if !canFlush {
			http.Error(w, "streaming unsupported", http.StatusInternalServerError)
			return
		}
		n := watches.Add(1)
		defer watches.Add(-1)
		log.Info("watch opened", "from", r.RemoteAddr, "path", r.URL.Path, "open", n)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Transfer-Encoding", "chunked")
		w.WriteHeader(http.StatusOK)
		t := time.NewTicker(o.WatchInterval)
		defer t.Stop()
		enc := json.NewEncoder(w)
		for seq := int64(1); ; seq++ {
			ev := Event{Type: "MODIFIED", Host: o.Host, Seq: seq, Time: time.Now(),
				Object: EventObj{Kind: "Pod", Metadata: map[string]string{"name": fmt.Sprintf("standin-%d", seq%10), "namespace": "default"}}}
			if seq == 1 {
				ev.Type = "ADDED"
			}
			if err := enc.Encode(ev); err != nil {
				log.Info("watch closed", "from", r.RemoteAddr, "events", seq-1, "err", err)
				return
			}
			fl.Flush()
			select {
			case <-r.Context().Done():
				log.Info("watch closed", "from", r.RemoteAddr, "events", seq)
				return
			case <-t.C:
			}
		}
	})
	return mux
}

// Serve answers HTTPS on ln with Handler(o) and tlsConf until ctx ends, then closes the
// listener and every connection (watches included) and returns nil.
func Serve(ctx context.Context, ln net.Listener, tlsConf *tls.Config, o Options) error {
	srv := &http.Server{
		Handler:           Handler(o),
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		// Connections that never finish a handshake (port scans, idle-connection benchmarks)
		// must not fill the log.
		ErrorLog: discardLog(),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, tlsConf)) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
		_ = srv.Close()
		<-errc
		return nil
	}
}
