package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/vipd-project/vipd/pkg/secretfile"
)

// Checker runs one active check of a backend. A nil error means UP. The
// context carries the check timeout.
type Checker interface {
	Check(ctx context.Context, addr string) error
}

// CheckerFunc adapts a function to Checker.
type CheckerFunc func(ctx context.Context, addr string) error

// Check calls f.
func (f CheckerFunc) Check(ctx context.Context, addr string) error { return f(ctx, addr) }

// NewChecker builds the checker described by cfg, loading the CA and client
// certificate files now (so a reload with a bad file fails up front).
func NewChecker(cfg Config) (Checker, error) {
	switch cfg.Type {
	case TypeTCP:
		return &tcpChecker{port: cfg.Port}, nil
	case TypeHTTPS:
		return newHTTPSChecker(cfg)
	default:
		return nil, fmt.Errorf("health.type: %q is not one of tcp, https", cfg.Type)
	}
}

func checkAddr(addr string, port int) string {
	if port == 0 {
		return addr
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

type tcpChecker struct{ port int }

func (c *tcpChecker) Check(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", checkAddr(addr, c.port))
	if err != nil {
		return err
	}
	// Close with RST-free FIN; the backend sees a connect and close like
	// HAProxy's plain TCP check.
	return conn.Close()
}

type httpsChecker struct {
	cfg    Config
	client *http.Client
}

func newHTTPSChecker(cfg Config) (*httpsChecker, error) {
	tc := &tls.Config{
		InsecureSkipVerify: cfg.InsecureSkipVerify, //nolint:gosec // operator's explicit choice (health.tls.insecure_skip_verify)
		ServerName:         cfg.ServerName,
		MinVersion:         tls.VersionTLS12,
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("health.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("health.tls.ca_file: %s: no PEM certificate found", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		if err := secretfile.Check("health.tls.key_file", cfg.KeyFile); err != nil {
			return nil, err
		}
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("health.tls.cert_file: loading it with health.tls.key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if cfg.BearerTokenFile != "" {
		if _, err := readToken(cfg.BearerTokenFile); err != nil {
			return nil, err
		}
	}
	tr := &http.Transport{
		TLSClientConfig:   tc,
		DisableKeepAlives: true, // every check tests the accept path, like HAProxy
		Proxy:             nil,  // never go through HTTPS_PROXY
		DialContext:       (&net.Dialer{}).DialContext,
	}
	return &httpsChecker{cfg: cfg, client: &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// readToken reads a bearer token file. Errors never include its content.
func readToken(path string) (string, error) {
	if err := secretfile.Check("health.bearer_token_file", path); err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("health.bearer_token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("health.bearer_token_file: %s is empty", path)
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", fmt.Errorf("health.bearer_token_file: %s holds more than one line", path)
	}
	return tok, nil
}

func (c *httpsChecker) Check(ctx context.Context, addr string) error {
	url := "https://" + checkAddr(addr, c.cfg.Port) + c.cfg.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("User-Agent", "vipd-health")
	if c.cfg.BearerTokenFile != "" {
		tok, err := readToken(c.cfg.BearerTokenFile)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		// url.Error holds the URL (no secret in it) and the cause.
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && ue.Unwrap() != nil {
			return fmt.Errorf("GET %s: %w", c.cfg.Path, ue.Unwrap())
		}
		return fmt.Errorf("GET %s: %w", c.cfg.Path, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode == c.cfg.ExpectStatus:
		return nil
	case c.cfg.AuthErrorsAreUp && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden):
		return nil
	default:
		return fmt.Errorf("GET %s: status %d, want %d", c.cfg.Path, resp.StatusCode, c.cfg.ExpectStatus)
	}
}
