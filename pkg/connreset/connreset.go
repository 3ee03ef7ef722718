// Package connreset makes the clients of connections that another load balancer held learn at
// once that those connections are gone.
//
// When the VIP moves to a new holder after a crash, the clients of the dead holder's connections
// hold sockets that nothing answers; an idle client (a watch, logs -f) notices only when its own
// keepalive or application ping fires, often 30 s or more later. Package connreset sends, from
// VIP:port to client:port, one bare TCP ACK whose sequence number lies far outside the client's
// receive window. The client answers with a duplicate ACK (RFC 793 / RFC 5961 §5: out-of-window
// segment → ACK carrying its exact rcv_nxt). That ACK reaches the new VIP holder's kernel, which
// has no socket for it and answers with an RST whose sequence number is the ACK number of the
// client's segment: exactly the client's rcv_nxt, which the client accepts and resets its
// connection (read returns ECONNRESET). No state of the old holder is needed.
//
// Bounds: a token bucket (Config.Rate packets per second), a cap per call (Config.Max), and never
// a packet for a connection this host holds itself (checked in /proc/thread-self/net/tcp, or by
// Config.Held). The client side limits what it answers: Linux answers out-of-window segments at
// most once per net.ipv4.tcp_invalid_ratelimit (500 ms) per socket, which does not matter for one
// probe per connection; RFC 5961 challenge ACKs (sent instead of the dup ACK when a probe happens
// to land inside the window with an impossible ACK number) share the global
// net.ipv4.tcp_challenge_ack_limit (1000/s on kernels before 5.10; per-socket/random since), which
// would bound throughput only for that rare case (about window/2^32 of probes).
//
// Only IPv4 is implemented; IPv6 connections are counted as skipped. Sending needs CAP_NET_RAW.
package connreset

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is one client connection through a VIP: the client's address and port, and the VIP
// address and port it connected to (the local side on the load balancer).
type Conn struct {
	Client netip.AddrPort `json:"client"`
	VIP    netip.AddrPort `json:"vip"`
}

func (c Conn) String() string { return c.Client.String() + "->" + c.VIP.String() }

// Config bounds the work of a Resetter. Zero values take the defaults.
type Config struct {
	// Rate is the most probe packets sent per second (default 5000).
	Rate int
	// Burst is how many probes may leave back to back before the rate applies (default Rate/20, at least 1).
	Burst int
	// Max caps the connections handled by one Reset call (default 10000); the rest are dropped
	// and counted.
	Max int
	// Held returns the connections this host holds itself (never probed). Default: the TCP
	// sockets in /proc/thread-self/net/tcp and tcp6 (the calling thread's network namespace).
	Held func() (map[Conn]bool, error)
	// Logger receives one line per Reset call. Default: discard.
	Logger *slog.Logger
}

// Result says what a Reset call did.
type Result struct {
	Requested int           // connections passed in
	Sent      int           // probes sent
	Held      int           // skipped: this host holds the connection
	Invalid   int           // skipped: not IPv4, zero port, or duplicate
	OverCap   int           // dropped: beyond Config.Max
	Failed    int           // sendto errors
	Duration  time.Duration // time spent sending
}

// Resetter sends reset probes from a raw IPv4 socket opened in the network namespace of the
// thread that called New.
type Resetter struct {
	fd     int
	cfg    Config
	logger *slog.Logger
}

// New opens the raw socket (IPPROTO_RAW, which implies IP_HDRINCL). It fails without CAP_NET_RAW.
func New(cfg Config) (*Resetter, error) {
	if cfg.Rate <= 0 {
		cfg.Rate = 5000
	}
	if cfg.Burst <= 0 {
		cfg.Burst = max(1, cfg.Rate/20)
	}
	if cfg.Max <= 0 {
		cfg.Max = 10000
	}
	if cfg.Held == nil {
		cfg.Held = ProcHeld
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("open raw IPv4 socket for connection reset (needs CAP_NET_RAW): %w", err)
	}
	return &Resetter{fd: fd, cfg: cfg, logger: logger}, nil
}

// Close closes the raw socket.
func (r *Resetter) Close() error {
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Reset sends one probe per connection that this host does not hold, at the configured rate.
// It returns when all probes are sent or ctx is done (with ctx's error).
func (r *Resetter) Reset(ctx context.Context, conns []Conn) (Result, error) {
	if r.fd < 0 {
		return Result{Requested: len(conns)}, errors.New("connection reset: resetter is closed")
	}
	held, err := r.cfg.Held()
	if err != nil {
		// Without the table we cannot prove a connection is not ours: send nothing.
		return Result{Requested: len(conns)}, fmt.Errorf("read this host's TCP connections: %w", err)
	}
	todo, res := plan(conns, held, r.cfg.Max)
	start := time.Now()
	per := time.Second / time.Duration(r.cfg.Rate)
	var firstErr error
	for i, c := range todo {
		if due := start.Add(time.Duration(i-r.cfg.Burst) * per); i >= r.cfg.Burst {
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					res.Duration = time.Since(start)
					return res, ctx.Err()
				case <-t.C:
				}
			}
		} else if ctx.Err() != nil {
			res.Duration = time.Since(start)
			return res, ctx.Err()
		}
		pkt := Probe(c, rand.Uint32(), rand.Uint32())
		sa := &unix.SockaddrInet4{Addr: c.Client.Addr().As4()}
		if err := unix.Sendto(r.fd, pkt, 0, sa); err != nil {
			res.Failed++
			if firstErr == nil {
				firstErr = fmt.Errorf("send reset probe %s: %w", c, err)
			}
			continue
		}
		res.Sent++
	}
	res.Duration = time.Since(start)
	r.logger.Info("connection reset probes sent", "requested", res.Requested, "sent", res.Sent,
		"held_here", res.Held, "invalid", res.Invalid, "over_cap", res.OverCap, "failed", res.Failed,
		"duration", res.Duration)
	return res, firstErr
}

