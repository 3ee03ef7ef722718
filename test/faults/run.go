package faults

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vipd-project/vipd/test/apiserverstub"
)

// Result is what one fault did to the pair in one mode, from the injection until the pair had
// been stable for the mode's Quiet after the heal.
type Result struct {
	Fault string
	Mode  string
	// Settle is from the injection until the last change of who holds the VIP (after which
	// exactly one host held it for good).
	Settle time.Duration
	// NoHolder and TwoHolders are how long the VIP was on no LB host and on both.
	NoHolder, TwoHolders time.Duration
	// Transitions counts VRRP state changes logged by each host's daemon (restarts included);
	// DuringFault those from the injection until the heal.
	Transitions, DuringFault map[string]int
	// Log holds each host's log lines about state changes, cluster alarms and resignations
	// during the run, to explain a surprising row.
	Log map[string][]string
	// Requests and Failed count the client's new-TLS-connection requests through the VIP;
	// FailFrom and FailTo are when the first failed request started and the last one ended
	// (from the injection).
	Requests, Failed int
	FailFrom, FailTo time.Duration
	// FinalMasters is how many daemons report MASTER at the end; FinalHolders who holds the VIP.
	FinalMasters int
	FinalHolders []string
}

// Quiet is how long the holder set must stay unchanged (exactly one) after the heal before a
// run ends: longer than a restarted master needs to take the VIP back (vipd: 3 x 200 ms adverts
// + skew + start; Keepalived with the reference's advert_int 1: 3.6 s + start).
func (m Mode) Quiet() time.Duration {
	if m.Keepalived {
		return 6 * time.Second
	}
	return 3 * time.Second
}

const (
	sampleEvery  = 10 * time.Millisecond
	probeEvery   = 20 * time.Millisecond
	probeTimeout = time.Second
	settleMax    = 25 * time.Second
)

type sample struct {
	at      time.Time
	holders int  // how many hosts hold the VIP
	set     uint // which: bit 0 lb1, bit 1 lb2
}

