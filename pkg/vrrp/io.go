package vrrp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The router's effects on the link: adverts out and in, the VIPs on the interface, announcements.

// Announce asks for a gratuitous ARP burst now if we are master (no-op
// otherwise), e.g. when the gossip layer saw a split brain end.
func (r *Router) Announce() {
	select {
	case r.annReq <- struct{}{}:
	default:
	}
}

// apply performs the machine's actions.
func (r *Router) apply(now time.Time, acts []Action) {
	for _, a := range acts {
		switch a.Kind {
		case ActSendAdvert:
			r.sendAdvert(a.Priority)
		case ActAcquire:
			if err := r.vip.add(); err != nil {
				r.log.Error("add VIP", "error", err)
			}
			r.mu.Lock()
			r.st.HoldsVIP = true
			r.mu.Unlock()
			r.ann.burst()
		case ActRelease:
			r.release()
		case ActAnnounce:
			r.ann.burst()
		case ActStateChange:
			r.stateChange(now, a)
		}
	}
	r.mu.Lock()
	r.st.MasterAddr = r.m.MasterAddr()
	r.st.MasterAdvertInterval = r.m.MasterAdverInterval()
	r.mu.Unlock()
}

// ensureVIP puts back VIPs someone removed while we are master.
func (r *Router) ensureVIP() {
	have, err := r.vip.present()
	if err != nil {
		r.log.Warn("check VIPs", "error", err)
		return
	}
	if len(have) == len(r.vip.vips) {
		return
	}
	r.log.Warn("VIP missing while master (removed by someone else?); adding it again", "have", have, "want", r.vip.vips)
	if err := r.vip.add(); err != nil {
		r.log.Error("add VIP", "error", err)
	}
}

func (r *Router) release() {
	r.ann.stop()
	if err := r.vip.del(); err != nil {
		r.log.Error("remove VIP", "error", err)
	}
	r.mu.Lock()
	r.st.HoldsVIP = false
	r.mu.Unlock()
}

func (r *Router) stateChange(now time.Time, a Action) {
	r.mu.Lock()
	r.st.State = a.To
	r.st.Since = now
	r.st.Transitions = append(r.st.Transitions, Transition{From: a.From, To: a.To, At: now, Reason: a.Reason})
	r.st.TransitionsTotal++
	if n := len(r.st.Transitions); n > maxTransitions {
		r.st.Transitions = append(r.st.Transitions[:0:0], r.st.Transitions[n-maxTransitions:]...)
	}
	fns := append(([]func(from, to State))(nil), r.onChange...)
	r.mu.Unlock()
	lvl := slog.LevelInfo
	if a.To == StateFault {
		lvl = slog.LevelWarn
	}
	r.log.Log(context.Background(), lvl, "VRRP state change", "from", a.From.String(), "to", a.To.String(), "reason", a.Reason, "priority", r.m.Priority())
	for _, fn := range fns {
		fn(a.From, a.To)
	}
	r.notify()
}

func (r *Router) sendAdvert(prio uint8) {
	r.mu.Lock()
	cfg := r.cfg
	r.mu.Unlock()
	p := Packet{Version: cfg.Version, Type: TypeAdvertisement, VRID: cfg.VRID, Priority: prio, AdvertInterval: cfg.AdvertInterval}
	if cfg.Version == 2 && cfg.AuthPass != "" {
		p.AuthType, p.AuthData = AuthPass, PassData(cfg.AuthPass)
	}
	p.Addrs = make([]netip.Addr, 0, len(cfg.VIPs))
	for _, v := range cfg.VIPs {
		p.Addrs = append(p.Addrs, v.Addr())
	}
	dsts := cfg.UnicastPeers
	if len(dsts) == 0 {
		dsts = []netip.Addr{MulticastGroup}
	}
	var seq uint64
	if r.signer != nil {
		seq = r.signer.next(time.Now()) // one per advert: the copies to each peer carry the same
	}
	for _, dst := range dsts {
		b, err := p.AppendMarshal(r.sendBuf[:0], r.primary, dst)
		if err != nil {
			r.log.Error("marshal advert", "error", err)
			return
		}
		if r.signer != nil {
			b = r.signer.appendTrailer(b, 0, cfg.Version, cfg.VRID, r.primary, seq)
		}
		r.sendBuf = b
		if err := r.conn.send(b, r.primary, dst); err != nil {
			r.sendErrs.drop(time.Now(), "send", dst, err)
			continue
		}
		r.advertsSent.Add(1)
	}
}

// receive reads packets until the socket is closed. Everything that is not
// a valid advert is counted and dropped here; valid adverts go to Run. A
// full queue drops (reason queue_full) instead of blocking the reader.
func (r *Router) receive(done chan struct{}) {
	defer close(done)
	buf := make([]byte, 4096)
	var p Packet
	var prev *rxFilter
	for {
		n, err := r.conn.read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) || errors.Is(err, unix.EBADF) {
				return
			}
			r.drops.drop(time.Now(), "read_error", netip.Addr{}, err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		now := time.Now()
		f := r.rx.Load()
		if f != prev {
			f.inherit(prev) // Reconfigure replaced it: keep the replay marks
			prev = f
		}
		h, reason, err := f.check(buf[:n], &p)
		if reason != "" {
			r.drops.drop(now, reason, h.Src, err)
			continue
		}
		var weak string
		if r.tap != nil {
			var ok bool
			if ok, weak = r.sourceMACOK(now, buf[:n], h.Src); !ok {
				continue
			}
		}
		select {
		case r.advCh <- rxAdvert{at: now, src: h.Src, priority: p.Priority, interval: p.AdvertInterval, weak: weak}:
		default:
			r.drops.drop(now, "queue_full", h.Src, errors.New("advert queue full"))
		}
	}
}
