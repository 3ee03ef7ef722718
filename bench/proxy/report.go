package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

// row is one line of the results table.
type row struct{ what, direct, vipd, haproxy, vd, hd, vh, target string }

func (b *bench) report() error {
	r := &b.res
	f2 := func(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }
	f1 := func(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }
	ratio := func(a, c float64) string {
		if c == 0 {
			return "-"
		}
		return f2(a / c)
	}
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	var rows []row
	if b.o.runs("bulk") {
		rows = append(rows, row{"bulk TCP, 1 stream, Gbit/s (iperf3)", f2(r.BulkGbps["direct"]), f2(r.BulkGbps["vipd"]), f2(r.BulkGbps["haproxy"]),
			ratio(r.BulkGbps["vipd"], r.BulkGbps["direct"]), ratio(r.BulkGbps["haproxy"], r.BulkGbps["direct"]),
			ratio(r.BulkGbps["vipd"], r.BulkGbps["haproxy"]),
			"vipd >= 0.79 x direct and >= 1.8 x haproxy: " + mark(r.BulkGbps["vipd"] >= 0.79*r.BulkGbps["direct"] && r.BulkGbps["vipd"] >= 1.8*r.BulkGbps["haproxy"])})
	}
	if b.o.runs("tls") {
		rows = append(rows, []row{
			{fmt.Sprintf("new TLS conns/s, %d clients (all rounds)", b.o.conc), f1(r.TLSRate["direct"]), f1(r.TLSRate["vipd"]), f1(r.TLSRate["haproxy"]),
				ratio(r.TLSRate["vipd"], r.TLSRate["direct"]), ratio(r.TLSRate["haproxy"], r.TLSRate["direct"]),
				ratio(r.TLSRate["vipd"], r.TLSRate["haproxy"]), ""},
		}...)
		rows = append(rows, roundRows("  per round, conns/s", r.TLSRoundRate, true, "vipd >= haproxy")...)
		rows = append(rows, []row{
			{"  p50 latency, ms (all rounds)", f2(r.TLSP50["direct"]), f2(r.TLSP50["vipd"]), f2(r.TLSP50["haproxy"]),
				ratio(r.TLSP50["vipd"], r.TLSP50["direct"]), ratio(r.TLSP50["haproxy"], r.TLSP50["direct"]), ratio(r.TLSP50["vipd"], r.TLSP50["haproxy"]), ""},
			{"  p99 latency, ms (all rounds)", f2(r.TLSP99["direct"]), f2(r.TLSP99["vipd"]), f2(r.TLSP99["haproxy"]),
				ratio(r.TLSP99["vipd"], r.TLSP99["direct"]), ratio(r.TLSP99["haproxy"], r.TLSP99["direct"]), ratio(r.TLSP99["vipd"], r.TLSP99["haproxy"]),
				"vipd <= haproxy: " + mark(r.TLSP99["vipd"] > 0 && r.TLSP99["vipd"] <= r.TLSP99["haproxy"])},
		}...)
		rows = append(rows, roundRows("  per round, p99 ms", r.TLSRoundP99, false, "vipd <= haproxy")...)
		rows = append(rows, roundRows("  proxy CPU, ms per 1,000 connections", r.TLSRoundCPU, false, "vipd <= haproxy")...)
		rows = append(rows, row{"  failed requests", strconv.Itoa(r.TLSErrs["direct"]), strconv.Itoa(r.TLSErrs["vipd"]), strconv.Itoa(r.TLSErrs["haproxy"]), "", "", "",
			fmt.Sprintf("of %d / %d / %d; load average %s", r.TLSTotal["direct"], r.TLSTotal["vipd"], r.TLSTotal["haproxy"], loadRange(r.TLSRoundLoad))})
	}
	if b.o.runs("keepalive") {
		k := r.KeepAlive
		rows = append(rows, roundRows(fmt.Sprintf("HTTPS keep-alive req/s, wrk %d conns (direct: m1 only)", b.o.conc), k.Rate, true, "vipd >= haproxy")...)
		rows = append(rows, roundRows("  p50 latency, ms", k.P50, false, "vipd <= haproxy")...)
		rows = append(rows, roundRows("  p99 latency, ms", k.P99, false, "vipd <= haproxy")...)
		rows = append(rows, roundRows("  proxy CPU, ms per 1,000 requests", k.CPU, false, "vipd <= haproxy")...)
		rows = append(rows, row{"  errors", strconv.Itoa(k.Errors["direct"]), strconv.Itoa(k.Errors["vipd"]), strconv.Itoa(k.Errors["haproxy"]), "", "", "",
			"load average " + loadRange(k.Load)})
	}
	rows = append(rows, row{"RSS after start, MiB", "", f1(r.RSSStartMiB["vipd"]), f1(r.RSSStartMiB["haproxy"]), "", "", ratio(r.RSSStartMiB["vipd"], r.RSSStartMiB["haproxy"]),
		"vipd < 30 MiB idle: " + mark(r.RSSStartMiB["vipd"] < 30)})
	if b.o.runs("storm") {
		st := r.Storm
		rows = append(rows, roundRows(fmt.Sprintf("connection storm, %d clients at once: s until all proxied", st.Clients), st.Secs, false, "vipd <= haproxy")...)
		rows = append(rows, roundRows("  failed connections", st.Failed, false, "vipd <= haproxy")...)
		rows = append(rows, roundRows("  RSS before, MiB", st.PreMiB, false, "")...)
		rows = append(rows, roundRows("  RSS peak, MiB", st.PeakMiB, false, "vipd <= haproxy")...)
		rows = append(rows, roundRows("    of it anonymous (heap, stacks, pools), MiB", st.PeakAnonMiB, false, "vipd <= haproxy")...)
		rows = append(rows, roundRows("    of it file-backed (binary, libraries), MiB", st.PeakFileMiB, false, "")...)
		rows = append(rows, roundRows("  proxy CPU, ms", st.CPUms, false, "vipd <= haproxy")...)
		rows = append(rows, row{"  load average", "", "", "", "", "", "", loadRange(st.Load)})
	}
	if b.o.runs("idle") {
		rows = append(rows, b.idleRows()...)
	}
	if b.o.runs("watch") {
		w := r.Watch
		rows = append(rows, roundRows("watch after its master's SIGKILL: ms until the client saw it end", w.GoneMs, false, "vipd <= haproxy")...)
		rows = append(rows, roundRows("  ms until the first event of the new watch", w.BackMs, false, "vipd <= haproxy")...)
		rows = append(rows, roundRows("  connections tried for the new watch", w.Tries, false, "")...)
	}
	if b.o.runs("faults") {
		rows = append(rows, b.faultRows()...)
	}
	head := row{"what", "direct", "vipd", "haproxy", "vipd/direct", "haproxy/direct", "vipd/haproxy", "target"}
	fmt.Printf("\nvipd proxy benchmark, %s, %d CPUs, load average %.1f at the start and %.1f at the end (the lab's own load included), %.0f s\n%s (config: %s)\n%s\n\n",
		r.Date.Format("2006-01-02 15:04 MST"), r.CPUs, r.LoadAvg[0], r.LoadAvg[1], r.Seconds, r.VipdVersion, r.VipdConfig, r.HAProxyVersion)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	for _, x := range append([]row{head}, rows...) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.what, x.direct, x.vipd, x.haproxy, x.vd, x.hd, x.vh, x.target)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if b.o.markdown != "" {
		var s strings.Builder
		fmt.Fprintf(&s, "Run %s (%d CPUs, load average %.1f -> %.1f, %.0f s), %s (config: %s), %s:\n\n", r.Date.Format("2006-01-02 15:04 MST"), r.CPUs,
			r.LoadAvg[0], r.LoadAvg[1], r.Seconds, r.VipdVersion, r.VipdConfig, r.HAProxyVersion)
		for i, x := range append([]row{head}, rows...) {
			fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", x.what, x.direct, x.vipd, x.haproxy, x.vd, x.hd, x.vh, x.target)
			if i == 0 {
				s.WriteString("|---|---|---|---|---|---|---|---|\n")
			}
		}
		if err := os.WriteFile(b.o.markdown, []byte(s.String()), 0o644); err != nil {
			return err
		}
	}
	if b.o.jsonOut != "" {
		j, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(b.o.jsonOut, j, 0o644); err != nil {
			return err
		}
	}
	if r.TLSErrs["vipd"] > 0 || (b.o.runs("idle") && r.IdleHeld["vipd"] < r.IdleN) {
		b.log.Warn("vipd failed requests or connections: see the log above")
	}
	return nil
}

