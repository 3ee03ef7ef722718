package tcpproxy

import (
	"context"
	"io"
	"net"
	"testing"
)

// sink is a loopback server that discards what it reads.
func sink(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 256<<10)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func bulk(b *testing.B, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBulkDirect: one stream, client -> sink over loopback.
func BenchmarkBulkDirect(b *testing.B) { bulk(b, sink(b)) }

// BenchmarkBulkProxy: one stream, client -> proxy (splice) -> sink.
func BenchmarkBulkProxy(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Backends = []string{sink(b)}
	p, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-p.Ready()
	bulk(b, p.Addr().String())
}

// echoServer is a loopback server that answers each read with the same bytes.
func echoServer(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// pingPong sends 200-byte messages over conns connections at once, each
// waiting for its echo (keep-alive requests with small answers); b.N is
// the round trips over all connections.
func pingPong(b *testing.B, addr string, conns int) {
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		cs[i] = c
	}
	b.ReportAllocs()
	b.ResetTimer()
	errs := make(chan error, conns)
	for i, c := range cs {
		n := b.N / conns
		if i < b.N%conns {
			n++
		}
		go func() {
			msg := make([]byte, 200)
			buf := make([]byte, 200)
			for j := 0; j < n; j++ {
				if _, err := c.Write(msg); err != nil {
					errs <- err
					return
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range cs {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPingPongDirect: 64 connections, 200-byte request and answer, no proxy.
func BenchmarkPingPongDirect(b *testing.B) { pingPong(b, echoServer(b), 64) }

// BenchmarkPingPongProxy: the same through the proxy (the loop's inline copies).
func BenchmarkPingPongProxy(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Backends = []string{echoServer(b)}
	p, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-p.Ready()
	pingPong(b, p.Addr().String(), 64)
}
