// Command demo shows vipd's main job on a throw-away lab of network namespaces on this machine
// (run by `make demo`, as root): two load-balancer hosts elect who holds a virtual IP, the
// master crashes, the VIP moves and a client keeps reaching it. Everything it creates (the
// namespaces, the processes) is removed at the end, also on Ctrl-C.
//
// The demo is a list of steps (see steps in main); later features add steps there.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vipd-project/vipd/test/lab"
)

// demo is the state the steps share.
type demo struct {
	out    io.Writer
	bin    string
	advert time.Duration

	lab            *lab.Lab
	lb1, lb2       *lab.Host
	client         *lab.Host
	vip            netip.Addr
	vipd1, vipd2   *lab.Vipd
	master, backup *lab.Vipd
}

// step is one part of the demo; run returns an error to stop the demo.
type step struct {
	title string
	run   func(d *demo, ctx context.Context) error
}

func main() {
	bin := flag.String("vipd", "bin/vipd", "vipd binary (built by `make build`)")
	advert := flag.Duration("advert", 0, "VRRP advert interval (0: vipd's default)")
	flag.Parse()
	if err := run(*bin, *advert); err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "demo: interrupted")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run(bin string, advert time.Duration) error {
	if os.Geteuid() != 0 {
		return errors.New("run me as root (the lab uses network namespaces): sudo make demo")
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("vipd binary %s: %w (run `make build` first)", bin, err)
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	d := &demo{out: os.Stdout, bin: abs, advert: advert}

	// Ctrl-C cancels the steps; the signal stays caught until the lab is gone, so a second
	// Ctrl-C cannot leave namespaces behind.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		for range sigs {
			d.say("interrupted: cleaning up")
			cancel()
		}
	}()

	steps := []step{
		{"build the lab", (*demo).buildLab},
		{"start vipd on both LB hosts", (*demo).startVipd},
		{"who holds the VIP", (*demo).showHolder},
		{"crash the master", (*demo).crashMaster},
		{"bring the crashed host back", (*demo).bringBack},
	}
	defer d.cleanup()
	for i, s := range steps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(d.out, "\n[%d/%d] %s\n", i+1, len(steps), s.title)
		if err := s.run(d, ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: %w", s.title, err)
		}
	}
	fmt.Fprintln(d.out, "\ndone.")
	return nil
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "  "+format+"\n", args...)
}

func (d *demo) cleanup() {
	if d.lab == nil {
		return
	}
	fmt.Fprintln(d.out, "\ncleaning up")
	if err := d.lab.Close(); err != nil {
		d.say("cleanup: %v", err)
		return
	}
	d.say("processes ended, namespaces %s-* deleted", d.lab.Prefix)
}

func (d *demo) buildLab(ctx context.Context) error {
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (apt-get install iproute2 nftables)", tool)
		}
	}
	l, err := lab.Start(ctx, lab.Options{Hosts: []string{"lb1", "lb2", "client"}, Prefix: lab.RandomPrefix("vd")})
	if err != nil {
		return err
	}
	d.lab = l
	d.lb1, d.lb2, d.client = l.Host("lb1"), l.Host("lb2"), l.Host("client")
	d.vip = l.Addr(100)
	// Let the client's ARP cache take a gratuitous ARP at once (Linux ignores updates within
	// 1 s of the last change by default).
	if err := d.client.NoNeighLocktime(); err != nil {
		return err
	}
	d.say("namespaces %s-lb1, %s-lb2, %s-client on a bridge (in %s); no route out", l.Prefix, l.Prefix, l.Prefix, l.BridgeNS)
	for _, h := range l.Hosts() {
		mac, _ := h.MAC()
		d.say("%-6s %s  (MAC %s)", h.Name, h.Addr, mac)
	}
	d.say("VIP    %s", d.vip)
	return nil
}

func (d *demo) startVipd(ctx context.Context) error {
	var err error
	o := lab.VipdOptions{Bin: d.bin, VIP: d.vip, Priority: 100, Advert: d.advert, LogLevel: "info"}
	if d.vipd1, err = d.lb1.StartVipd(o); err != nil {
		return err
	}
	o.Priority = 90
	if d.vipd2, err = d.lb2.StartVipd(o); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	t0 := time.Now()
	for _, v := range []*lab.Vipd{d.vipd1, d.vipd2} {
		if err := v.WaitReady(wctx); err != nil {
			return err
		}
	}
	adv := d.advert.String()
	if st, err := d.vipd1.Stats(wctx); err == nil && d.advert == 0 {
		adv = st.Advert().String() + " (default)"
	}
	d.say("lb1: vipd priority 100, lb2: vipd priority 90; VRRPv3 multicast, VRID 51, adverts every %s", adv)
	d.say("config: %s", d.vipd1.ConfigPath)
	if _, err := d.vipd1.WaitState(wctx, "MASTER"); err != nil {
		return err
	}
	d.say("elected in %v", time.Since(t0).Round(10*time.Millisecond))
	return nil
}