// Run injects f into the pair running in mode (starting or restarting the pair as needed) and
// measures it.
func (e *Env) Run(ctx context.Context, f Fault, mode Mode) (Result, error) {
	res := Result{Fault: f.Name, Mode: mode.Name, Transitions: map[string]int{}, DuringFault: map[string]int{}, Log: map[string][]string{}}
	if e.mode == nil || *e.mode != mode || e.Steady(ctx, 30*time.Second) != nil {
		if err := e.Start(ctx, mode); err != nil {
			return res, fmt.Errorf("%s, %s: start the pair: %w", f.Name, mode.Name, err)
		}
	}
	tlsConf := e.Masters.ClientTLS()
	prober := apiserverstub.StartProber(e.Client.Dial, tlsConf, net.JoinHostPort(e.VIP.String(), "6443"), probeEvery, probeTimeout)
	defer prober.Stop()
	warm := time.Now()
	if err := waitOK(ctx, prober, warm, 10*time.Second); err != nil {
		// What the last fault left behind can outlast the pair's own recovery (Keepalived
		// sends no gratuitous ARP when the peer steps down after a partition, so the client
		// keeps the wrong MAC): start the pair afresh, as an operator would.
		if err := e.Start(ctx, mode); err != nil {
			return res, fmt.Errorf("%s, %s: restart the pair: %w", f.Name, mode.Name, err)
		}
		warm = time.Now()
		if err := waitOK(ctx, prober, warm, 10*time.Second); err != nil {
			return res, fmt.Errorf("%s, %s: requests through the VIP before the fault: %w", f.Name, mode.Name, err)
		}
	}
	offsets := map[string]int64{}
	for _, d := range []Daemon{e.D1, e.D2} {
		offsets[d.LogPath()] = logSize(d.LogPath())
	}

	sampler := e.startSampler()
	t0 := time.Now()
	if err := f.Inject(e); err != nil {
		sampler.stop()
		return res, fmt.Errorf("%s, %s: inject: %w", f.Name, mode.Name, err)
	}
	select {
	case <-ctx.Done():
		sampler.stop()
		return res, ctx.Err()
	case <-time.After(f.HoldFor(mode)):
	}
	if err := f.Heal(e); err != nil {
		sampler.stop()
		return res, fmt.Errorf("%s, %s: heal: %w", f.Name, mode.Name, err)
	}
	healed := time.Now()
	for h, d := range map[string]Daemon{e.LB1.Name: e.D1, e.LB2.Name: e.D2} {
		res.DuringFault[h] = countTransitions(d.LogPath(), offsets[d.LogPath()], d.TransitionLine())
	}
	for !sampler.quietSince(healed, mode.Quiet()) && time.Since(healed) < settleMax {
		select {
		case <-ctx.Done():
			sampler.stop()
			return res, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	samples := sampler.stop()
	tEnd := time.Now()
	prober.WaitDone(tEnd)

	res.NoHolder, res.TwoHolders, res.Settle = timeline(samples, t0)
	for h, d := range map[string]Daemon{e.LB1.Name: e.D1, e.LB2.Name: e.D2} {
		res.Transitions[h] = countTransitions(d.LogPath(), offsets[d.LogPath()], d.TransitionLine())
		res.Log[h] = notableLines(d.LogPath(), offsets[d.LogPath()], d.TransitionLine())
	}
	rs := prober.Between(t0, tEnd)
	res.Requests, res.Failed, _, _ = apiserverstub.Summary(rs)
	for _, r := range rs {
		if r.Err == nil {
			continue
		}
		if res.FailFrom == 0 || r.Start.Sub(t0) < res.FailFrom {
			res.FailFrom = r.Start.Sub(t0)
		}
		res.FailTo = max(res.FailTo, r.End.Sub(t0))
	}
	res.FinalHolders = e.Holders()
	for _, d := range []Daemon{e.D1, e.D2} {
		if s, err := d.State(ctx); err == nil && s == "MASTER" {
			res.FinalMasters++
		}
	}
	return res, nil
}

func waitOK(ctx context.Context, p *apiserverstub.Prober, from time.Time, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if _, ok := p.FirstOKAfter(from); ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	_, _, _, errs := apiserverstub.Summary(p.Between(from, time.Now()))
	return fmt.Errorf("no request succeeded within %s (%v)", within, errs)
}

type sampler struct {
	mu      sync.Mutex
	samples []sample
	done    chan struct{}
	wg      sync.WaitGroup
}

func (e *Env) startSampler() *sampler {
	s := &sampler{done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			hs := e.Holders()
			var set uint
			for _, h := range hs {
				if h == e.LB1.Name {
					set |= 1
				} else {
					set |= 2
				}
			}
			s.mu.Lock()
			s.samples = append(s.samples, sample{time.Now(), len(hs), set})
			s.mu.Unlock()
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// quietSince reports whether, since from, exactly one host has held the VIP for the last d.
func (s *sampler) quietSince(from time.Time, d time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return false
	}
	last := s.samples[len(s.samples)-1].at
	if last.Sub(from) < d {
		return false
	}
	for i := len(s.samples) - 1; i >= 0 && last.Sub(s.samples[i].at) <= d; i-- {
		if s.samples[i].holders != 1 || s.samples[i].set != s.samples[len(s.samples)-1].set {
			return false
		}
	}
	return true
}

func (s *sampler) stop() []sample {
	close(s.done)
	s.wg.Wait()
	return s.samples
}

// timeline sums the time with no holder and with two, and finds the last change of who holds
// the VIP, all from t0.
func timeline(ss []sample, t0 time.Time) (none, two, settle time.Duration) {
	for i := 1; i < len(ss); i++ {
		if ss[i].at.Before(t0) {
			continue
		}
		d := ss[i].at.Sub(ss[i-1].at)
		switch ss[i-1].holders {
		case 0:
			none += d
		case 2:
			two += d
		}
		if ss[i].set != ss[i-1].set {
			settle = ss[i].at.Sub(t0)
		}
	}
	return none, two, settle
}

func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// countTransitions counts the lines marking a state change written after offset.
func countTransitions(path string, offset int64, line string) int {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return -1
	}
	return bytes.Count(b[offset:], []byte(line))
}

// String is one row of the table.
func (r Result) String() string {
	return fmt.Sprintf("%-40s %-10s settle %6.2fs  no holder %5.2fs  two holders %5.2fs  transitions lb1 %d lb2 %d  failed %3d/%-4d (%.2f-%.2fs)  end: %d MASTER, holders %s",
		r.Fault, r.Mode, r.Settle.Seconds(), r.NoHolder.Seconds(), r.TwoHolders.Seconds(),
		r.Transitions["lb1"], r.Transitions["lb2"], r.Failed, r.Requests, r.FailFrom.Seconds(), r.FailTo.Seconds(), r.FinalMasters, strings.Join(r.FinalHolders, ","))
}

// notableLines returns the log lines after offset that explain a run: state changes, cluster
// alarms, resignations, announcements.
func notableLines(path string, offset int64, transition string) []string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b[offset:]), "\n") {
		for _, k := range []string{transition, "alarm", "resign", "announcing", "split brain", "started"} {
			if strings.Contains(l, k) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}
