package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/vipd-project/vipd/bench/internal/measure"
)

// stormResult is the connection storm: b.o.storm clients connecting at once (every kubelet
// reconnecting after an LB failover), per proxy and round.
type stormResult struct {
	Clients int        `json:"clients"`
	Secs    roundStats `json:"secs_until_all_proxied"` // until every TLS handshake through the proxy completed
	Failed  roundStats `json:"failed"`
	PeakMiB roundStats `json:"rss_peak_mib"` // sampled every 10 ms
	// At the sample of the peak: RssAnon (heap, stacks, pools) and RssFile (the binary's
	// and libraries' pages).
	PeakAnonMiB roundStats `json:"rss_anon_at_peak_mib"`
	PeakFileMiB roundStats `json:"rss_file_at_peak_mib"`
	PreMiB      roundStats `json:"rss_before_mib"`
	CPUms       roundStats `json:"proxy_cpu_ms"`
	Load        roundStats `json:"loadavg_1m"`
}

// (vi) the connection storm: for each round and proxy (order alternated), b.o.storm clients
// dial and complete a TLS handshake through the proxy at once (one goroutine each, 10 s
// timeout), hold the connection until all are done, then close. The proxy's RSS is sampled
// every 10 ms meanwhile.
func (b *bench) connStorm(ctx context.Context, pids map[string]int) error {
	r := &b.res.Storm
	*r = stormResult{Clients: b.o.storm, Secs: roundStats{}, Failed: roundStats{}, PeakMiB: roundStats{}, PeakAnonMiB: roundStats{}, PeakFileMiB: roundStats{}, PreMiB: roundStats{}, CPUms: roundStats{}, Load: roundStats{}}
	addr := map[string]string{"vipd": hostPort(b.lbv, 6443), "haproxy": hostPort(b.lbh, 6443)}
	for i, order := range roundOrder([]string{"vipd", "haproxy"}, b.o.stormRounds) {
		for _, path := range order {
			pid := pids[path]
			b.log.Info("connection storm", "round", i+1, "path", path, "clients", b.o.storm)
			r.Load[path] = append(r.Load[path], loadAvg())
			pre := rssSplit(pid)
			before := pre[0]
			t0, _ := measure.CPUTicks(pid)
			stop := make(chan struct{})
			peak := make(chan [3]float64, 1)
			go func() {
				p := pre
				t := time.NewTicker(10 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-stop:
						peak <- p
						return
					case <-t.C:
						if x := rssSplit(pid); x[0] > p[0] {
							p = x
						}
					}
				}
			}()
			first, err := b.holdAndRelease(ctx, addr[path], b.o.storm, b.o.storm)
			close(stop)
			pk := <-peak
			if err != nil {
				return fmt.Errorf("storm via %s: %w", path, err)
			}
			t1, _ := measure.CPUTicks(pid)
			r.Secs[path] = append(r.Secs[path], first.Secs)
			r.Failed[path] = append(r.Failed[path], float64(first.Errors))
			r.PeakMiB[path] = append(r.PeakMiB[path], pk[0])
			r.PeakAnonMiB[path] = append(r.PeakAnonMiB[path], pk[1])
			r.PeakFileMiB[path] = append(r.PeakFileMiB[path], pk[2])
			r.PreMiB[path] = append(r.PreMiB[path], before)
			r.CPUms[path] = append(r.CPUms[path], float64(t1-t0)*10)
			if first.Errors > 0 {
				b.log.Warn("storm: connections failed", "path", path, "failed", first.Errors, "first", first.ErrText)
			}
			time.Sleep(2 * time.Second) // the proxy closes the held connections
		}
	}
	return nil
}

// holdAndRelease runs the idle load generator (n connections, conc dialing at once), waits
// until every connection is up or failed, then closes them; it returns the first report.
func (b *bench) holdAndRelease(ctx context.Context, addr string, n, conc int) (lgResult, error) {
	var first lgResult
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := b.client.Command(cctx, b.exe, "loadgen", "-ca", b.caFile, "-mode", "idle", "-targets", addr,
		"-n", strconv.Itoa(n), "-c", strconv.Itoa(conc), "-timeout", "10s")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return first, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return first, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return first, err
	}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &first)
	}
	_ = stdin.Close()
	_, _ = io.Copy(io.Discard, stdout)
	werr := cmd.Wait()
	if err != nil || werr != nil {
		return first, fmt.Errorf("%v %v: %s", err, werr, stderr.String())
	}
	return first, nil
}
