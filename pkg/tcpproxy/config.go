package tcpproxy

import (
	"errors"
	"fmt"
	"time"

	"github.com/vipd-project/vipd/pkg/health"
	"github.com/vipd-project/vipd/pkg/hostport"
)

// Balance algorithms.
const (
	RoundRobin = "roundrobin"
	LeastConn  = "leastconn"
)

// Config of the proxy. Field comments give the YAML name used in errors
// (prefix "proxy."). The defaults live in pkg/config (deploy/vipd.yaml shows them); every
// field is set by the caller and judged by Validate.
type Config struct {
	// Listen is "host:port"; host empty (all addresses) or an IP (the VIP).
	// proxy.listen
	Listen string
	// Freebind sets IP_FREEBIND so the VIP can be bound before it is local.
	// It is implied when Listen names a specific address. proxy.freebind
	Freebind bool
	// Backends "host:port". proxy.backends
	Backends []string
	// Balance is "roundrobin" or "leastconn". proxy.balance
	Balance string
	// ConnectTimeout bounds one backend dial. proxy.connect_timeout
	ConnectTimeout time.Duration
	// Retries is how many other backends are tried after a failed dial.
	// proxy.retries
	Retries int
	// MaxConns caps concurrent client connections (0: no cap).
	// proxy.max_conns
	MaxConns int
	// IdleTimeout closes connections with no byte moving in either
	// direction for that long (0: never, the default). proxy.idle_timeout
	IdleTimeout time.Duration
	// FirstByteTimeout closes a connection whose client has sent no byte
	// this long after the backend was dialed (0: never). A TLS client
	// speaks first (ClientHello); a silent one only holds a slot.
	// proxy.first_byte_timeout
	FirstByteTimeout time.Duration
	// HalfClosedTimeout closes a session when one side has closed its half
	// (FIN) and nothing has moved for this long since (0: never); HAProxy's
	// timeout client-fin / server-fin. proxy.half_closed_timeout
	HalfClosedTimeout time.Duration
	// MaxConnsPerSource caps concurrent connections from one client IP
	// address (0: no cap); above it a new connection is reset at once.
	// proxy.max_conns_per_source
	MaxConnsPerSource int
	// KeepAlive is the TCP keepalive idle time on both sides (probes every
	// KeepAlive/3, 3 probes: a dead peer is dropped after about
	// 2 x KeepAlive of silence), 1s-2h; negative disables.
	// proxy.keepalive
	KeepAlive time.Duration
	// DrainGrace is how long open connections may continue after shutdown
	// starts. proxy.drain_grace
	DrainGrace time.Duration
	// RemovedBackendGrace: after a reload removes a backend, its open
	// connections are closed after this grace (0: left alone until they
	// end). proxy.removed_backend_grace
	RemovedBackendGrace time.Duration
	// MinHealthy is the number of UP backends needed to serve (for the VRRP
	// tracker). proxy.min_healthy_backends
	MinHealthy int
}

// Validate reports every invalid field, naming it as in the YAML file.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("proxy.%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if _, _, err := hostport.Listen(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if len(c.Backends) == 0 {
		bad("backends", "at least one backend is required")
	}
	if err := health.ValidateBackends("proxy.backends", c.Backends); err != nil {
		errs = append(errs, err)
	}
	switch c.Balance {
	case RoundRobin, LeastConn:
	default:
		bad("balance", "%q is not one of roundrobin, leastconn", c.Balance)
	}
	// Floors and ceilings: a typo must not become a tight loop or a setting that never fires.
	if c.ConnectTimeout < 10*time.Millisecond || c.ConnectTimeout > 5*time.Minute {
		bad("connect_timeout", "must be 10ms-5m, got %s", c.ConnectTimeout)
	}
	if c.Retries < 0 || c.Retries > 10 {
		bad("retries", "must be 0-10, got %d", c.Retries)
	}
	if c.MaxConns < 0 || c.MaxConns > 1000000 {
		bad("max_conns", "must be 0-1000000 (0: no cap), got %d", c.MaxConns)
	}
	if c.IdleTimeout < 0 || (c.IdleTimeout > 0 && c.IdleTimeout < 100*time.Millisecond) || c.IdleTimeout > 24*time.Hour {
		bad("idle_timeout", "must be 0 (none) or 100ms-24h, got %s", c.IdleTimeout)
	}
	if c.FirstByteTimeout < 0 || (c.FirstByteTimeout > 0 && c.FirstByteTimeout < time.Second) || c.FirstByteTimeout > time.Hour {
		bad("first_byte_timeout", "must be 0 (never) or 1s-1h, got %s", c.FirstByteTimeout)
	}
	if c.HalfClosedTimeout < 0 || (c.HalfClosedTimeout > 0 && c.HalfClosedTimeout < time.Second) || c.HalfClosedTimeout > 24*time.Hour {
		bad("half_closed_timeout", "must be 0 (never) or 1s-24h, got %s", c.HalfClosedTimeout)
	}
	if c.MaxConnsPerSource < 0 || c.MaxConnsPerSource > 1000000 {
		bad("max_conns_per_source", "must be 0-1000000 (0: no cap), got %d", c.MaxConnsPerSource)
	}
	if c.KeepAlive == 0 || (c.KeepAlive > 0 && c.KeepAlive < time.Second) || c.KeepAlive > 2*time.Hour {
		bad("keepalive", "must be 1s-2h (or negative to disable), got %s", c.KeepAlive)
	}
	if c.DrainGrace < 0 || c.DrainGrace > 10*time.Minute {
		bad("drain_grace", "must be 0-10m, got %s", c.DrainGrace)
	}
	if c.RemovedBackendGrace < 0 || c.RemovedBackendGrace > 24*time.Hour {
		bad("removed_backend_grace", "must be 0-24h (0: left alone), got %s", c.RemovedBackendGrace)
	}
	if c.MinHealthy < 0 {
		bad("min_healthy_backends", "must be >= 0, got %d", c.MinHealthy)
	} else if len(c.Backends) > 0 && c.MinHealthy > len(c.Backends) {
		bad("min_healthy_backends", "%d is more than the %d backends", c.MinHealthy, len(c.Backends))
	}
	return errors.Join(errs...)
}

// freebind reports whether IP_FREEBIND is used for c.Listen.
func (c Config) freebind() bool {
	if c.Freebind {
		return true
	}
	a, _, err := hostport.Listen(c.Listen)
	return err == nil && a.IsValid() && !a.IsUnspecified()
}
