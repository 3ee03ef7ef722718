package main

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vipd-project/vipd/bench/internal/measure"
)

// roundStats is one figure measured in alternating rounds: per path, the value of each round.
type roundStats map[string][]float64

// ratios returns a/b of each round where both were measured.
func (r roundStats) ratios(a, b string) []float64 {
	var out []float64
	for i := 0; i < len(r[a]) && i < len(r[b]); i++ {
		if r[b][i] > 0 {
			out = append(out, r[a][i]/r[b][i])
		}
	}
	return out
}

// median, min and max of xs (zeros when empty).
func median(xs []float64) (med, lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	med = s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return med, s[0], s[len(s)-1]
}

// roundOrder is the order of paths for each of n rounds, rotated each round so that a change
// in the machine's load weighs on every path alike.
func roundOrder(paths []string, n int) [][]string {
	var out [][]string
	for r := 0; r < n; r++ {
		var o []string
		for i := range paths {
			o = append(o, paths[(i+r)%len(paths)])
		}
		out = append(out, o)
	}
	return out
}

// wrkResult is what one wrk run printed.
type wrkResult struct {
	Rate          float64 // Requests/sec
	P50, P99      float64 // ms
	Requests      int
	Errors        int // socket errors and non-2xx answers
	ErrText       string
	Connect, Read int
}

var (
	wrkRate     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkPct      = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkReqs     = regexp.MustCompile(`(\d+) requests in`)
	wrkSockErrs = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkRate.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk's output: %q", out)
	}
	r.Rate, _ = strconv.ParseFloat(m[1], 64)
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if m[1] == "50" {
			r.P50 = v
		} else {
			r.P99 = v
		}
	}
	if m := wrkReqs.FindStringSubmatch(out); m != nil {
		r.Requests, _ = strconv.Atoi(m[1])
	}
	if m := wrkSockErrs.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			r.Errors += n
		}
		r.ErrText = m[0]
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.Atoi(m[1])
		r.Errors += n
		r.ErrText += "; " + m[0]
	}
	return r, nil
}

// (ii b) HTTPS keep-alive requests per second: wrk with b.o.conc connections, each sending
// GET /version over one TLS connection for the whole round (small answers: what kubectl,
// controllers and kubelets mostly do). Rounds alternate the paths. Direct goes to m1 only
// (wrk takes one URL); the proxies spread the connections over the three masters.
func (b *bench) keepAlive(ctx context.Context, pids map[string]int) error {
	targets := map[string]string{
		"direct":  hostPort(b.masters[0], 6443),
		"vipd":    hostPort(b.lbv, 6443),
		"haproxy": hostPort(b.lbh, 6443),
	}
	r := &b.res.KeepAlive
	r.Rate, r.P50, r.P99, r.Load, r.CPU = roundStats{}, roundStats{}, roundStats{}, roundStats{}, roundStats{}
	r.Errors = map[string]int{}
	slot := b.o.kaTime / time.Duration(b.o.rounds)
	secs := strconv.Itoa(max(1, int(slot.Seconds()+0.5)))
	for i, order := range roundOrder([]string{"vipd", "haproxy", "direct"}, b.o.rounds) {
		for _, path := range order {
			b.log.Info("HTTPS keep-alive requests (wrk)", "round", i+1, "path", path, "connections", b.o.conc, "seconds", secs)
			la := loadAvg()
			t0, _ := measure.CPUTicks(pids[path])
			cctx, cancel := context.WithTimeout(ctx, slot+30*time.Second)
			out, err := b.client.Command(cctx, "wrk", "-t", "2", "-c", strconv.Itoa(b.o.conc), "-d", secs+"s",
				"--latency", "https://"+targets[path]+"/version").CombinedOutput()
			cancel()
			if err != nil {
				return fmt.Errorf("wrk via %s: %w: %s", path, err, out)
			}
			if t1, err := measure.CPUTicks(pids[path]); err == nil && pids[path] != 0 {
				if w, _ := parseWrk(string(out)); w.Requests > 0 {
					// CPU ms of the proxy process per 1,000 requests (USER_HZ ticks are 10 ms).
					r.CPU[path] = append(r.CPU[path], float64(t1-t0)*10/float64(w.Requests)*1000)
				}
			}
			w, err := parseWrk(string(out))
			if err != nil {
				return fmt.Errorf("wrk via %s: %w", path, err)
			}
			if w.Errors > 0 {
				b.log.Warn("wrk errors", "path", path, "errors", w.ErrText)
			}
			r.Rate[path] = append(r.Rate[path], w.Rate)
			r.P50[path] = append(r.P50[path], w.P50)
			r.P99[path] = append(r.P99[path], w.P99)
			r.Load[path] = append(r.Load[path], la)
			r.Errors[path] += w.Errors
		}
	}
	return nil
}

// keepAliveResult is the keep-alive figure of one run.
type keepAliveResult struct {
	Rate   roundStats     `json:"req_per_sec"` // per round
	P50    roundStats     `json:"p50_ms"`
	P99    roundStats     `json:"p99_ms"`
	Load   roundStats     `json:"loadavg_1m"`          // at the start of each round
	CPU    roundStats     `json:"cpu_ms_per_1000_req"` // the proxy process's utime+stime
	Errors map[string]int `json:"errors"`
}

// roundRows are the table rows of a figure measured in rounds: the median per path, and the
// vipd/haproxy ratio's median, min and max over the rounds.
func roundRows(what string, r roundStats, higherBetter bool, target string) []row {
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }
	med := func(path string) string {
		m, _, _ := median(r[path])
		if len(r[path]) == 0 {
			return ""
		}
		return f(m)
	}
	rat := r.ratios("vipd", "haproxy")
	m, lo, hi := median(rat)
	won := 0
	for _, x := range rat {
		if (higherBetter && x >= 1) || (!higherBetter && x <= 1) {
			won++
		}
	}
	dm, _, _ := median(r["direct"])
	vm, _, _ := median(r["vipd"])
	hm, _, _ := median(r["haproxy"])
	ratio := func(a, c float64) string {
		if c == 0 {
			return ""
		}
		return f(a / c)
	}
	ok := "met"
	if (higherBetter && m < 1) || (!higherBetter && m > 1) {
		ok = "MISSED"
	}
	if len(rat) == 0 && len(r["vipd"]) > 0 && vm == 0 && hm == 0 {
		return []row{{what: what, direct: med("direct"), vipd: med("vipd"), haproxy: med("haproxy"),
			target: fmt.Sprintf("%s: met (0 in all %d rounds)", target, len(r["vipd"]))}}
	}
	if target == "" {
		return []row{{what: what, direct: med("direct"), vipd: med("vipd"), haproxy: med("haproxy")}}
	}
	return []row{{what: what, direct: med("direct"), vipd: med("vipd"), haproxy: med("haproxy"),
		vd: ratio(vm, dm), hd: ratio(hm, dm), vh: f(m),
		target: fmt.Sprintf("%s: %s (median of %d rounds' ratios; range %s-%s; %d of %d rounds)", target, ok, len(rat), f(lo), f(hi), won, len(rat))}}
}

func loadRange(r roundStats) string {
	var all []float64
	for _, v := range r {
		all = append(all, v...)
	}
	_, lo, hi := median(all)
	return strings.TrimSpace(fmt.Sprintf("%.1f-%.1f", lo, hi))
}
