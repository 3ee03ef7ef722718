package faults

import (
	"fmt"
	"time"
)

// Tolerances for "gossip on is never worse than gossip off": the same fault run twice in the
// same mode differs by about one sample and one advert interval; gossip must not add more.
const (
	TolTime = 300 * time.Millisecond // plus a quarter of the gossip-off figure
	// Failed requests are compared as a share of the requests sent (a loaded machine sends
	// fewer): gossip on may fail at most 1.5 x the gossip-off share plus 8 requests (0.16 s of the stream); the
	// share is noisy while the VIP sits on two hosts and ARP decides who answers.
	TolFailedFactor = 1.5
	TolFailed       = 8
	// MaxTwoHoldersWithGossip bounds how long the VIP may stay on two hosts with gossip on when
	// VRRP is blocked (split brain detected and resolved by resign-lower; the target is 2 s).
	MaxTwoHoldersWithGossip = 2500 * time.Millisecond
)

// Healed lists what is wrong with a run of f, whatever the mode: after every fault heals,
// exactly one host must be MASTER and hold the VIP; where lb1 is gone until the heal
// (f.Takeover), lb2 must have taken over with exactly one transition.
func Healed(f Fault, r Result) []string {
	var p []string
	if f.Takeover && r.DuringFault["lb2"] != 1 {
		p = append(p, fmt.Sprintf("%s: lb2 made %d VRRP transitions while lb1 was gone, want exactly 1 (BACKUP -> MASTER)", r.Mode, r.DuringFault["lb2"]))
	}
	if r.FinalMasters != 1 {
		p = append(p, fmt.Sprintf("%s: %d daemons MASTER after the heal, want 1", r.Mode, r.FinalMasters))
	}
	if len(r.FinalHolders) != 1 {
		p = append(p, fmt.Sprintf("%s: VIP held by %v after the heal, want exactly one host", r.Mode, r.FinalHolders))
	}
	for h, n := range r.Transitions {
		if n < 0 {
			p = append(p, fmt.Sprintf("%s: %s's log could not be read", r.Mode, h))
		}
	}
	return p
}

// Compare lists where gossip on did worse than gossip off for fault f: more transitions on a
// host, longer without a holder, longer on two hosts, a later settle, more failed requests;
// for faults gossip is there to help (GossipHelps), less time on two hosts is required.
func Compare(f Fault, off, on Result) []string {
	var p []string
	p = append(p, Healed(f, off)...)
	p = append(p, Healed(f, on)...)
	for _, h := range []string{"lb1", "lb2"} {
		allowed := off.Transitions[h]
		if f.GossipHelps && h == "lb2" {
			allowed++ // resign-lower: MASTER -> FAULT -> BACKUP instead of MASTER -> BACKUP
		}
		if on.Transitions[h] > allowed {
			p = append(p, fmt.Sprintf("%s: %d VRRP transitions with gossip on, %d with gossip off", h, on.Transitions[h], off.Transitions[h]))
		}
	}
	worse := func(what string, a, b time.Duration) {
		if b > a+TolTime+a/4 {
			p = append(p, fmt.Sprintf("%s: %s with gossip on, %s with gossip off", what, b.Round(time.Millisecond), a.Round(time.Millisecond)))
		}
	}
	worse("VIP on no host", off.NoHolder, on.NoHolder)
	worse("settle", off.Settle, on.Settle)
	if f.GossipHelps {
		if on.TwoHolders > MaxTwoHoldersWithGossip || on.TwoHolders >= off.TwoHolders {
			p = append(p, fmt.Sprintf("VIP on two hosts: %s with gossip on (want < %s and less than without), %s with gossip off",
				on.TwoHolders.Round(time.Millisecond), MaxTwoHoldersWithGossip, off.TwoHolders.Round(time.Millisecond)))
		}
	} else {
		worse("VIP on two hosts", off.TwoHolders, on.TwoHolders)
	}
	if on.Requests > 0 && off.Requests > 0 {
		share := func(r Result) float64 { return float64(r.Failed) / float64(r.Requests) }
		if share(on) > TolFailedFactor*share(off)+TolFailed/float64(on.Requests) {
			p = append(p, fmt.Sprintf("failed requests: %d of %d with gossip on, %d of %d with gossip off",
				on.Failed, on.Requests, off.Failed, off.Requests))
		}
	}
	return p
}