func (b *bench) idleRows() []row {
	r := &b.res
	f1 := func(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }
	f2 := func(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }
	ratio := func(a, c float64) string {
		if c == 0 {
			return "-"
		}
		return f2(a / c)
	}
	perConn := func(path string, beforeMiB, withMiB float64) float64 {
		if r.IdleHeld[path] == 0 {
			return 0
		}
		return (withMiB - beforeMiB) * 1024 / float64(r.IdleHeld[path])
	}
	rssV := perConn("vipd", r.RSSBeforeMiB["vipd"], r.RSSIdleMiB["vipd"])
	rssH := perConn("haproxy", r.RSSBeforeMiB["haproxy"], r.RSSIdleMiB["haproxy"])
	mv, mh := r.IdleMem["vipd"], r.IdleMem["haproxy"]
	target := "vipd <= haproxy: " + map[bool]string{true: "met", false: "MISSED"}[rssV > 0 && rssV <= rssH && r.IdleHeld["vipd"] == r.IdleN]
	if rssV > 0 && rssV <= rssH/2 {
		target += " (stretch <= half: met)"
	}
	rows := []row{
		{fmt.Sprintf("idle TLS conns held (of %d)", r.IdleN), "", strconv.Itoa(r.IdleHeld["vipd"]), strconv.Itoa(r.IdleHeld["haproxy"]), "", "", "",
			fmt.Sprintf("closed by the proxy while idle: %d / %d; RLIMIT_NOFILE %d; load average %.1f / %.1f", r.IdleClosed["vipd"], r.IdleClosed["haproxy"], r.NoFile,
				r.IdleLoad["vipd"], r.IdleLoad["haproxy"])},
		{"  descriptors per idle conn", "", f2(r.FDsPerConn["vipd"]), f2(r.FDsPerConn["haproxy"]), "", "", "", ""},
		{"  RSS before, MiB", "", f1(r.RSSBeforeMiB["vipd"]), f1(r.RSSBeforeMiB["haproxy"]), "", "", "", ""},
		{fmt.Sprintf("  RSS with %d idle conns, MiB", r.IdleN), "", f1(r.RSSIdleMiB["vipd"]), f1(r.RSSIdleMiB["haproxy"]), "", "",
			ratio(r.RSSIdleMiB["vipd"], r.RSSIdleMiB["haproxy"]), ""},
		{"  RSS per idle conn, KiB", "", f2(rssV), f2(rssH), "", "", ratio(rssV, rssH), target},
		{"    of it Go heap in use, KiB/conn", "", f2(perConn("vipd", mv.HeapMiB[0], mv.HeapMiB[1])), "", "", "", "",
			fmt.Sprintf("%.1f -> %.1f MiB (go_memstats_heap_inuse_bytes)", mv.HeapMiB[0], mv.HeapMiB[1])},
		{"    of it goroutine stacks, KiB/conn", "", f2(perConn("vipd", mv.StackMiB[0], mv.StackMiB[1])), "", "", "", "",
			fmt.Sprintf("%.1f -> %.1f MiB; goroutines %.0f -> %.0f", mv.StackMiB[0], mv.StackMiB[1], mv.Goroutines[0], mv.Goroutines[1])},
		{"  kernel socket buffers, KiB/conn (not in RSS)", "", f2((mv.SockKiB[1] - mv.SockKiB[0]) / float64(max(1, r.IdleHeld["vipd"]))),
			f2((mh.SockKiB[1] - mh.SockKiB[0]) / float64(max(1, r.IdleHeld["haproxy"]))), "", "", "",
			fmt.Sprintf("ss -tm r+t+f+w+o+bl over the proxy's namespace: %d -> %d / %d -> %d sockets", mv.Sockets[0], mv.Sockets[1], mh.Sockets[0], mh.Sockets[1])},
	}
	if r.IdleN < b.o.idle {
		rows = append(rows, row{fmt.Sprintf("  RSS extrapolated to %d, MiB", b.o.idle), "", f1(r.RSSIdleExt["vipd"]), f1(r.RSSIdleExt["haproxy"]), "", "",
			ratio(r.RSSIdleExt["vipd"], r.RSSIdleExt["haproxy"]), "linear from the measured count"})
	}
	return rows
}

