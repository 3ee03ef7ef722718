package lab

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// Pinger sends ICMP echo requests from a host to one address at a fixed interval and records
// every reply, so a test can ask when the first reply came after some instant (e.g. a kill).
type Pinger struct {
	Target   netip.Addr
	Interval time.Duration

	conn *icmp.PacketConn
	id   int
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	sentAt  map[int]time.Time
	replies []Reply
	sent    int
}

// Reply is one echo reply: when its request left and when the reply arrived.
type Reply struct {
	Seq  int
	Sent time.Time
	Recv time.Time
}

// StartPinger starts pinging target from the host every interval (10 ms is fine).
func (h *Host) StartPinger(target netip.Addr, interval time.Duration) (*Pinger, error) {
	var conn *icmp.PacketConn
	if err := h.Do(func() error {
		var err error
		conn, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return nil, fmt.Errorf("%s: icmp socket: %w", h.Name, err)
	}
	var b [2]byte
	_, _ = rand.Read(b[:])
	p := &Pinger{Target: target, Interval: interval, conn: conn, id: int(binary.BigEndian.Uint16(b[:])),
		stop: make(chan struct{}), sentAt: map[int]time.Time{}}
	p.wg.Add(2)
	go p.sendLoop()
	go p.recvLoop()
	return p, nil
}

func (p *Pinger) sendLoop() {
	defer p.wg.Done()
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	dst := &net.IPAddr{IP: p.Target.AsSlice()}
	for seq := 0; ; seq = (seq + 1) & 0xffff {
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: p.id, Seq: seq, Data: []byte("vipd-lab-ping")}}
		b, _ := msg.Marshal(nil)
		p.mu.Lock()
		p.sentAt[seq] = time.Now()
		p.sent++
		p.mu.Unlock()
		_, _ = p.conn.WriteTo(b, dst) // unreachable while nobody holds the address: keep going
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

func (p *Pinger) recvLoop() {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := p.conn.ReadFrom(buf)
		now := time.Now()
		if err != nil {
			select {
			case <-p.stop:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return
		}
		ip, ok := from.(*net.IPAddr)
		if !ok || !ip.IP.Equal(p.Target.AsSlice()) {
			continue
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		e, ok := m.Body.(*icmp.Echo)
		if !ok || e.ID != p.id {
			continue
		}
		p.mu.Lock()
		if s, ok := p.sentAt[e.Seq]; ok {
			p.replies = append(p.replies, Reply{Seq: e.Seq, Sent: s, Recv: now})
			delete(p.sentAt, e.Seq)
		}
		p.mu.Unlock()
	}
}

// Stop ends the pinger and closes its socket.
func (p *Pinger) Stop() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	_ = p.conn.Close()
	p.wg.Wait()
}

// FirstReplyAfter returns the first reply to a request sent at or after t.
func (p *Pinger) FirstReplyAfter(t time.Time) (Reply, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.replies {
		if !r.Sent.Before(t) {
			return r, true
		}
	}
	return Reply{}, false
}

// WaitReplyAfter waits for the first reply to a request sent at or after t and returns the time
// from t to that reply's arrival.
func (p *Pinger) WaitReplyAfter(ctx context.Context, t time.Time) (time.Duration, error) {
	for {
		if r, ok := p.FirstReplyAfter(t); ok {
			return r.Recv.Sub(t), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no ping reply from %s after %s: %w", p.Target, t.Format("15:04:05.000"), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Counts returns how many requests were sent and how many got replies.
func (p *Pinger) Counts() (sent, received int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent, len(p.replies)
}

// LongestGap returns the longest time between two consecutive replies after t (an outage as the
// client saw it) and the count of replies after t.
func (p *Pinger) LongestGap(t time.Time) (time.Duration, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var gap time.Duration
	prev := t
	n := 0
	for _, r := range p.replies {
		if r.Recv.Before(t) {
			continue
		}
		n++
		if d := r.Recv.Sub(prev); d > gap {
			gap = d
		}
		prev = r.Recv
	}
	return gap, n
}

// Ping sends echo requests to ip every 100 ms until one is answered or timeout passes.
func (h *Host) Ping(ip netip.Addr, timeout time.Duration) error {
	p, err := h.StartPinger(ip, 100*time.Millisecond)
	if err != nil {
		return err
	}
	defer p.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := p.WaitReplyAfter(ctx, time.Time{}); err != nil {
		return fmt.Errorf("%s: ping %s: %w", h.Name, ip, err)
	}
	return nil
}

// Outage returns the longest time the client went without a reply between from and to: gaps
// between consecutive replies, the first one measured from the last reply before from (so a
// graceful handover, where the old holder answers for a while after from, counts only the
// real gap). Replies are taken by arrival time.
func (p *Pinger) Outage(from, to time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := from
	for _, r := range p.replies {
		if !r.Recv.After(from) && r.Recv.After(from.Add(-time.Second)) {
			prev = r.Recv
		}
	}
	var gap time.Duration
	for _, r := range p.replies {
		if !r.Recv.After(from) || r.Recv.After(to) {
			continue
		}
		if d := r.Recv.Sub(prev); d > gap {
			gap = d
		}
		prev = r.Recv
	}
	return gap
}
