package vrrp

import (
	"net/netip"
	"time"
)

// announcer sends gratuitous ARP bursts in its own goroutine so the
// election loop never waits for them. stop is synchronous: once it returns
// no further GARP leaves until the next burst (no GARP after the VIP is
// released).
type announcer struct {
	r    *Router
	cmds chan annCmd
	quit chan struct{}
	done chan struct{}
}

type annKind int

const (
	annBurst annKind = iota
	annRefresh
	annStop
	annConfigure
)

type annCmd struct {
	kind     annKind
	count    int
	interval time.Duration
	ack      chan struct{}
}

func newAnnouncer(r *Router) *announcer {
	return &announcer{r: r, cmds: make(chan annCmd), quit: make(chan struct{}), done: make(chan struct{})}
}

func (a *announcer) send(c annCmd) {
	select {
	case a.cmds <- c:
	case <-a.done:
	}
}

func (a *announcer) burst()   { a.send(annCmd{kind: annBurst}) }
func (a *announcer) refresh() { a.send(annCmd{kind: annRefresh}) }
func (a *announcer) configure(count int, interval time.Duration) {
	a.send(annCmd{kind: annConfigure, count: count, interval: interval})
}

func (a *announcer) stop() {
	ack := make(chan struct{})
	a.send(annCmd{kind: annStop, ack: ack})
	select {
	case <-ack:
	case <-a.done:
	}
}

func (a *announcer) shutdown() {
	close(a.quit)
	<-a.done
}

func (a *announcer) run() {
	defer close(a.done)
	a.r.mu.Lock()
	count, interval := a.r.cfg.GARPCount, a.r.cfg.GARPInterval
	var ips []netip.Addr
	for _, v := range a.r.cfg.VIPs {
		ips = append(ips, v.Addr())
	}
	a.r.mu.Unlock()
	remaining := 0
	t := time.NewTimer(time.Hour)
	t.Stop()
	fire := func() {
		if a.r.garp == nil {
			return
		}
		n, err := a.r.garp.send(ips)
		a.r.garpsSent.Add(uint64(n))
		if err != nil {
			a.r.sendErrs.drop(time.Now(), "garp", netip.Addr{}, err)
		}
	}
	for {
		select {
		case <-a.quit:
			t.Stop()
			return
		case c := <-a.cmds:
			switch c.kind {
			case annBurst:
				fire()
				remaining = count - 1
				if remaining > 0 {
					t.Reset(interval)
				}
			case annRefresh:
				if remaining == 0 {
					fire()
				}
			case annStop:
				remaining = 0
				t.Stop()
				close(c.ack)
			case annConfigure:
				count, interval = c.count, c.interval
			}
		case <-t.C:
			if remaining > 0 {
				fire()
				remaining--
				if remaining > 0 {
					t.Reset(interval)
				}
			}
		}
	}
}
