package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The load generator runs as this same program in the client's network namespace
// (`proxy loadgen -mode ...`), so its sockets are ordinary ones of that namespace. It prints one
// JSON line (lgResult) on stdout.

// lgResult is what one load generator run measured.
type lgResult struct {
	Mode    string    `json:"mode"`
	Targets []string  `json:"targets"`
	OK      int       `json:"ok"`
	Errors  int       `json:"errors"`
	Secs    float64   `json:"secs"`
	Start   time.Time `json:"start"`              // when the load began (FailAt counts from it)
	LatMs   []float64 `json:"lat_ms,omitempty"`   // tls: latency of each successful request
	FailAt  []float64 `json:"fail_at,omitempty"`  // rate: start offset (s) of each failed request
	ErrText []string  `json:"err_text,omitempty"` // the first few errors
	Held    int       `json:"held,omitempty"`     // idle: connections established and held
	Closed  int       `json:"closed,omitempty"`   // idle: held connections found closed at the end
}

type lgOpts struct {
	mode     string
	targets  []string
	conc     int
	dur      time.Duration
	rate     int
	n        int
	timeout  time.Duration
	tlsConf  *tls.Config
	errLimit int
}

func loadgenMain(args []string) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	mode := fs.String("mode", "tls", "tls (new TLS connection per request, -c workers for -d), rate (-rate new connections per second for -d), idle (hold -n connections until stdin closes), watch (a watch, then again once it ends; JSON lines)")
	targets := fs.String("targets", "", "host:port list, comma separated (requests go round robin)")
	conc := fs.Int("c", 64, "concurrent workers (tls, and dialing in idle)")
	dur := fs.Duration("d", 10*time.Second, "duration (tls, rate)")
	rate := fs.Int("rate", 50, "requests per second (rate)")
	n := fs.Int("n", 10000, "connections to hold (idle)")
	timeout := fs.Duration("timeout", 5*time.Second, "per-request timeout")
	caFile := fs.String("ca", "", "CA certificate that signed the servers' certificates")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *targets == "" || *caFile == "" {
		return errors.New("loadgen: -targets and -ca are required")
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return fmt.Errorf("loadgen: read -ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("loadgen: no certificate in %s", *caFile)
	}
	o := lgOpts{mode: *mode, targets: strings.Split(*targets, ","), conc: *conc, dur: *dur, rate: *rate, n: *n,
		timeout: *timeout, tlsConf: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, errLimit: 5}
	var res lgResult
	switch o.mode {
	case "tls":
		res = lgTLS(o)
	case "rate":
		res = lgRate(o)
	case "watch":
		return lgWatch(o)
	case "idle":
		res, err = lgIdle(o)
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("loadgen: unknown -mode %q", o.mode)
	}
	res.Mode, res.Targets = o.mode, o.targets
	return json.NewEncoder(os.Stdout).Encode(res)
}

// lgRequest opens a TLS connection to target, sends GET /version with Connection: close and
// reads the answer to its end.
func lgRequest(target string, conf *tls.Config, timeout time.Duration) error {
	d := net.Dialer{Timeout: timeout}
	deadline := time.Now().Add(timeout)
	raw, err := d.Dial("tcp", target)
	if err != nil {
		return err
	}
	defer raw.Close()
	_ = raw.SetDeadline(deadline)
	c := tls.Client(raw, lgServerName(conf, target))
	if _, err := io.WriteString(c, "GET /version HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n"); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(c, 1<<16))
	if err != nil && len(b) == 0 {
		return fmt.Errorf("read: %w", err)
	}
	if !strings.HasPrefix(string(b), "HTTP/1.1 200 ") || !strings.Contains(string(b), `"host"`) {
		return fmt.Errorf("answer %.60q", b)
	}
	return nil
}

// lgServerName returns conf for a server named by target's host (an IP address: the stand-ins'
// certificates carry IP SANs).
func lgServerName(conf *tls.Config, target string) *tls.Config {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		host = target
	}
	c := conf.Clone()
	c.ServerName = host
	return c
}

