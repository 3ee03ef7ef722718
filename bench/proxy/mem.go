package main

import (
	"bufio"
	"context"
	"strconv"
	"strings"

	"github.com/vipd-project/vipd/test/lab"
)

// memSplit is where a proxy's memory goes, before and with the idle connections: the Go
// runtime's heap and goroutine stacks (vipd only, from its /metrics) and the kernel's socket
// buffer memory of the proxy's network namespace (ss -tm: rmem_alloc + wmem_alloc +
// fwd_alloc + wmem_queued + optmem + backlog, summed over its TCP sockets).
type memSplit struct {
	HeapMiB    [2]float64 `json:"go_heap_inuse_mib"`  // go_memstats_heap_inuse_bytes
	StackMiB   [2]float64 `json:"go_stack_inuse_mib"` // go_memstats_stack_inuse_bytes
	Goroutines [2]float64 `json:"goroutines"`
	SockKiB    [2]float64 `json:"kernel_socket_kib"`
	Sockets    [2]int     `json:"tcp_sockets"`
}

// goMem reads vipd's Go heap and stack in use (MiB) and its goroutines from /metrics.
func goMem(ctx context.Context, v *lab.Vipd) (heap, stack, goroutines float64) {
	body, err := v.Get(ctx, "/metrics")
	if err != nil {
		return -1, -1, -1
	}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		x, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "go_memstats_heap_inuse_bytes":
			heap = x / (1 << 20)
		case "go_memstats_stack_inuse_bytes":
			stack = x / (1 << 20)
		case "go_goroutines":
			goroutines = x
		}
	}
	return heap, stack, goroutines
}

// sockMem sums the kernel memory charged to the TCP sockets of h's namespace (KiB), from
// `ss -tmnaH`, and counts them.
func sockMem(ctx context.Context, h *lab.Host) (kib float64, n int) {
	out, err := h.Exec(ctx, "ss", "-tmnaH")
	if err != nil {
		return -1, 0
	}
	var bytes float64
	for _, l := range strings.Split(out, "\n") {
		i := strings.Index(l, "skmem:(")
		if i < 0 {
			continue
		}
		n++
		fields := strings.TrimSuffix(strings.Fields(l[i+len("skmem:("):])[0], ")")
		for _, kv := range strings.Split(fields, ",") {
			// r rmem_alloc, t wmem_alloc, f fwd_alloc, w wmem_queued, o optmem, bl backlog;
			// rb and tb are limits, d drops.
			for _, k := range []string{"r", "t", "f", "w", "o", "bl"} {
				if rest, ok := strings.CutPrefix(kv, k); ok {
					if x, err := strconv.ParseFloat(rest, 64); err == nil {
						bytes += x
					}
				}
			}
		}
	}
	return bytes / 1024, n
}
