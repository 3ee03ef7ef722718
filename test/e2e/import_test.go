package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vipd-project/vipd/test/apiserverstub"
	"github.com/vipd-project/vipd/test/lab"
)

// TestImportReplacesKeepalived: a pair running the reference's Keepalived (VRRPv2, auth PASS,
// VRID 51, priorities 100/90) and HAProxy (kubeadm guide's HTTPS /readyz check) from Debian,
// in front of three TLS kube-apiserver stand-ins, is replaced host by host by vipd run from
// what `vipd import` made of each host's keepalived.conf and haproxy.cfg: first the backup,
// then the master. A client sends a new TLS request through VIP:6443 every 50 ms throughout,
// and the VIP is sampled on both hosts every 10 ms: it is never on two hosts at once, the
// client's requests never stop for longer than a failover, and the VIP ends on lb1 (vipd).
func TestImportReplacesKeepalived(t *testing.T) {
	vrrpNeedRoot(t)
	vrrpKeepalivedNeeded(t)
	bin := vipdBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := lab.New(t, lab.Options{Hosts: []string{"lb1", "lb2", "m1", "m2", "m3", "client"}})
	lb1, lb2 := l.Host("lb1"), l.Host("lb2")
	vip := l.Addr(100)
	masters, err := apiserverstub.StartMasters(ctx, l, []*lab.Host{l.Host("m1"), l.Host("m2"), l.Host("m3")}, []net.IP{vip.AsSlice()})
	if err != nil {
		t.Fatal(err)
	}
	haCfg := filepath.Join(l.Dir, "haproxy.cfg")
	if err := os.WriteFile(haCfg, fmt.Appendf(nil, `global
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 20s
    timeout server 20s
    timeout check 2s
    retries 3
frontend apiserver
    bind *:6443
    default_backend apiserverbackend
backend apiserverbackend
    option httpchk GET /readyz
    http-check expect status 200
    balance roundrobin
    server m1 %s check check-ssl verify none inter 1s fall 3 rise 2
    server m2 %s check check-ssl verify none inter 1s fall 3 rise 2
    server m3 %s check check-ssl verify none inter 1s fall 3 rise 2
`, masters.Addr("m1"), masters.Addr("m2"), masters.Addr("m3")), 0o644); err != nil {
		t.Fatal(err)
	}
	haps := map[*lab.Host]*lab.Proc{}
	opts := map[*lab.Host]lab.KeepalivedOptions{
		lb1: {VIP: vip, Priority: 100, State: "MASTER"},
		lb2: {VIP: vip, Priority: 90},
	}
	kas := map[*lab.Host]*lab.Keepalived{}
	for _, h := range []*lab.Host{lb1, lb2} {
		if haps[h], err = h.Start("haproxy", []string{"haproxy", "-db", "-f", haCfg}, ""); err != nil {
			t.Fatal(err)
		}
		k, err := h.StartKeepalived(opts[h])
		if err != nil {
			t.Fatal(err)
		}
		if err := k.WaitStarted(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		kas[h] = k
	}
	if _, err := lb1.WaitAddr(ctx, vip, true); err != nil {
		t.Fatalf("Keepalived on lb1 never took the VIP: %v\n%s", err, kas[lb1].Tail(20))
	}

	// A client of the API through the VIP, from before the first switch to the end.
	time.Sleep(3 * time.Second) // HAProxy's checks: rise 2 at 1 s
	prober := apiserverstub.StartProber(l.Host("client").Dial, masters.ClientTLS(), net.JoinHostPort(vip.String(), "6443"),
		50*time.Millisecond, 2*time.Second)
	defer prober.Stop()
	t0 := time.Now()

	// Sample both hosts until the end.
	probes := map[*lab.Host]*lab.AddrProbe{}
	for _, h := range []*lab.Host{lb1, lb2} {
		p, err := h.AddrProbe()
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		probes[h] = p
	}
	var mu sync.Mutex
	var gap, worstGap time.Duration
	var both, onLB2 int
	var lastHeld time.Time
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		lastHeld = time.Now()
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			h1, err1 := probes[lb1].Has(vip)
			h2, err2 := probes[lb2].Has(vip)
			if err1 != nil || err2 != nil {
				continue
			}
			now := time.Now()
			mu.Lock()
			if h1 && h2 {
				both++
			}
			if h2 {
				onLB2++
			}
			if h1 || h2 {
				gap = now.Sub(lastHeld)
				worstGap = max(worstGap, gap)
				lastHeld = now
			}
			mu.Unlock()
		}
	}()

	replace := func(h *lab.Host) *lab.Proc {
		t.Helper()
		out, err := exec.CommandContext(ctx, bin, "import", "--keepalived", kas[h].ConfigPath, "--haproxy", haCfg).CombinedOutput()
		if err != nil {
			t.Fatalf("vipd import on %s's keepalived.conf: %v\n%s", h.Name, err, out)
		}
		yaml := string(out)
		for _, want := range []string{"version: 2", "vrid: 51", "auth_pass_file: /etc/vipd/vrrp-pass", "interface: " + h.Iface,
			"listen: \":6443\"", "path: /readyz", "insecure_skip_verify: true", "- " + masters.Addr("m3")} {
			if !strings.Contains(yaml, want) {
				t.Fatalf("imported %s config lacks %q:\n%s", h.Name, want, yaml)
			}
		}
		// The operator's part: the password into the file the comment names (here in the lab
		// directory, not /etc), and a control socket per host (the lab's hosts share one
		// filesystem).
		dir := filepath.Join(l.Dir, h.Name+"-imported")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		pass := filepath.Join(dir, "vrrp-pass")
		if err := os.WriteFile(pass, []byte("123456\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		yaml = strings.Replace(yaml, "/etc/vipd/vrrp-pass", pass, 1)
		yaml += fmt.Sprintf("control_socket: %s\nstats:\n  listen: 127.0.0.1:8404\n", filepath.Join(dir, "vipd.sock"))
		conf := filepath.Join(dir, "vipd.yaml")
		if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := kas[h].Term(); err != nil {
			t.Fatal(err)
		}
		if err := kas[h].Wait(10 * time.Second); err != nil {
			t.Fatalf("keepalived on %s did not stop: %v", h.Name, err)
		}
		// The peer holds the VIP now: HAProxy's soft stop (SIGUSR1) lets the requests in
		// flight finish, then vipd takes over :6443 on this host.
		if err := haps[h].Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		_ = haps[h].Wait(10 * time.Second)
		if haps[h].Running() {
			t.Fatalf("haproxy on %s did not stop", h.Name)
		}
		p, err := h.Start("vipd", []string{bin, "run", "-c", conf}, "")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	// The backup first: the VIP stays on lb1 (Keepalived) and vipd on lb2 waits as BACKUP.
	v2 := replace(lb2)
	time.Sleep(5 * time.Second) // longer than Keepalived's master-down interval (3.6 s at 1 s adverts) and vipd's checks' rise
	if has, _ := probes[lb1].Has(vip); !has {
		t.Fatalf("after lb2 moved to vipd, the VIP left Keepalived's lb1\n%s", v2.Tail(30))
	}
	// Then the master: Keepalived's priority-0 advert hands the VIP to vipd on lb2, and vipd on
	// lb1 (priority 100, preempting as Keepalived did) takes it back.
	v1 := replace(lb1)
	if _, err := lb1.WaitAddr(ctx, vip, true); err != nil {
		t.Fatalf("vipd on lb1 never took the VIP back: %v\n%s", err, v1.Tail(30))
	}
	time.Sleep(3 * time.Second)
	close(stop)
	<-done
	end := time.Now()
	prober.WaitDone(end)
	total, failed, byHost, errs := apiserverstub.Summary(prober.Between(t0, end))
	longest := prober.LongestGap(t0)
	t.Logf("client through the VIP: %d requests, %d failed %v, answered by %v; longest time without an answer %v",
		total, failed, errs, byHost, longest.Round(time.Millisecond))
	if total == 0 || longest > 4*time.Second {
		t.Errorf("the client's requests stopped for %v (want less than a failover, 3.6 s at 1 s adverts)", longest)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("host-by-host replacement: longest time without a VIP holder %v; samples with two holders: %d; on lb2 (vipd, during lb1's switch): %d",
		worstGap.Round(time.Millisecond), both, onLB2)
	if onLB2 == 0 {
		t.Errorf("vipd on lb2 never held the VIP while lb1 switched from Keepalived to vipd")
	}
	if has, _ := probes[lb2].Has(vip); has {
		t.Errorf("the VIP is still on lb2 at the end")
	}
	// A failover after a crash takes 3 x 1 s + skew with the reference's advert_int 1; a
	// stopped master hands over at once. Loose, for a loaded machine.
	if worstGap > 3700*time.Millisecond || both > 5 {
		t.Errorf("VIP unheld for %v (want less than a failover) / on both hosts in %d samples\n--- lb1 vipd\n%s\n--- lb2 vipd\n%s",
			worstGap, both, v1.Tail(30), v2.Tail(30))
	}
}
