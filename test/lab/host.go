package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"
)

// Host is one lab host: a network namespace with "eth0" on the lab bridge.
type Host struct {
	Name  string     // logical name ("lb1")
	NS    string     // namespace name (prefix-lb1)
	Addr  netip.Addr // primary address on eth0 (/24)
	Iface string     // "eth0"
	Port  string     // the veth's bridge side, in the bridge namespace

	lab       *Lab
	closed    chan struct{}
	closeOnce sync.Once
}

// Lab returns the lab the host belongs to.
func (h *Host) Lab() *Lab { return h.lab }

// Command returns an exec.Cmd that runs argv inside the host's namespace (ip netns exec).
func (h *Host) Command(ctx context.Context, argv ...string) *exec.Cmd {
	args := append([]string{"netns", "exec", h.NS}, argv...)
	return exec.CommandContext(ctx, "ip", args...)
}

// Exec runs argv in the host's namespace and returns its combined output; the error names the
// command and carries its output.
func (h *Host) Exec(ctx context.Context, argv ...string) (string, error) {
	out, err := h.Command(ctx, argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %s: %w: %s", h.Name, strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func (h *Host) run(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return h.Exec(ctx, argv...)
}

// Do runs fn on an OS thread switched into the host's namespace. Sockets fn creates belong to
// that namespace and stay usable from any goroutine afterwards. The thread is discarded after.
func (h *Host) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the goroutine exits with the thread locked, so Go ends the thread
		// instead of reusing one that sits in another namespace.
		runtime.LockOSThread()
		ns, err := netns.GetFromName(h.NS)
		if err != nil {
			errc <- fmt.Errorf("%s: open netns %s: %w", h.Name, h.NS, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("%s: enter netns %s: %w", h.Name, h.NS, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Dial opens a connection from inside the host's namespace.
func (h *Host) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// HTTPClient returns an HTTP client whose connections start in the host's namespace.
func (h *Host) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:       h.Dial,
			DisableKeepAlives: true,
		},
	}
}

// Sysctl sets a sysctl inside the host's namespace (key like net.ipv4.neigh.eth0.locktime).
func (h *Host) Sysctl(key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	_, err := h.run("sh", "-c", fmt.Sprintf("echo %s > %s", value, path))
	return err
}

// NoNeighLocktime sets the host's eth0 neighbour locktime to 0, so a gratuitous ARP updates its
// neighbour entry even within 1 s (Linux's default locktime) of the last change. Tests that check
// a MAC flip on the client call this on the client.
func (h *Host) NoNeighLocktime() error {
	return h.Sysctl("net.ipv4.neigh."+h.Iface+".locktime", "0")
}

type ipLink struct {
	Address   string   `json:"address"`
	OperState string   `json:"operstate"`
	Flags     []string `json:"flags"`
	AddrInfo  []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

func (h *Host) link() (ipLink, error) {
	out, err := h.run("ip", "-j", "addr", "show", "dev", h.Iface)
	if err != nil {
		return ipLink{}, err
	}
	var ls []ipLink
	if err := json.Unmarshal([]byte(out), &ls); err != nil || len(ls) != 1 {
		return ipLink{}, fmt.Errorf("%s: parse ip -j addr: %v: %q", h.Name, err, out)
	}
	return ls[0], nil
}

// MAC returns eth0's hardware address.
func (h *Host) MAC() (string, error) {
	l, err := h.link()
	return strings.ToLower(l.Address), err
}

// Addrs returns eth0's IPv4 addresses as "a.b.c.d/len".
func (h *Host) Addrs() ([]netip.Prefix, error) {
	l, err := h.link()
	if err != nil {
		return nil, err
	}
	var ps []netip.Prefix
	for _, a := range l.AddrInfo {
		if a.Family != "inet" {
			continue
		}
		if p, err := netip.ParsePrefix(fmt.Sprintf("%s/%d", a.Local, a.PrefixLen)); err == nil {
			ps = append(ps, p)
		}
	}
	return ps, nil
}

// HasAddr reports whether eth0 holds addr ("10.77.0.100" or "10.77.0.100/24"; with a length,
// the length must match too).
func (h *Host) HasAddr(addr string) (bool, error) {
	ps, err := h.Addrs()
	if err != nil {
		return false, err
	}
	for _, p := range ps {
		if p.Addr().String() == addr || p.String() == addr {
			return true, nil
		}
	}
	return false, nil
}

// WaitAddr polls (every 5 ms, through netlink) until eth0 holds addr (present) or does not
// (!present), and returns when that was first seen.
func (h *Host) WaitAddr(ctx context.Context, addr netip.Addr, present bool) (time.Time, error) {
	var at time.Time
	err := h.Do(func() error {
		w, err := newAddrWatcher(h.Iface)
		if err != nil {
			return err
		}
		defer w.close()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			has, err := w.has(addr)
			if err != nil {
				return fmt.Errorf("%s: list addresses: %w", h.Name, err)
			}
			if has == present {
				at = time.Now()
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: waiting for %s present=%v: %w", h.Name, addr, present, ctx.Err())
			case <-t.C:
			}
		}
	})
	return at, err
}

// LinkDown cuts the host's cable: the veth's bridge side goes down, so eth0 loses carrier.
func (h *Host) LinkDown() error {
	return h.lab.ip(context.Background(), "-n", h.lab.BridgeNS, "link", "set", h.Port, "down")
}

// LinkUp plugs the cable back in.
func (h *Host) LinkUp() error {
	return h.lab.ip(context.Background(), "-n", h.lab.BridgeNS, "link", "set", h.Port, "up")
}

// Isolate detaches the host's port from the bridge: eth0 keeps carrier but reaches nobody (a
// cut further along the network; both VRRP peers then become master).
func (h *Host) Isolate() error {
	return h.lab.ip(context.Background(), "-n", h.lab.BridgeNS, "link", "set", h.Port, "nomaster")
}

// Rejoin attaches the host's port to the bridge again.
func (h *Host) Rejoin() error {
	return h.lab.ip(context.Background(), "-n", h.lab.BridgeNS, "link", "set", h.Port, "master", "br0")
}

// Drop adds nft rules in the host's namespace that drop, both in and out, the packets matching
// match (an nft expression such as "ip protocol 112" or "ip daddr 10.77.0.12"). The rules live
// in table "inet lab" and go with the namespace; Undrop removes them all.
func (h *Host) Drop(match string) error { return h.drop(match, true, true) }

// DropIn is Drop for incoming packets only: the host still sends what match describes but
// hears none of it (a one-way cut).
func (h *Host) DropIn(match string) error { return h.drop(match, true, false) }

func (h *Host) drop(match string, in, out bool) error {
	rules := `table inet lab {
	chain in { type filter hook input priority -10; policy accept; }
	chain out { type filter hook output priority -10; policy accept; }
}
`
	if in {
		rules += fmt.Sprintf("add rule inet lab in %s counter drop\n", match)
	}
	if out {
		rules += fmt.Sprintf("add rule inet lab out %s counter drop\n", match)
	}
	return h.nft(rules)
}

// DropPeer cuts the host off from addr only: packets to addr (out) and from addr (in) are
// dropped. Undrop removes it.
func (h *Host) DropPeer(addr netip.Addr) error {
	rules := fmt.Sprintf(`table inet lab {
	chain in { type filter hook input priority -10; policy accept; }
	chain out { type filter hook output priority -10; policy accept; }
}
add rule inet lab in ip saddr %s counter drop
add rule inet lab out ip daddr %s counter drop
`, addr, addr)
	return h.nft(rules)
}

// DropVRRP drops IP protocol 112 (VRRP) in and out of the host.
func (h *Host) DropVRRP() error { return h.Drop("ip protocol 112") }

// Undrop removes every rule Drop added.
func (h *Host) Undrop() error {
	return h.nft("table inet lab {}\ndelete table inet lab\n")
}

func (h *Host) nft(rules string) error {
	f := filepath.Join(h.lab.Dir, h.Name+".nft")
	if err := os.WriteFile(f, []byte(rules), 0o600); err != nil {
		return fmt.Errorf("%s: write nft rules: %w", h.Name, err)
	}
	_, err := h.run("nft", "-f", f)
	return err
}

// Neighbour returns the MAC of ip in the host's neighbour table ("" if there is no entry with an
// address, e.g. INCOMPLETE or FAILED), and the entry's state.
func (h *Host) Neighbour(ip netip.Addr) (mac, state string, err error) {
	out, err := h.run("ip", "-j", "neigh", "show", ip.String(), "dev", h.Iface)
	if err != nil {
		return "", "", err
	}
	var ns []struct {
		Dst    string   `json:"dst"`
		LLAddr string   `json:"lladdr"`
		State  []string `json:"state"`
	}
	if err := json.Unmarshal(bytes.TrimSpace([]byte(out)), &ns); err != nil {
		return "", "", fmt.Errorf("%s: parse ip -j neigh: %w: %q", h.Name, err, out)
	}
	for _, n := range ns {
		if n.Dst == ip.String() {
			return strings.ToLower(n.LLAddr), strings.Join(n.State, ","), nil
		}
	}
	return "", "", nil
}

// WaitNeighbour polls the neighbour table until ip maps to mac.
func (h *Host) WaitNeighbour(ctx context.Context, ip netip.Addr, mac string) error {
	mac = strings.ToLower(mac)
	var last, state string
	for {
		m, s, err := h.Neighbour(ip)
		if err == nil && m == mac {
			return nil
		}
		last, state = m, s
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: neighbour %s is %q (%s), want %s: %w", h.Name, ip, last, state, mac, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