// holders returns the LB hosts holding the VIP.
func (d *demo) holders() []string {
	var hs []string
	for _, h := range []*lab.Host{d.lb1, d.lb2} {
		if ok, _ := h.HasAddr(d.vip.String()); ok {
			hs = append(hs, h.Name)
		}
	}
	return hs
}

func (d *demo) describe(ctx context.Context) error {
	for _, v := range []*lab.Vipd{d.vipd1, d.vipd2} {
		if v == nil || !v.Running() {
			continue
		}
		st, err := v.Stats(ctx)
		if err != nil {
			return err
		}
		holds := "does not hold the VIP"
		if st.VRRP.HoldsVIP {
			holds = "holds the VIP"
		}
		d.say("%s: %-6s priority %d, %s", v.Host.Name, st.VRRP.State, st.VRRP.EffectivePriority, holds)
		if st.VRRP.State == "MASTER" {
			d.master = v
		} else {
			d.backup = v
		}
	}
	if err := d.client.Ping(d.vip, 3*time.Second); err != nil {
		return err
	}
	mac, _, _ := d.client.Neighbour(d.vip)
	who := "?"
	for _, h := range []*lab.Host{d.lb1, d.lb2} {
		if m, _ := h.MAC(); m == mac {
			who = h.Name
		}
	}
	d.say("client: ping %s ok; its ARP cache says %s is at %s (%s)", d.vip, d.vip, mac, who)
	return nil
}

func (d *demo) showHolder(ctx context.Context) error {
	d.say("hosts holding %s on eth0: %s", d.vip, strings.Join(d.holders(), ", "))
	return d.describe(ctx)
}

func (d *demo) crashMaster(ctx context.Context) error {
	if d.master == nil || d.backup == nil {
		return errors.New("no master/backup pair to fail over")
	}
	m, b := d.master, d.backup
	p, err := d.client.StartPinger(d.vip, 10*time.Millisecond)
	if err != nil {
		return err
	}
	defer p.Stop()
	time.Sleep(300 * time.Millisecond)
	d.say("client pings %s every 10 ms", d.vip)
	t0 := time.Now()
	m.Kill()
	if err := m.Host.LinkDown(); err != nil {
		return err
	}
	d.say("%s crashed at %s: vipd SIGKILLed (pid %d) and its network port unplugged", m.Host.Name, t0.Format("15:04:05.000"), m.PID)
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	at, err := b.Host.WaitAddr(wctx, d.vip, true)
	if err != nil {
		return err
	}
	d.say("%s holds the VIP after %v", b.Host.Name, at.Sub(t0).Round(time.Millisecond))
	took, err := p.WaitReplyAfter(wctx, at)
	if err != nil {
		return err
	}
	d.say("the client's pings to the VIP went unanswered for %v", p.Outage(t0, at.Add(took)).Round(time.Millisecond))
	return d.describe(ctx)
}

func (d *demo) bringBack(ctx context.Context) error {
	old := d.vipd1
	if d.master == d.vipd1 {
		old = d.vipd2
	}
	if old.Running() {
		return nil
	}
	h := old.Host
	if err := h.LinkUp(); err != nil {
		return err
	}
	t0 := time.Now()
	if err := old.Restart(); err != nil {
		return err
	}
	d.say("%s: port plugged in, vipd restarted (a VIP left by the crash is removed at start)", h.Name)
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if old.Opts.Priority == 100 {
		if _, err := old.WaitState(wctx, "MASTER"); err != nil {
			return err
		}
		if _, err := d.master.Host.WaitAddr(wctx, d.vip, false); err != nil {
			return err
		}
		d.say("%s (priority 100) took the VIP back after %v (preempt)", h.Name, time.Since(t0).Round(time.Millisecond))
	} else if _, err := old.WaitState(wctx, "BACKUP"); err != nil {
		return err
	}
	return d.describe(ctx)
}