type lgErrs struct {
	mu   sync.Mutex
	n    int
	text []string
	max  int
}

func (e *lgErrs) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if len(e.text) < e.max {
		e.text = append(e.text, err.Error())
	}
}

func lgTLS(o lgOpts) lgResult {
	var next atomic.Uint64
	errs := &lgErrs{max: o.errLimit}
	lats := make([][]float64, o.conc)
	start := time.Now()
	end := start.Add(o.dur)
	var wg sync.WaitGroup
	for w := 0; w < o.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				tgt := o.targets[next.Add(1)%uint64(len(o.targets))]
				t0 := time.Now()
				if err := lgRequest(tgt, o.tlsConf, o.timeout); err != nil {
					errs.add(err)
					continue
				}
				lats[w] = append(lats[w], float64(time.Since(t0).Microseconds())/1000)
			}
		}()
	}
	wg.Wait()
	res := lgResult{Secs: time.Since(start).Seconds(), Errors: errs.n, ErrText: errs.text}
	for _, l := range lats {
		res.LatMs = append(res.LatMs, l...)
	}
	res.OK = len(res.LatMs)
	return res
}

func lgRate(o lgOpts) lgResult {
	errs := &lgErrs{max: o.errLimit}
	var mu sync.Mutex
	start := time.Now()
	res := lgResult{Start: start}
	t := time.NewTicker(time.Second / time.Duration(o.rate))
	defer t.Stop()
	var wg sync.WaitGroup
	for i := 0; time.Since(start) < o.dur; i++ {
		tgt := o.targets[i%len(o.targets)]
		wg.Add(1)
		go func(at time.Time) {
			defer wg.Done()
			err := lgRequest(tgt, o.tlsConf, o.timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs.add(fmt.Errorf("%.3fs: %w", at.Sub(start).Seconds(), err))
				res.FailAt = append(res.FailAt, at.Sub(start).Seconds())
				return
			}
			res.OK++
		}(time.Now())
		<-t.C
	}
	wg.Wait()
	res.Secs = time.Since(start).Seconds()
	res.Errors, res.ErrText = errs.n, errs.text
	return res
}

// lgIdle opens o.n TLS connections (handshake done, then silent), reports on stdout, holds them
// until stdin closes (or SIGTERM), then checks how many are still open and prints the result.
func lgIdle(o lgOpts) (lgResult, error) {
	errs := &lgErrs{max: o.errLimit}
	conns := make([]net.Conn, o.n)
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < o.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= o.n {
					return
				}
				tgt := o.targets[i%len(o.targets)]
				d := net.Dialer{Timeout: o.timeout}
				raw, err := d.Dial("tcp", tgt)
				if err != nil {
					errs.add(err)
					continue
				}
				c := tls.Client(raw, lgServerName(o.tlsConf, tgt))
				_ = c.SetDeadline(time.Now().Add(o.timeout))
				if err := c.Handshake(); err != nil {
					errs.add(err)
					raw.Close()
					continue
				}
				_ = c.SetDeadline(time.Time{})
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	res := lgResult{Secs: time.Since(start).Seconds(), Errors: errs.n, ErrText: errs.text}
	for _, c := range conns {
		if c != nil {
			res.Held++
		}
	}
	// First line: the connections are up. The parent measures, then closes our stdin.
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return res, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
		close(eof)
	}()
	select {
	case <-eof:
	case <-ctx.Done():
	}
	// A connection the proxy closed meanwhile reads EOF at once; a live one times out.
	var closed atomic.Int64
	next.Store(0)
	for w := 0; w < o.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conns) {
					return
				}
				c := conns[i]
				if c == nil {
					continue
				}
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
				var b [1]byte
				if _, err := c.Read(b[:]); err != nil {
					var ne net.Error
					if !errors.As(err, &ne) || !ne.Timeout() {
						closed.Add(1)
					}
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	res.Closed = int(closed.Load())
	return res, nil
}