func (b *bench) faultRows() []row {
	r := &b.res
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	return []row{
		{fmt.Sprintf("master killed, %d conn/s for %s: failed", b.o.killRate, b.o.killTime), "", strconv.Itoa(r.Kill.Failed["vipd"]), strconv.Itoa(r.Kill.Failed["haproxy"]), "", "", "",
			fmt.Sprintf("of %d / %d", r.Kill.Total["vipd"], r.Kill.Total["haproxy"])},
		{"  of them in flight at the kill", "", strconv.Itoa(r.Kill.InFlight["vipd"]), strconv.Itoa(r.Kill.InFlight["haproxy"]), "", "", "",
			"connected to the master before it died: no TCP proxy can save them"},
		{"  started after the kill", "", strconv.Itoa(r.Kill.Failed["vipd"] - r.Kill.InFlight["vipd"]), strconv.Itoa(r.Kill.Failed["haproxy"] - r.Kill.InFlight["haproxy"]), "", "", "",
			"vipd target 0: " + mark(r.Kill.Total["vipd"] > 0 && r.Kill.Failed["vipd"]-r.Kill.InFlight["vipd"] == 0)},
		{"  master marked DOWN after, s", "", downText(r.Kill.DownSecs["vipd"]), downText(r.Kill.DownSecs["haproxy"]), "", "", "", "vipd: defaults (https /readyz 2s, fall 3, fast 500ms, passive); haproxy: check inter 2s fall 3"},
		{fmt.Sprintf("master link cut, %d conn/s, 2s client timeout: failed", b.o.killRate), "", strconv.Itoa(r.Cut.Failed["vipd"]), strconv.Itoa(r.Cut.Failed["haproxy"]), "", "", "",
			fmt.Sprintf("of %d / %d", r.Cut.Total["vipd"], r.Cut.Total["haproxy"])},
		{"  of them in flight at the cut", "", strconv.Itoa(r.Cut.InFlight["vipd"]), strconv.Itoa(r.Cut.InFlight["haproxy"]), "", "", "", ""},
		{"  started after the cut", "", strconv.Itoa(r.Cut.Failed["vipd"] - r.Cut.InFlight["vipd"]), strconv.Itoa(r.Cut.Failed["haproxy"] - r.Cut.InFlight["haproxy"]), "", "", "",
			"vipd target 0: " + mark(r.Cut.Total["vipd"] > 0 && r.Cut.Failed["vipd"]-r.Cut.InFlight["vipd"] == 0)},
		{"  master marked DOWN after, s", "", downText(r.Cut.DownSecs["vipd"]), downText(r.Cut.DownSecs["haproxy"]), "", "", "", "vipd target <= 3 s: " + mark(r.Cut.DownSecs["vipd"] > 0 && r.Cut.DownSecs["vipd"] <= 3)},
	}
}
