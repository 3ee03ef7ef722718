package apiserverstub

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Result is one request of a Prober.
type Result struct {
	Start, End time.Time
	// Host is the master that answered (from /version); empty on failure.
	Host string
	Err  error
}

// Prober sends a steady stream of requests, each on a new TLS connection (GET /version, with a
// timeout), to one target such as VIP:6443, and records every result: what a client of the
// control plane sees while LBs and masters fail.
type Prober struct {
	Target   string
	Interval time.Duration

	client *http.Client
	stop   chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	results  []Result
	inflight map[int]time.Time
	skipped  int
}

// StartProber starts one request every interval to target (host:port) over connections made
// with dial (e.g. a lab host's Dial, so they start in its namespace), each with timeout. At most
// 64 requests are in flight; a tick that finds 64 is skipped and counted.
func StartProber(dial func(ctx context.Context, network, addr string) (net.Conn, error), tlsConf *tls.Config,
	target string, interval, timeout time.Duration) *Prober {
	p := &Prober{Target: target, Interval: interval, stop: make(chan struct{}), inflight: map[int]time.Time{},
		client: &http.Client{Timeout: timeout, Transport: &http.Transport{
			DialContext: dial, DisableKeepAlives: true, TLSClientConfig: tlsConf}}}
	p.wg.Add(1)
	go p.loop()
	return p
}

func (p *Prober) loop() {
	defer p.wg.Done()
	sem := make(chan struct{}, 64)
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for id := 0; ; id++ {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			p.mu.Lock()
			p.skipped++
			p.mu.Unlock()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer func() { <-sem }()
			r := Result{Start: time.Now()}
			p.mu.Lock()
			p.inflight[id] = r.Start
			p.mu.Unlock()
			r.Host, r.Err = p.one()
			r.End = time.Now()
			p.mu.Lock()
			delete(p.inflight, id)
			p.results = append(p.results, r)
			p.mu.Unlock()
		}()
	}
}

func (p *Prober) one() (string, error) {
	resp, err := p.client.Get("https://" + p.Target + "/version")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var v Version
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&v); err != nil {
		return "", fmt.Errorf("decode /version: %w", err)
	}
	if resp.StatusCode != http.StatusOK || v.Host == "" {
		return "", fmt.Errorf("/version: %s host %q", resp.Status, v.Host)
	}
	return v.Host, nil
}

// Stop ends the stream and waits for the requests in flight.
func (p *Prober) Stop() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
}

// Skipped counts ticks skipped because 64 requests were in flight.
func (p *Prober) Skipped() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.skipped
}

// Between returns the finished requests that started in [from, to).
func (p *Prober) Between(from, to time.Time) []Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Result
	for _, r := range p.results {
		if !r.Start.Before(from) && r.Start.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// WaitDone waits until t has passed and every request started before t has finished (they end
// within their timeout; WaitDone gives up after 3 s more).
func (p *Prober) WaitDone(t time.Time) {
	time.Sleep(time.Until(t))
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		busy := false
		for _, s := range p.inflight {
			busy = busy || s.Before(t)
		}
		p.mu.Unlock()
		if !busy {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FirstOKAfter returns the successful request that started at or after t and finished first.
func (p *Prober) FirstOKAfter(t time.Time) (Result, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best Result
	found := false
	for _, r := range p.results {
		if r.Err == nil && !r.Start.Before(t) && (!found || r.End.Before(best.End)) {
			best, found = r, true
		}
	}
	return best, found
}

// LongestGap returns the longest time between two consecutive successful answers (by the time
// they arrived) after from: the longest outage a client polling at Interval would have seen
// (Interval itself when nothing failed).
func (p *Prober) LongestGap(from time.Time) time.Duration {
	p.mu.Lock()
	var ends []time.Time
	for _, r := range p.results {
		if r.Err == nil && !r.End.Before(from) {
			ends = append(ends, r.End)
		}
	}
	p.mu.Unlock()
	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	prev := from
	var gap time.Duration
	for _, e := range ends {
		gap = max(gap, e.Sub(prev))
		prev = e
	}
	return max(gap, time.Since(prev))
}

// Summary counts results: total, failed, answered by each master, and up to 3 error texts.
func Summary(rs []Result) (total, failed int, byHost map[string]int, errs []string) {
	byHost = map[string]int{}
	for _, r := range rs {
		total++
		if r.Err != nil {
			failed++
			if len(errs) < 3 {
				errs = append(errs, r.Start.Format("15:04:05.000")+" "+r.Err.Error())
			}
			continue
		}
		byHost[r.Host]++
	}
	return
}
