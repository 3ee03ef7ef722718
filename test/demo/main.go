// Command demo shows vipd's main job on a throw-away lab of network namespaces on this machine
// (run by `make demo`, as root): three masters run a TLS stand-in for kube-apiserver, two
// load-balancer hosts run vipd (VRRP election of a virtual IP, the TCP proxy on :6443 to the
// healthy masters, https /readyz checks, the stats page on :8404), and a client sends a steady
// stream of new TLS requests to VIP:6443 while a master is SIGKILLed, then the master LB crashes
// and the VIP moves; both come back. Every step prints what it measured, the last one a summary
// table. Everything it creates (the namespaces, the processes) is removed at the end, also on
// Ctrl-C; -hold keeps the lab up until Ctrl-C to look at the stats pages.
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

	"github.com/vipd-project/vipd/test/apiserverstub"
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

	// The proxy's part: the masters, the client's request stream, the numbers for the summary.
	masters  []*lab.Host
	ms       *apiserverstub.Masters
	backends []string
	load     *apiserverstub.Prober
	began    time.Time
	results  []result
}

// step is one part of the demo; run returns an error to stop the demo.
type step struct {
	title string
	run   func(d *demo, ctx context.Context) error
}

func main() {
	bin := flag.String("vipd", "bin/vipd", "vipd binary (built by `make build`)")
	advert := flag.Duration("advert", 0, "VRRP advert interval (0: vipd's default)")
	hold := flag.Bool("hold", false, "keep the lab up at the end until Ctrl-C (to look at the stats pages)")
	flag.Parse()
	if err := run(*bin, *advert, *hold); err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "demo: interrupted")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run(bin string, advert time.Duration, hold bool) error {
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
		{"start three kube-apiserver stand-ins (m1, m2, m3)", (*demo).startMasters},
		{"start vipd on both LB hosts (VRRP + proxy :6443 + stats :8404)", (*demo).startVipd},
		{"who holds the VIP", (*demo).showHolder},
		{"the client's request stream through VIP:6443", (*demo).startLoad},
		{"the stats page", (*demo).showStats},
		{"SIGKILL a master (m3)", (*demo).killMaster},
		{"SIGKILL the master LB (vipd killed, port unplugged)", (*demo).crashMaster},
		{"bring everything back", (*demo).bringBack},
		{"summary", (*demo).summary},
	}
	defer d.cleanup()
	start := time.Now()
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
	fmt.Fprintf(d.out, "\ndone in %v.\n", time.Since(start).Round(100*time.Millisecond))
	if hold {
		d.say("-hold: the lab stays up; look at the stats pages, e.g.")
		d.say("  ip netns exec %s curl -s http://%s:8404/stats.json", d.client.NS, d.lb1.Addr)
		d.say("Ctrl-C ends it")
		<-ctx.Done()
	}
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
	if d.load != nil {
		d.load.Stop()
	}
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
	l, err := lab.Start(ctx, lab.Options{Hosts: []string{"lb1", "lb2", "m1", "m2", "m3", "client"}, Prefix: lab.RandomPrefix("vd")})
	if err != nil {
		return err
	}
	d.lab = l
	d.lb1, d.lb2, d.client = l.Host("lb1"), l.Host("lb2"), l.Host("client")
	d.masters = []*lab.Host{l.Host("m1"), l.Host("m2"), l.Host("m3")}
	d.vip = l.Addr(100)
	// Let the client's ARP cache take a gratuitous ARP at once (Linux ignores updates within
	// 1 s of the last change by default).
	if err := d.client.NoNeighLocktime(); err != nil {
		return err
	}
	d.say("namespaces %s-{lb1,lb2,m1,m2,m3,client} on a bridge (in %s); no route out", l.Prefix, l.BridgeNS)
	for _, h := range l.Hosts() {
		mac, _ := h.MAC()
		d.say("%-6s %s  (MAC %s)", h.Name, h.Addr, mac)
	}
	d.say("VIP    %s", d.vip)
	return nil
}

