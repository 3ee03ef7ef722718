// Package faults runs the LB fault matrix: a pair of vipd (lb1 priority 100, the master; lb2
// priority 90) in a netns lab in front of a TLS kube-apiserver stand-in, a client sending a
// new TLS request through the VIP every 20 ms, and one fault at a time injected into the pair
// (power loss, crash, SIGKILL, SIGTERM, link flaps, VRRP or gossip blocked one way or both, a
// frozen process), with gossip off and with gossip on (split_brain: resign-lower). For each
// run it measures what a user would: how long until exactly one host holds the VIP for good,
// the VRRP transitions on each host, how long the VIP was on no host and on two, and the
// failed requests. test/e2e asserts on it (gossip must never make a fault worse); bench/faults
// prints the table.
package faults

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vipd-project/vipd/test/apiserverstub"
	"github.com/vipd-project/vipd/test/lab"
)

// Mode is what runs on the LB hosts and how it is configured.
type Mode struct {
	Name   string
	Gossip bool // vipd with cluster.enabled and split_brain: resign-lower
	// Keepalived runs the reference pair (Keepalived + HAProxy) instead of vipd.
	Keepalived bool
}

// The modes: the two the matrix compares, and the baseline the benchmark adds.
var (
	GossipOff  = Mode{Name: "gossip off"}
	GossipOn   = Mode{Name: "gossip on", Gossip: true}
	Keepalived = Mode{Name: "keepalived", Keepalived: true}
)

// Env is the lab: lb1, lb2, a master m1 running the apiserver stand-in (and m2 when the lab
// has it: the day-2 benchmark drains one of two masters), and a client.
type Env struct {
	Lab      *lab.Lab
	LB1, LB2 *lab.Host
	Client   *lab.Host
	VIP      netip.Addr
	Bin      string
	Masters  *apiserverstub.Masters
	// MasterHosts run the stand-ins: m1, and m2 when the lab has it.
	MasterHosts []*lab.Host
	// D1 and D2 run on lb1 (priority 100, the master) and lb2 (90).
	D1, D2 Daemon
	mode   *Mode
	key    []byte
	probes map[*lab.Host]*lab.AddrProbe
	cut    sync.Map // *lab.Host -> true while its port is down
}

// LabOptions are the hosts the matrix needs: build the lab with lab.New (tests) or lab.Start.
func LabOptions() lab.Options {
	return lab.Options{Hosts: []string{"lb1", "lb2", "m1", "client"}, Prefix: lab.RandomPrefix("vf")}
}

// NewEnv starts the stand-in master in l (built from LabOptions); the pair is started by
// Start or Run.
func NewEnv(ctx context.Context, l *lab.Lab, bin string) (*Env, error) {
	e := &Env{Lab: l, LB1: l.Host("lb1"), LB2: l.Host("lb2"), Client: l.Host("client"), VIP: l.Addr(100), Bin: bin,
		probes: map[*lab.Host]*lab.AddrProbe{}}
	e.key = make([]byte, 32)
	if _, err := rand.Read(e.key); err != nil {
		return nil, err
	}
	// The client follows a gratuitous ARP at once, as a busy client's neighbour entry would.
	if err := e.Client.NoNeighLocktime(); err != nil {
		return nil, err
	}
	var err error
	for _, name := range []string{"m1", "m2"} {
		if h := l.Host(name); h != nil {
			e.MasterHosts = append(e.MasterHosts, h)
		}
	}
	e.Masters, err = apiserverstub.StartMasters(ctx, l, e.MasterHosts, []net.IP{e.VIP.AsSlice()})
	if err != nil {
		return nil, err
	}
	for _, h := range []*lab.Host{e.LB1, e.LB2} {
		p, err := h.AddrProbe()
		if err != nil {
			return nil, err
		}
		e.probes[h] = p
		l.OnClose(p.Close)
	}
	return e, nil
}

// yaml is the host's vipd config as bootstrap renders it: VRRPv3 with 200 ms adverts (vipd's
// default) to the other LB host as unicast peer, the proxy to m1 with HTTPS /readyz checks, and
// in gossip mode the cluster section (resign-lower, conn_reset on).
func (e *Env) yaml(h *lab.Host, mode Mode) (lab.VipdOptions, error) {
	prio, peer := 100, e.LB2
	if h == e.LB2 {
		prio, peer = 90, e.LB1
	}
	extra := fmt.Sprintf(`proxy:
  listen: ":6443"
  backends:
%s  connect_timeout: 1s
health:
  type: https
  path: /readyz
  interval: 500ms
  tls:
    insecure_skip_verify: true
`, backendsYAML(e.Backends()))
	if mode.Gossip {
		keyFile := filepath.Join(e.Lab.Dir, h.Name+"-gossip.key")
		if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(e.key)+"\n"), 0o600); err != nil {
			return lab.VipdOptions{}, err
		}
		extra += fmt.Sprintf(`cluster:
  enabled: true
  bind: "%s:7946"
  peers:
    - %s:7946
  key_file: %s
  split_brain: resign-lower
  conn_reset: true
`, h.Addr, peer.Addr, keyFile)
	}
	// Unicast peers, as bootstrap renders them for the LB hosts it knows.
	return lab.VipdOptions{Bin: e.Bin, VIP: e.VIP, Priority: prio, LogLevel: "info", ExtraYAML: extra,
		UnicastPeers: []netip.Addr{peer.Addr}}, nil
}

