package faults

import (
	"fmt"
	"time"

	"github.com/vipd-project/vipd/test/lab"
)

// Fault is one thing that happens to the pair, always starting at the master lb1 (or between
// the two hosts): Inject at t0, Heal after Hold.
type Fault struct {
	Name string
	// Hold is how long the fault lasts before Heal: longer than the detection bounds involved
	// (StaleAfter 1.5 s, split brain hold, MinResign 2 s), so a detector acting on the fault
	// shows in the run.
	Hold   time.Duration
	Inject func(e *Env) error
	Heal   func(e *Env) error
	// GossipHelps marks faults gossip is there to make better (blocked VRRP: one VIP holder
	// instead of two): for them the comparison requires gossip on to be strictly better at
	// "time on two hosts".
	GossipHelps bool
	// GossipOnly marks faults that only concern vipd's gossip (not run for Keepalived).
	GossipOnly bool
	// Takeover marks faults where lb1 is gone until the heal: the backup must take over with
	// exactly one transition (BACKUP -> MASTER) and keep the VIP (issue 8's crash).
	Takeover bool
}

// HoldFor is how long the fault lasts in mode: the reference's Keepalived (advert_int 1)
// needs 3.6 s instead of 0.6 s to notice a dead master, so its faults last 3 s longer.
func (f Fault) HoldFor(m Mode) time.Duration {
	if m.Keepalived {
		return f.Hold + 3*time.Second
	}
	return f.Hold
}

const (
	vrrpMatch   = "ip protocol 112"
	gossipMatch = "meta l4proto { tcp, udp } th dport 7946"
)

func undrop(hs ...*lab.Host) error {
	for _, h := range hs {
		if err := h.Undrop(); err != nil {
			return err
		}
	}
	return nil
}

// Matrix is every fault of issue 8, in the order they run.
func Matrix() []Fault {
	return []Fault{
		{Name: "power loss (port down, then kill)", Hold: 3 * time.Second, Takeover: true,
			Inject: func(e *Env) error {
				// A host that loses power does nothing more: freeze the daemon first so it
				// cannot react to the port going down before it dies.
				if err := e.D1.Freeze(true); err != nil {
					return err
				}
				if err := e.LinkDown(e.LB1); err != nil {
					return err
				}
				return e.D1.Kill()
			},
			Heal: func(e *Env) error {
				if err := e.LinkUp(e.LB1); err != nil {
					return err
				}
				return e.D1.Restart()
			}},
		{Name: "crash (kill, then port down)", Hold: 3 * time.Second, Takeover: true,
			Inject: func(e *Env) error {
				if err := e.D1.Kill(); err != nil {
					return err
				}
				return e.LinkDown(e.LB1)
			},
			Heal: func(e *Env) error {
				if err := e.LinkUp(e.LB1); err != nil {
					return err
				}
				return e.D1.Restart()
			}},
		{Name: "daemon SIGKILL", Hold: 3 * time.Second, Takeover: true,
			Inject: func(e *Env) error { return e.D1.Kill() },
			Heal:   func(e *Env) error { return e.D1.Restart() }},
		{Name: "daemon SIGTERM", Hold: 3 * time.Second, Takeover: true,
			Inject: func(e *Env) error { return e.D1.Term() },
			Heal:   func(e *Env) error { return e.D1.Restart() }},
		{Name: "link flap 0.5s", Hold: 500 * time.Millisecond,
			Inject: func(e *Env) error { return e.LinkDown(e.LB1) },
			Heal:   func(e *Env) error { return e.LinkUp(e.LB1) }},
		{Name: "link flap 3s", Hold: 3 * time.Second,
			Inject: func(e *Env) error { return e.LinkDown(e.LB1) },
			Heal:   func(e *Env) error { return e.LinkUp(e.LB1) }},
		{Name: "VRRP blocked one way (lb1 -> lb2)", Hold: 5 * time.Second, GossipHelps: true,
			Inject: func(e *Env) error { return e.LB2.DropIn(vrrpMatch) },
			Heal:   func(e *Env) error { return undrop(e.LB2) }},
		{Name: "VRRP blocked both ways", Hold: 5 * time.Second, GossipHelps: true,
			Inject: func(e *Env) error {
				if err := e.LB1.Drop(vrrpMatch); err != nil {
					return err
				}
				return e.LB2.Drop(vrrpMatch)
			},
			Heal: func(e *Env) error { return undrop(e.LB1, e.LB2) }},
		{Name: "gossip blocked one way (lb1 -> lb2)", Hold: 4 * time.Second, GossipOnly: true,
			Inject: func(e *Env) error { return e.LB2.DropIn(gossipMatch) },
			Heal:   func(e *Env) error { return undrop(e.LB2) }},
		{Name: "gossip blocked both ways", Hold: 4 * time.Second, GossipOnly: true,
			Inject: func(e *Env) error {
				if err := e.LB1.Drop(gossipMatch); err != nil {
					return err
				}
				return e.LB2.Drop(gossipMatch)
			},
			Heal: func(e *Env) error { return undrop(e.LB1, e.LB2) }},
		{Name: "gossip and VRRP blocked, then healed", Hold: 4 * time.Second,
			Inject: func(e *Env) error {
				for _, h := range []*lab.Host{e.LB1, e.LB2} {
					if err := h.Drop(vrrpMatch); err != nil {
						return err
					}
					if err := h.Drop(gossipMatch); err != nil {
						return err
					}
				}
				return nil
			},
			Heal: func(e *Env) error { return undrop(e.LB1, e.LB2) }},
		{Name: "frozen 2s (SIGSTOP, SIGCONT)", Hold: 2 * time.Second,
			Inject: func(e *Env) error { return e.D1.Freeze(true) },
			Heal:   func(e *Env) error { return e.D1.Freeze(false) }},
	}
}

// clusterHealthy says why a daemon's gossip view is not healthy ("" if it is): two members
// alive, no alarm.
func clusterHealthy(s *lab.Stats) string {
	snap := s.Snapshot
	if snap.Cluster == nil {
		return "no cluster section"
	}
	alive := 0
	for _, m := range snap.Cluster.Members {
		if m.Alive || m.Self {
			alive++
		}
	}
	if alive != 2 {
		return fmt.Sprintf("%d members alive", alive)
	}
	if len(snap.Cluster.Alarms) > 0 {
		return fmt.Sprintf("alarm %s: %s", snap.Cluster.Alarms[0].Kind, snap.Cluster.Alarms[0].Message)
	}
	return ""
}
