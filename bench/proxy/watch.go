package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/vipd-project/vipd/test/apiserverstub"
	"github.com/vipd-project/vipd/test/lab"
)

// watchResult is the watch recovery after the master serving it is SIGKILLed, per proxy and
// round: from the kill until the client saw its watch end, and until the first event of the
// watch it opened again at once (through the same proxy, to another master).
type watchResult struct {
	GoneMs roundStats `json:"watch_ended_ms"`
	BackMs roundStats `json:"first_event_again_ms"`
	Tries  roundStats `json:"attempts"` // connections tried until a watch answered again
}

// watchLine is what the watch load generator prints: once its first watch has its first event
// (Host serves it), and once a new watch has its first event after the first one ended.
type watchLine struct {
	Host     string `json:"host"`
	At       int64  `json:"at_unix_ns"`    // first event
	Ended    int64  `json:"ended_unix_ns"` // the previous watch's end (second line)
	Attempts int    `json:"attempts"`
	Err      string `json:"err,omitempty"`
}

// lgWatch (loadgen -mode watch) opens a watch on target, prints its first event, waits for the
// stream to end, opens a watch again at once (retrying every 10 ms until -timeout), prints that
// one's first event and returns: a client like kubectl get -w or a reflector, without backoff.
func lgWatch(o lgOpts) error {
	enc := json.NewEncoder(os.Stdout)
	host, body, err := lgOpenWatch(o.targets[0], o.tlsConf, o.timeout)
	if err != nil {
		return err
	}
	if err := enc.Encode(watchLine{Host: host, At: time.Now().UnixNano(), Attempts: 1}); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, body)
	ended := time.Now()
	_ = body.Close()
	line := watchLine{Ended: ended.UnixNano()}
	for time.Since(ended) < o.timeout {
		line.Attempts++
		h, b, err := lgOpenWatch(o.targets[0], o.tlsConf, o.timeout)
		if err == nil {
			line.Host, line.At = h, time.Now().UnixNano()
			_ = b.Close()
			return enc.Encode(line)
		}
		line.Err = err.Error()
		time.Sleep(10 * time.Millisecond)
	}
	return enc.Encode(line)
}

// lgOpenWatch opens a TLS connection to target, sends a pods watch and reads its first event;
// it returns the serving master's name and the rest of the stream.
func lgOpenWatch(target string, conf *tls.Config, timeout time.Duration) (string, io.ReadCloser, error) {
	d := net.Dialer{Timeout: timeout, KeepAlive: -1}
	raw, err := d.Dial("tcp", target)
	if err != nil {
		return "", nil, err
	}
	_ = raw.SetDeadline(time.Now().Add(timeout))
	c := tls.Client(raw, lgServerName(conf, target))
	if _, err := io.WriteString(c, "GET /api/v1/namespaces/default/pods?watch=1 HTTP/1.1\r\nHost: kubernetes\r\n\r\n"); err != nil {
		raw.Close()
		return "", nil, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		raw.Close()
		return "", nil, fmt.Errorf("read: %w", err)
	}
	var ev apiserverstub.Event
	if err := json.NewDecoder(resp.Body).Decode(&ev); err != nil || ev.Host == "" {
		raw.Close()
		return "", nil, fmt.Errorf("first event: %v %q", err, ev.Host)
	}
	_ = raw.SetDeadline(time.Time{})
	return ev.Host, struct {
		io.Reader
		io.Closer
	}{resp.Body, raw}, nil
}

// watchRecovery: rounds alternating the proxies; in each, a watch through the proxy, the master
// serving it SIGKILLed, the client re-watching at once; then the master restarted and UP again
// on both proxies.
func (b *bench) watchRecovery(ctx context.Context, v *lab.Vipd) error {
	r := &b.res.Watch
	*r = watchResult{GoneMs: roundStats{}, BackMs: roundStats{}, Tries: roundStats{}}
	addr := map[string]string{"vipd": hostPort(b.lbv, 6443), "haproxy": hostPort(b.lbh, 6443)}
	for i, order := range roundOrder([]string{"vipd", "haproxy"}, b.o.watchRounds) {
		for _, path := range order {
			b.log.Info("watch recovery after a master SIGKILL", "round", i+1, "path", path)
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			cmd := b.client.Command(cctx, b.exe, "loadgen", "-ca", b.caFile, "-mode", "watch", "-targets", addr[path], "-timeout", "10s")
			out, err := cmd.StdoutPipe()
			if err != nil {
				cancel()
				return err
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				cancel()
				return err
			}
			dec := json.NewDecoder(out)
			var first, again watchLine
			err = dec.Decode(&first)
			var at time.Time
			if err == nil {
				at = time.Now()
				err = b.ms.Kill(first.Host)
			}
			if err == nil {
				err = dec.Decode(&again)
			}
			werr := cmd.Wait()
			cancel()
			if err != nil || werr != nil {
				return fmt.Errorf("watch via %s: %v %v: %s", path, err, werr, stderr.String())
			}
			if again.Host == "" {
				return fmt.Errorf("watch via %s: no watch again within 10 s: %s", path, again.Err)
			}
			r.GoneMs[path] = append(r.GoneMs[path], float64(again.Ended-at.UnixNano())/1e6)
			r.BackMs[path] = append(r.BackMs[path], float64(again.At-at.UnixNano())/1e6)
			r.Tries[path] = append(r.Tries[path], float64(again.Attempts))
			if err := b.ms.Start(ctx, first.Host); err != nil {
				return err
			}
			if err := b.waitAllUp(ctx, v); err != nil {
				return err
			}
		}
	}
	return nil
}