// Start (re)starts the pair in mode: lb1 until it is MASTER, then lb2, and waits for Steady.
func (e *Env) Start(ctx context.Context, mode Mode) error {
	e.Stop()
	e.mode = &mode
	for _, h := range []*lab.Host{e.LB1, e.LB2} {
		d, err := e.startDaemon(h, mode)
		if err != nil {
			return err
		}
		if h == e.LB1 {
			e.D1 = d
			if err := e.waitState(ctx, d, "MASTER", 20*time.Second); err != nil {
				return err
			}
		} else {
			e.D2 = d
		}
	}
	return e.Steady(ctx, 30*time.Second)
}

func (e *Env) startDaemon(h *lab.Host, mode Mode) (Daemon, error) {
	if mode.Keepalived {
		prio, state := 100, "MASTER"
		if h == e.LB2 {
			prio, state = 90, "BACKUP"
		}
		return startKeepalivedHAProxy(h, lab.KeepalivedOptions{VIP: e.VIP, Priority: prio, State: state}, e.Backends())
	}
	o, err := e.yaml(h, mode)
	if err != nil {
		return nil, err
	}
	v, err := h.StartVipd(o)
	if err != nil {
		return nil, err
	}
	return vipdDaemon{v}, nil
}

// Stop kills both pairs' daemons (by PID) and removes the VIP they may have left.
func (e *Env) Stop() {
	for _, d := range []Daemon{e.D1, e.D2} {
		if d != nil {
			_ = d.Kill()
		}
	}
	for _, h := range []*lab.Host{e.LB1, e.LB2} {
		_, _ = h.Exec(context.Background(), "ip", "addr", "del", lab.Prefix24(e.VIP), "dev", "eth0")
	}
	e.D1, e.D2 = nil, nil
}

func (e *Env) waitState(ctx context.Context, d Daemon, want string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last string
	for {
		if s, err := d.State(ctx); err == nil {
			last = s
			if last == want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("VRRP state %q, want %s after %s\n%s", last, want, within, d.Tail(30))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Steady waits until the pair is as it should be before a fault: both daemons running, lb1
// MASTER and the only VIP holder, lb2 BACKUP, and in gossip mode both members alive with no
// alarm.
func (e *Env) Steady(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	// Steady for longer than the backup's master-down interval: a backup that just started
	// and has not yet heard (or trusted) the master's adverts looks steady until then.
	hold := 1500 * time.Millisecond
	if e.mode != nil && e.mode.Keepalived {
		hold = 4500 * time.Millisecond
	}
	var since time.Time
	for {
		why := e.notSteady(ctx)
		switch {
		case why != "":
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= hold:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pair not steady after %s: %s\nlb1:\n%s\nlb2:\n%s", within, e.notSteady(context.Background()), tail(e.D1), tail(e.D2))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (e *Env) notSteady(ctx context.Context) string {
	for _, d := range []Daemon{e.D1, e.D2} {
		if d == nil || !d.Running() {
			return "a daemon is not running"
		}
	}
	s1, err := e.D1.State(ctx)
	if err != nil {
		return err.Error()
	}
	s2, err := e.D2.State(ctx)
	if err != nil {
		return err.Error()
	}
	if s1 != "MASTER" || s2 != "BACKUP" {
		return fmt.Sprintf("lb1 %s, lb2 %s", s1, s2)
	}
	if h := e.Holders(); len(h) != 1 || h[0] != "lb1" {
		return fmt.Sprintf("VIP holders %v", h)
	}
	if e.mode != nil && e.mode.Gossip {
		for _, d := range []Daemon{e.D1, e.D2} {
			s, err := d.(vipdDaemon).v.Stats(ctx)
			if err != nil {
				return err.Error()
			}
			if why := clusterHealthy(s); why != "" {
				return s.Node + ": " + why
			}
		}
	}
	return ""
}

// Holders lists the LB hosts that hold the VIP now as the network sees it: the address is on
// eth0 and the host's port is up (a host whose cable is cut, or that lost power, answers for
// nothing, whatever its interface still says).
func (e *Env) Holders() []string {
	var hs []string
	for _, h := range []*lab.Host{e.LB1, e.LB2} {
		if _, down := e.cut.Load(h); down {
			continue
		}
		if ok, err := e.probes[h].Has(e.VIP); err == nil && ok {
			hs = append(hs, h.Name)
		}
	}
	return hs
}

// LinkDown unplugs h's port (see Holders).
func (e *Env) LinkDown(h *lab.Host) error {
	e.cut.Store(h, true)
	return h.LinkDown()
}

// LinkUp plugs h's port in again.
func (e *Env) LinkUp(h *lab.Host) error {
	if err := h.LinkUp(); err != nil {
		return err
	}
	e.cut.Delete(h)
	return nil
}

func tail(d Daemon) string {
	if d == nil {
		return "(not started)"
	}
	return d.Tail(20)
}

// Backends are the masters' apiserver addresses, m1 first.
func (e *Env) Backends() []string {
	var out []string
	for _, h := range e.MasterHosts {
		out = append(out, e.Masters.Addr(h.Name))
	}
	return out
}

func backendsYAML(bs []string) string {
	var b strings.Builder
	for _, a := range bs {
		fmt.Fprintf(&b, "    - %s\n", a)
	}
	return b.String()
}
