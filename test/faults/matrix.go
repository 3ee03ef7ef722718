package faults

import (
	"encoding/json"
	"fmt"
	"syscall"
	"time"

	"github.com/vipd-project/vipd/pkg/stats"
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
}

const (
	vrrpMatch   = "ip protocol 112"
	gossipMatch = "meta l4proto { tcp, udp } th dport 7946"
)

func restart(v *lab.Vipd) error {
	if v.Running() {
		return nil
	}
	return v.Restart()
}

// exited waits for the daemon to exit; its exit status (killed, or 0 after SIGTERM) is not an
// error here.
func exited(v *lab.Vipd, within time.Duration) error {
	if err := v.Wait(within); err != nil && v.Running() {
		return err
	}
	return nil
}

func kill(v *lab.Vipd) error {
	v.Kill()
	return exited(v, 5*time.Second)
}

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
		{Name: "power loss (port down, then kill)", Hold: 3 * time.Second,
			Inject: func(e *Env) error {
				if err := e.LinkDown(e.LB1); err != nil {
					return err
				}
				return kill(e.V1)
			},
			Heal: func(e *Env) error {
				if err := e.LinkUp(e.LB1); err != nil {
					return err
				}
				return restart(e.V1)
			}},
		{Name: "crash (kill, then port down)", Hold: 3 * time.Second,
			Inject: func(e *Env) error {
				if err := kill(e.V1); err != nil {
					return err
				}
				return e.LinkDown(e.LB1)
			},
			Heal: func(e *Env) error {
				if err := e.LinkUp(e.LB1); err != nil {
					return err
				}
				return restart(e.V1)
			}},
		{Name: "vipd SIGKILL", Hold: 3 * time.Second,
			Inject: func(e *Env) error { return kill(e.V1) },
			Heal:   func(e *Env) error { return restart(e.V1) }},
		{Name: "vipd SIGTERM", Hold: 3 * time.Second,
			Inject: func(e *Env) error {
				if err := e.V1.Term(); err != nil {
					return err
				}
				return exited(e.V1, 10*time.Second)
			},
			Heal: func(e *Env) error { return restart(e.V1) }},
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
		{Name: "gossip blocked one way (lb1 -> lb2)", Hold: 4 * time.Second,
			Inject: func(e *Env) error { return e.LB2.DropIn(gossipMatch) },
			Heal:   func(e *Env) error { return undrop(e.LB2) }},
		{Name: "gossip blocked both ways", Hold: 4 * time.Second,
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
			Inject: func(e *Env) error { return e.V1.Signal(syscall.SIGSTOP) },
			Heal:   func(e *Env) error { return e.V1.Signal(syscall.SIGCONT) }},
	}
}

// clusterHealthy says why a daemon's gossip view is not healthy ("" if it is): two members
// alive, no alarm.
func clusterHealthy(s *lab.Stats) string {
	var snap stats.Snapshot
	if err := json.Unmarshal(s.Raw, &snap); err != nil {
		return "decode /stats.json: " + err.Error()
	}
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
