package vrrp

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// Planned handover and maintenance.
//
// A master that stops (SIGTERM) or enters maintenance hands the VIP over without a gap: it
// advertises priority 0 every advert interval (the backup takes over at once, RFC 5798's
// "shutdown" advert) but KEEPS the VIP, so the clients keep reaching a host, until it hears
// the new master's advert; only then does it remove the VIP. Removing it with the priority-0
// advert (RFC 5798, Keepalived, vipd before) left the VIP on no host until the backup had
// taken over (~70 ms here; ~1 s of failed requests with Keepalived's 1 s adverts), and the
// clients' SYNs in between were lost. The wait is bounded (HandoverBound): without a peer
// taking over, a stopping router gives the VIP up anyway (nothing better can happen), and a
// router entering maintenance keeps it and stays master (maintenance is refused: no one else
// can serve).
//
// Maintenance (hold) keeps the router BACKUP whatever it hears, including when the master
// goes silent, until it is lifted: the operator has taken the host out.

// resign is a handover in progress.
type resign struct {
	until   time.Time
	release bool // give the VIP up at until, or keep it
	reason  string
}

func (m *Machine) startResign(now time.Time, ev Event) []Action {
	if m.state != StateMaster || m.resign != nil {
		return nil
	}
	m.resign = &resign{until: now.Add(ev.Interval), release: ev.Release, reason: ev.Reason}
	m.pendingAnnounce = time.Time{}
	m.deadline = now.Add(m.cfg.AdvertInterval)
	return []Action{{Kind: ActSendAdvert, Priority: 0}}
}

// resignTimer: advertise priority 0 again, or end the wait.
func (m *Machine) resignTimer(now time.Time) []Action {
	if now.Before(m.deadline) {
		return nil
	}
	r := m.resign
	if now.Before(r.until) {
		m.deadline = now.Add(m.cfg.AdvertInterval)
		return []Action{{Kind: ActSendAdvert, Priority: 0}}
	}
	if r.release {
		// No one took over: give the VIP up anyway (the behaviour without a peer).
		acts := []Action{{Kind: ActRelease}}
		return m.toBackup(now, acts, r.reason+": no peer took over; VIP removed")
	}
	// Keep serving: assert ourselves again and re-announce (a peer may have started to).
	m.resign = nil
	m.lastForced = now
	m.deadline = now.Add(m.cfg.AdvertInterval)
	return []Action{{Kind: ActSendAdvert, Priority: m.prio}, {Kind: ActAnnounce}}
}

// resignAdvert: another router's advert while we hand over. A master's (priority > 0) ends the
// handover: it holds the VIP and the clients follow its gratuitous ARP, so ours goes.
func (m *Machine) resignAdvert(now time.Time, ev Event) []Action {
	if ev.Priority == 0 {
		return nil // another router giving up too: keep waiting
	}
	reason := m.resign.reason + ": handed over to " + ev.Src.String()
	acts := []Action{{Kind: ActRelease}}
	acts = m.toBackup(now, acts, reason)
	m.acceptMaster(now, ev)
	return acts
}

// setHold starts or ends maintenance.
func (m *Machine) setHold(now time.Time, hold bool) []Action {
	if hold == m.hold {
		return nil
	}
	m.hold = hold
	if !hold && m.state == StateBackup {
		// Take part again: a master's adverts keep us backup (or make us preempt it); with
		// no master we take over when the timer runs out.
		m.deadline = now.Add(m.MasterDownInterval())
	}
	return nil
}

// stayBackup is toMaster while held: the router stays (or becomes) BACKUP.
func (m *Machine) stayBackup(now time.Time, acts []Action, reason string) []Action {
	if m.state != StateBackup {
		return m.toBackup(now, acts, reason+" (maintenance: staying BACKUP)")
	}
	m.masterAddr = netip.Addr{} // the master went silent or resigned: none is known now
	m.deadline = now.Add(m.MasterDownInterval())
	return acts
}

// Held reports whether the machine is held BACKUP (maintenance).
func (m *Machine) Held() bool { return m.hold }

// HandoverBound is how long a planned handover waits for a peer to take over: three times the
// peer's master-down interval (3 x advert interval + skew), so a backup that misses one
// priority-0 advert still has time.
func (r *Router) HandoverBound() time.Duration {
	r.mu.Lock()
	iv := r.cfg.AdvertInterval
	r.mu.Unlock()
	return 3 * (3*iv + iv)
}

// peerExpected reports whether another router may take over: unicast peers are configured, or
// we have heard another router's advert.
func (r *Router) peerExpected() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cfg.UnicastPeers) > 0 || len(r.peers) > 0
}

// Handover hands the VIP to a peer without a gap (see above) and returns when the peer holds
// it (true), or when the bound passed or there is no peer to wait for (false). While it waits
// this router keeps the VIP, so the proxy must keep accepting. release says what happens
// when no peer took over: give the VIP up (stopping) or keep it and stay master. It does
// nothing and returns false when this router is not master.
func (r *Router) Handover(ctx context.Context, reason string, release bool) (bool, error) {
	if r.Status().State != StateMaster {
		return false, nil
	}
	if !r.peerExpected() {
		return false, nil
	}
	bound := r.HandoverBound()
	select {
	case r.do <- func(now time.Time) {
		r.apply(now, r.m.Handle(now, Event{Kind: EvResign, Interval: bound, Release: release, Reason: reason}))
	}:
	case <-r.done:
		return false, fmt.Errorf("vrrp: router stopped")
	case <-ctx.Done():
		return false, ctx.Err()
	}
	r.log.Info("handing the VIP over: priority-0 adverts, keeping the VIP until a peer is master", "reason", reason, "bound", bound)
	deadline := time.Now().Add(bound + time.Second)
	for {
		st := r.Status()
		if st.State != StateMaster {
			return st.MasterAddr.IsValid() && st.MasterAddr != r.primary, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-r.done:
			return false, nil
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// SetHold starts (true) or ends maintenance: held, the router stays BACKUP whatever it hears.
// It can be called before Run. Starting maintenance on a master does not move the VIP by
// itself: call Handover.
func (r *Router) SetHold(on bool) {
	r.hold.Store(on)
	r.kick() // reevaluate feeds it to the machine
}

// Held reports whether maintenance is on.
func (r *Router) Held() bool { return r.hold.Load() }
