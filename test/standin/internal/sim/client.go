package sim

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Client talks to a stand-in apiserver.
type Client struct {
	Base string // https://host:port
	HTTP *http.Client
}

// NewClient returns a client for base using tlsCfg.
func NewClient(base string, tlsCfg *tls.Config, timeout time.Duration) *Client {
	return &Client{Base: strings.TrimSuffix(base, "/"), HTTP: &http.Client{Timeout: timeout,
		Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}}}
}

// StatusError is a non-2xx answer.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.Code, strings.TrimSpace(e.Body))
}

// Do sends a request with an optional JSON body and decodes a JSON answer into out.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &StatusError{Code: resp.StatusCode, Body: string(b)}
	}
	if out != nil {
		if s, ok := out.(*string); ok {
			*s = string(b)
			return nil
		}
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

// CallLog is where every stand-in records its invocations.
const CallLog = "/var/log/standin/calls.log"

// RecordCall appends one line to the call log: time, program, "change" or "read", argv
// (token and certificate key values redacted).
func RecordCall(prog string, change bool, args []string) {
	kind := "read"
	if change {
		kind = "change"
	}
	_ = os.MkdirAll("/var/log/standin", 0o755)
	f, err := os.OpenFile(CallLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	q := make([]string, len(args))
	redact := false
	for i, a := range args {
		if redact {
			a, redact = "<redacted>", false
		}
		for _, f := range []string{"--token", "--certificate-key"} {
			if a == f {
				redact = true
			} else if strings.HasPrefix(a, f+"=") {
				a = f + "=<redacted>"
			}
		}
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	fmt.Fprintf(f, "%s %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), prog, kind, strings.Join(q, " "))
}
