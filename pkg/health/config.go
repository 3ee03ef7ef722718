package health

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vipd-project/vipd/pkg/hostport"
)

// Check types.
const (
	TypeTCP   = "tcp"
	TypeHTTPS = "https"
)

// Config is the health-check configuration shared by all backends. Field
// comments give the YAML name used in error messages (prefix "health.").
// The defaults live in pkg/config (deploy/vipd.yaml shows them); the caller sets every field
// and Validate judges it.
type Config struct {
	// Type is "tcp" (connect only) or "https" (GET Path). health.type
	Type string
	// Interval between checks of a backend that is steadily UP. health.interval
	Interval time.Duration
	// FastInterval between checks while a backend is DOWN or in transition.
	// health.fast_interval
	FastInterval time.Duration
	// Timeout of one check (connect + TLS + HTTP response). health.timeout
	Timeout time.Duration
	// Rise consecutive successes take a DOWN backend UP. health.rise
	Rise int
	// Fall consecutive failures take an UP backend DOWN. health.fall
	Fall int
	// Jitter is a fraction in [0, 0.5]: each delay is scaled by a random
	// factor in [1-Jitter, 1+Jitter]. health.jitter
	Jitter float64
	// Port overrides the backend's port for the check (0: the backend's
	// port). health.port
	Port int

	// HTTPS check only.

	// Path requested, default /readyz. health.path
	Path string
	// ExpectStatus is the status code meaning UP, default 200.
	// health.expect_status
	ExpectStatus int
	// CAFile verifies the backend's certificate (PEM). health.tls.ca_file
	CAFile string
	// InsecureSkipVerify skips certificate verification (kube-apiserver's
	// self-signed serving certificate). health.tls.insecure_skip_verify
	InsecureSkipVerify bool
	// ServerName for SNI and verification (default: the backend's host).
	// health.tls.server_name
	ServerName string
	// CertFile and KeyFile: client certificate (PEM). health.tls.cert_file,
	// health.tls.key_file
	CertFile string
	KeyFile  string
	// BearerTokenFile is read at every check (tokens rotate); its content
	// is sent as "Authorization: Bearer ..." and never logged.
	// health.bearer_token_file
	BearerTokenFile string
	// AuthErrorsAreUp counts 401 and 403 answers as UP (the apiserver is
	// alive and answering; anonymous auth is off). health.auth_errors_are_up
	AuthErrorsAreUp bool
}

// Bounds of the check intervals and timeout.
const (
	MinInterval = 10 * time.Millisecond
	MaxInterval = time.Hour
)

// Validate reports every invalid field, naming it as in the YAML file.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("health.%s: %s", field, fmt.Sprintf(format, a...)))
	}
	switch c.Type {
	case TypeTCP, TypeHTTPS:
	default:
		bad("type", "%q is not one of tcp, https", c.Type)
	}
	// Floors keep a typo from becoming a tight loop of checks against the apiservers;
	// ceilings keep a DOWN backend from staying unnoticed for hours.
	if c.Interval < MinInterval || c.Interval > MaxInterval {
		bad("interval", "must be %s-%s, got %s", MinInterval, MaxInterval, c.Interval)
	}
	if c.FastInterval < MinInterval || c.FastInterval > MaxInterval {
		bad("fast_interval", "must be %s-%s, got %s", MinInterval, MaxInterval, c.FastInterval)
	}
	if c.Timeout < MinInterval || c.Timeout > time.Minute {
		bad("timeout", "must be %s-1m, got %s", MinInterval, c.Timeout)
	}
	if c.Rise < 1 || c.Rise > 100 {
		bad("rise", "must be 1-100, got %d", c.Rise)
	}
	if c.Fall < 1 || c.Fall > 100 {
		bad("fall", "must be 1-100, got %d", c.Fall)
	}
	if c.Jitter < 0 || c.Jitter > 0.5 || c.Jitter != c.Jitter {
		bad("jitter", "must be in [0, 0.5], got %v", c.Jitter)
	}
	if c.Port < 0 || c.Port > 65535 {
		bad("port", "%d out of range 0-65535", c.Port)
	}
	if c.Type == TypeHTTPS {
		if !strings.HasPrefix(c.Path, "/") {
			bad("path", "%q must start with \"/\"", c.Path)
		} else if strings.ContainsAny(c.Path, " \t\r\n#") {
			bad("path", "%q holds a space, a line break or #", c.Path)
		}
		if c.ExpectStatus < 100 || c.ExpectStatus > 599 {
			bad("expect_status", "%d is not an HTTP status code", c.ExpectStatus)
		}
		if (c.CertFile == "") != (c.KeyFile == "") {
			bad("tls.cert_file", "cert_file and key_file must be set together")
		}
		if c.CAFile != "" && c.InsecureSkipVerify {
			bad("tls.insecure_skip_verify", "set together with ca_file; choose one")
		}
	}
	return errors.Join(errs...)
}

// ValidateBackends checks a backend list ("host:port", no duplicates) and
// names entries as field[i], e.g. "proxy.backends[1]".
func ValidateBackends(field string, backends []string) error {
	var errs []error
	seen := map[string]int{}
	for i, b := range backends {
		if _, _, err := hostport.Dial(b); err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", field, i, err))
			continue
		}
		if j, ok := seen[b]; ok {
			errs = append(errs, fmt.Errorf("%s[%d]: duplicate backend %q (same as %s[%d])", field, i, b, field, j))
			continue
		}
		seen[b] = i
	}
	return errors.Join(errs...)
}
