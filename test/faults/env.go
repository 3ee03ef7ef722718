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
	"sync"
	"time"

	"github.com/vipd-project/vipd/test/apiserverstub"
	"github.com/vipd-project/vipd/test/lab"
)

// Mode is how the pair is configured.
type Mode struct {
	Name   string
	Gossip bool // cluster.enabled with split_brain: resign-lower
}

// The two modes the matrix compares.
var (
	GossipOff = Mode{Name: "gossip off"}
	GossipOn  = Mode{Name: "gossip on", Gossip: true}
)

// Env is the lab: lb1, lb2, a master m1 running the apiserver stand-in, and a client.
type Env struct {
	Lab      *lab.Lab
	LB1, LB2 *lab.Host
	Client   *lab.Host
	VIP      netip.Addr
	Bin      string
	Masters  *apiserverstub.Masters
	V1, V2   *lab.Vipd
	mode     *Mode
	key      []byte
	probes   map[*lab.Host]*lab.AddrProbe
	cut      sync.Map // *lab.Host -> true while its port is down
}

// NewEnv builds the lab (closed with t) and starts the stand-in master; vipd is started by
// Start.
func NewEnv(ctx context.Context, t lab.TB, bin string) (*Env, error) {
	l := lab.New(t, lab.Options{Hosts: []string{"lb1", "lb2", "m1", "client"}, Prefix: lab.RandomPrefix("vf")})
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
	e.Masters, err = apiserverstub.StartMasters(ctx, l, []*lab.Host{l.Host("m1")}, []net.IP{e.VIP.AsSlice()})
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

// yaml is the host's vipd config: VRRPv3 with 200 ms adverts (vipd's default), the proxy to
// m1 with HTTPS /readyz checks, and in gossip mode the cluster section bootstrap writes
// (resign-lower, conn_reset on).
func (e *Env) yaml(h *lab.Host, mode Mode) (lab.VipdOptions, error) {
	prio, peer := 100, e.LB2
	if h == e.LB2 {
		prio, peer = 90, e.LB1
	}
	extra := fmt.Sprintf(`proxy:
  listen: ":6443"
  backends:
    - %s
  connect_timeout: 1s
health:
  type: https
  path: /readyz
  interval: 500ms
  tls:
    insecure_skip_verify: true
`, e.Masters.Addr("m1"))
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
	return lab.VipdOptions{Bin: e.Bin, VIP: e.VIP, Priority: prio, LogLevel: "info", ExtraYAML: extra}, nil
}

// Start (re)starts both vipd in mode: lb1 until it is MASTER, then lb2, and waits for Steady.
func (e *Env) Start(ctx context.Context, mode Mode) error {
	e.Stop()
	e.mode = &mode
	for _, h := range []*lab.Host{e.LB1, e.LB2} {
		o, err := e.yaml(h, mode)
		if err != nil {
			return err
		}
		v, err := h.StartVipd(o)
		if err != nil {
			return err
		}
		if h == e.LB1 {
			e.V1 = v
			if err := e.waitState(ctx, v, "MASTER", 20*time.Second); err != nil {
				return err
			}
		} else {
			e.V2 = v
		}
	}
	return e.Steady(ctx, 30*time.Second)
}

// Stop kills both daemons (by PID) and removes the VIP they may have left.
func (e *Env) Stop() {
	for _, v := range []*lab.Vipd{e.V1, e.V2} {
		if v != nil && v.Running() {
			v.Kill()
			_ = v.Wait(5 * time.Second)
			_, _ = v.Host.Exec(context.Background(), "ip", "addr", "del", lab.Prefix24(e.VIP), "dev", "eth0")
		}
	}
}

func (e *Env) waitState(ctx context.Context, v *lab.Vipd, want string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last string
	for {
		if s, err := v.Stats(ctx); err == nil {
			last = s.VRRP.State
			if last == want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: VRRP state %q, want %s after %s\n%s", v.Host.Name, last, want, within, v.Tail(30))
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
	why := ""
	for {
		why = e.notSteady(ctx)
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pair not steady after %s: %s\nlb1:\n%s\nlb2:\n%s", within, why, e.V1.Tail(20), e.V2.Tail(20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (e *Env) notSteady(ctx context.Context) string {
	for _, v := range []*lab.Vipd{e.V1, e.V2} {
		if v == nil || !v.Running() {
			return "a daemon is not running"
		}
	}
	s1, err := e.V1.Stats(ctx)
	if err != nil {
		return err.Error()
	}
	s2, err := e.V2.Stats(ctx)
	if err != nil {
		return err.Error()
	}
	if s1.VRRP.State != "MASTER" || s2.VRRP.State != "BACKUP" {
		return fmt.Sprintf("lb1 %s, lb2 %s", s1.VRRP.State, s2.VRRP.State)
	}
	if h := e.Holders(); len(h) != 1 || h[0] != "lb1" {
		return fmt.Sprintf("VIP holders %v", h)
	}
	if e.mode != nil && e.mode.Gossip {
		for _, s := range []*lab.Stats{s1, s2} {
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