func (d *demo) startVipd(ctx context.Context) error {
	var err error
	t0 := time.Now()
	if d.vipd1, err = d.startLB(d.lb1, 100); err != nil {
		return err
	}
	if d.vipd2, err = d.startLB(d.lb2, 90); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
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
	d.say("proxy :6443 -> %s, round-robin; checks GET https://MASTER:6443/readyz every 500ms (timeout 400ms, fall 2, rise 2, CA-verified)", strings.Join(d.backends, ", "))
	d.say("tracking: fewer than 1 backend UP lowers the priority by 50, so a host that cannot serve gives up the VIP")
	d.say("config: %s", d.vipd1.ConfigPath)
	elected, err := d.vipd1.WaitState(wctx, "MASTER")
	if err != nil {
		return err
	}
	d.say("lb1 elected MASTER %v after the start", elected.Sub(t0).Round(10*time.Millisecond))
	for _, v := range []*lab.Vipd{d.vipd1, d.vipd2} {
		if _, _, err := waitSnap(wctx, v, "3 backends UP", allUp(d.backends)); err != nil {
			return err
		}
	}
	up := time.Since(t0)
	d.say("3/3 backends UP on both LBs %v after the start", up.Round(10*time.Millisecond))
	d.note("election", fmt.Sprintf("lb1 MASTER after %v, 3/3 masters UP after %v",
		elected.Sub(t0).Round(10*time.Millisecond), up.Round(10*time.Millisecond)), "", "")
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
			// A daemon just SIGKILLed may not have been reaped yet: say so, do not stop.
			d.say("%s: /stats.json does not answer (%v)", v.Host.Name, err)
			continue
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
	d.say("client pings %s every 10 ms, and keeps sending its 20 TLS requests/s to %s:6443", d.vip, d.vip)
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
	moved := at.Sub(t0)
	d.say("%s holds the VIP after %v", b.Host.Name, moved.Round(time.Millisecond))
	took, err := p.WaitReplyAfter(wctx, at)
	if err != nil {
		return err
	}
	d.say("the client's pings to the VIP went unanswered for %v", p.Outage(t0, at.Add(took)).Round(time.Millisecond))

	// Requests stuck on the dead host end at the client's 2 s timeout: wait for them.
	until := at.Add(time.Second)
	d.load.WaitDone(until)
	first, ok := d.load.FirstOKAfter(t0)
	if !ok {
		return fmt.Errorf("no request through the VIP succeeded after the crash")
	}
	gap := d.load.LongestGap(t0.Add(-500 * time.Millisecond))
	rs := d.load.Between(t0.Add(-time.Second), until)
	total, failed, _, _ := apiserverstub.Summary(rs)
	d.say("requests: the first one started after the crash was answered (by %s via %s) %v after it",
		first.Host, b.Host.Name, first.End.Sub(t0).Round(time.Millisecond))
	d.say("requests from 1 s before the crash to 1 s after the move: %d, %d failed (%s); longest time without an answer %v",
		total, failed, errKinds(rs), gap.Round(time.Millisecond))
	d.load.WaitDone(until.Add(time.Second))
	t2, f2, byHost, _ := apiserverstub.Summary(d.load.Between(at.Add(300*time.Millisecond), until.Add(time.Second)))
	d.say("through %s since: %d requests, %d failed (%s)", b.Host.Name, t2, f2, byMaster(byHost))
	d.note("SIGKILL master LB", fmt.Sprintf("VIP on %s after %v, ping outage %v", b.Host.Name, moved.Round(time.Millisecond),
		p.Outage(t0, at.Add(took)).Round(time.Millisecond)), fmt.Sprintf("%d / %d", failed, total), gap.Round(time.Millisecond).String())
	return d.describe(ctx)
}

func (d *demo) bringBack(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	// The crashed LB host is the one whose vipd is not running; cur holds the VIP meanwhile.
	old, cur := d.vipd1, d.vipd2
	if !d.vipd2.Running() {
		old, cur = d.vipd2, d.vipd1
	}
	// The killed master first: the running LB sees it UP again after rise × interval.
	m3 := d.masters[2]
	if p := d.ms.Proc(m3.Name); p != nil && !p.Running() {
		t0 := time.Now()
		if err := d.ms.Start(ctx, m3.Name); err != nil {
			return err
		}
		_, seen, err := waitSnap(wctx, cur, "m3 UP", allUp(d.backends))
		if err != nil {
			return err
		}
		d.say("m3: stand-in restarted (pid %d); UP on %s's /stats %v later (rise 2 x 500ms)",
			d.ms.Proc(m3.Name).PID, cur.Host.Name, seen.Sub(t0).Round(time.Millisecond))
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
	var back time.Time
	if old.Opts.Priority == 100 {
		if _, err := old.WaitState(wctx, "MASTER"); err != nil {
			return err
		}
		up := "?"
		if s, err := snap(wctx, old); err == nil {
			up = fmt.Sprint(countUp(s))
		}
		var err error
		if back, err = cur.Host.WaitAddr(wctx, d.vip, false); err != nil {
			return err
		}
		d.say("%s (priority 100) took the VIP back after %v (preempt; its /stats showed %s/3 backends UP when it became MASTER:"+
			" the first check of each is decisive)", h.Name, back.Sub(t0).Round(time.Millisecond), up)
	} else if _, err := old.WaitState(wctx, "BACKUP"); err != nil {
		return err
	} else {
		back = time.Now()
	}
	if _, _, err := waitSnap(wctx, old, "3 backends UP", allUp(d.backends)); err != nil {
		return err
	}
	until := back.Add(time.Second)
	d.load.WaitDone(until)
	rs := d.load.Between(t0, until)
	total, failed, _, _ := apiserverstub.Summary(rs)
	gap := d.load.LongestGap(t0)
	d.say("requests from the restart to 1 s after the VIP moved back: %d, %d failed (%s); longest time without an answer %v",
		total, failed, errKinds(rs), gap.Round(time.Millisecond))
	d.note("bring back", fmt.Sprintf("m3 UP again; %s MASTER again %v after its restart", h.Name, back.Sub(t0).Round(time.Millisecond)),
		fmt.Sprintf("%d / %d", failed, total), gap.Round(time.Millisecond).String())
	return d.describe(ctx)
}