// plan picks the connections to probe: IPv4, nonzero ports, not held here, no duplicates, at
// most max.
func plan(conns []Conn, held map[Conn]bool, max int) ([]Conn, Result) {
	res := Result{Requested: len(conns)}
	todo := make([]Conn, 0, min(len(conns), max))
	seen := make(map[Conn]bool, len(conns))
	for _, c := range conns {
		c = Conn{Client: unmap(c.Client), VIP: unmap(c.VIP)}
		switch {
		case !c.Client.Addr().Is4() || !c.VIP.Addr().Is4() || c.Client.Port() == 0 || c.VIP.Port() == 0 || seen[c]:
			res.Invalid++
		case held[c]:
			res.Held++
		case len(todo) >= max:
			res.OverCap++
		default:
			todo = append(todo, c)
		}
		seen[c] = true
	}
	return todo, res
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Probe builds the IPv4+TCP packet sent for c: from c.VIP to c.Client, flags ACK, the given
// sequence and acknowledgement numbers, window 1024, no options, both checksums filled in.
// c must hold IPv4 addresses.
func Probe(c Conn, seq, ack uint32) []byte {
	const ihl, thl = 20, 20
	b := make([]byte, ihl+thl)
	src, dst := c.VIP.Addr().As4(), c.Client.Addr().As4()
	// IPv4 header.
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], ihl+thl)
	binary.BigEndian.PutUint16(b[4:], uint16(rand.Uint32()))
	b[6] = 0x40 // DF
	b[8] = 64   // TTL
	b[9] = unix.IPPROTO_TCP
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	binary.BigEndian.PutUint16(b[10:], checksum(b[:ihl], 0))
	// TCP header.
	t := b[ihl:]
	binary.BigEndian.PutUint16(t[0:], c.VIP.Port())
	binary.BigEndian.PutUint16(t[2:], c.Client.Port())
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], ack)
	t[12] = (thl / 4) << 4
	t[13] = 0x10 // ACK
	binary.BigEndian.PutUint16(t[14:], 1024)
	binary.BigEndian.PutUint16(t[16:], tcpChecksum(src, dst, t))
	return b
}

// tcpChecksum is the TCP checksum over the IPv4 pseudo-header and seg (whose checksum field
// must be zero).
func tcpChecksum(src, dst [4]byte, seg []byte) uint16 {
	var sum uint32
	sum += uint32(src[0])<<8 | uint32(src[1])
	sum += uint32(src[2])<<8 | uint32(src[3])
	sum += uint32(dst[0])<<8 | uint32(dst[1])
	sum += uint32(dst[2])<<8 | uint32(dst[3])
	sum += unix.IPPROTO_TCP
	sum += uint32(len(seg))
	return checksum(seg, sum)
}

func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// ProcHeld returns the TCP connections (any state but LISTEN) of the calling thread's network
// namespace, read from /proc/thread-self/net/tcp and tcp6, keyed with the local side as VIP.
func ProcHeld() (map[Conn]bool, error) {
	held := make(map[Conn]bool)
	for _, name := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
		if err := readProcTCP(name, held); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return held, nil
}

func readProcTCP(name string, into map[Conn]bool) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	first := true
	for sc.Scan() {
		if first { // header line
			first = false
			continue
		}
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] == "0A" { // 0A = LISTEN
			continue
		}
		local, err1 := parseProcAddr(fields[1])
		remote, err2 := parseProcAddr(fields[2])
		if err1 != nil || err2 != nil {
			return fmt.Errorf("parse %s line %q: bad address", name, sc.Text())
		}
		into[Conn{Client: remote, VIP: local}] = true
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	return nil
}

// parseProcAddr parses "0100007F:1F90" (address as host-order 32-bit words, port big-endian).
func parseProcAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || len(p) != 4 {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	// Each 32-bit word was printed (%08X) as a host-order integer; restore the memory bytes.
	for i := 0; i < len(raw); i += 4 {
		w := binary.BigEndian.Uint32(raw[i:])
		binary.NativeEndian.PutUint32(raw[i:], w)
	}
	pb, err := hex.DecodeString(p)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	port := binary.BigEndian.Uint16(pb)
	var addr netip.Addr
	if len(raw) == 4 {
		addr = netip.AddrFrom4([4]byte(raw))
	} else {
		addr = netip.AddrFrom16([16]byte(raw)).Unmap()
	}
	return netip.AddrPortFrom(addr, port), nil
}
