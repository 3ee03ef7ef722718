package vrrp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// A tiny self-contained netns lab for this package's root-only tests (kept
// here so pkg/vrrp's tests do not depend on test/lab's evolving API):
// hosts are namespaces "<prefix>-<name>" whose eth0 is a veth to bridge
// br0 in namespace "<prefix>-br". No namespace gets a route out.

type tlab struct {
	t      *testing.T
	prefix string
	subnet netip.Prefix
	hosts  map[string]*thost
}

type thost struct {
	lab   *tlab
	Name  string
	NS    string
	Addr  netip.Addr
	Iface string
	port  string // bridge-side veth name
}

func ipCmd(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func newTLab(t *testing.T, subnet string, names ...string) *tlab {
	t.Helper()
	var b [3]byte
	_, _ = rand.Read(b[:])
	l := &tlab{t: t, prefix: "vr" + hex.EncodeToString(b[:])[:5], subnet: netip.MustParsePrefix(subnet), hosts: map[string]*thost{}}
	br := l.prefix + "-br"
	var nss []string
	t.Cleanup(func() {
		for _, ns := range nss {
			if err := ipCmd("netns", "del", ns); err != nil {
				t.Logf("cleanup: %v", err)
			}
		}
	})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ipCmd("netns", "add", br))
	nss = append(nss, br)
	must(ipCmd("-n", br, "link", "add", "br0", "type", "bridge"))
	must(ipCmd("-n", br, "link", "set", "br0", "up"))
	for i, name := range names {
		ns := l.prefix + "-" + name
		must(ipCmd("netns", "add", ns))
		nss = append(nss, ns)
		a := l.subnet.Addr().As4()
		a[3] = byte(11 + i)
		h := &thost{lab: l, Name: name, NS: ns, Addr: netip.AddrFrom4(a), Iface: "eth0", port: fmt.Sprintf("%s-p%d", l.prefix, i)}
		must(ipCmd("-n", br, "link", "add", h.port, "type", "veth", "peer", "name", "eth0", "netns", ns))
		must(ipCmd("-n", br, "link", "set", h.port, "master", "br0", "up"))
		must(ipCmd("-n", ns, "addr", "add", netip.PrefixFrom(h.Addr, 24).String(), "dev", "eth0"))
		must(ipCmd("-n", ns, "link", "set", "eth0", "up"))
		must(ipCmd("-n", ns, "link", "set", "lo", "up"))
		l.hosts[name] = h
	}
	return l
}

func (l *tlab) Host(name string) *thost { return l.hosts[name] }

func (l *tlab) Addr(last int) netip.Addr {
	a := l.subnet.Addr().As4()
	a[3] = byte(last)
	return netip.AddrFrom4(a)
}

// Do runs fn on an OS thread inside the host's namespace; sockets fn opens
// stay in that namespace. The thread is discarded afterwards.
func (h *thost) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: Go ends the thread
		ns, err := netns.GetFromName(h.NS)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func (h *thost) Exec(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS}, argv...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %s: %w: %s", h.Name, strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

type ipLinkJSON struct {
	Address  string `json:"address"`
	AddrInfo []struct {
		Family string `json:"family"`
		Local  string `json:"local"`
	} `json:"addr_info"`
}

func (h *thost) link() (ipLinkJSON, error) {
	out, err := h.Exec("ip", "-j", "addr", "show", "dev", h.Iface)
	if err != nil {
		return ipLinkJSON{}, err
	}
	var ls []ipLinkJSON
	if err := json.Unmarshal([]byte(out), &ls); err != nil || len(ls) != 1 {
		return ipLinkJSON{}, fmt.Errorf("%s: parse ip -j addr: %v: %q", h.Name, err, out)
	}
	return ls[0], nil
}

func (h *thost) MAC() (string, error) {
	l, err := h.link()
	return strings.ToLower(l.Address), err
}

func (h *thost) HasAddr(addr string) (bool, error) {
	l, err := h.link()
	if err != nil {
		return false, err
	}
	for _, a := range l.AddrInfo {
		if a.Family == "inet" && a.Local == addr {
			return true, nil
		}
	}
	return false, nil
}

// LinkDown / LinkUp pull and replug the host's cable (the bridge side).
func (h *thost) LinkDown() error {
	return ipCmd("-n", h.lab.prefix+"-br", "link", "set", h.port, "down")
}

func (h *thost) LinkUp() error {
	return ipCmd("-n", h.lab.prefix+"-br", "link", "set", h.port, "up")
}

// Isolate detaches the host's port from the bridge (carrier stays up: a
// partition, not a link loss); Rejoin attaches it again.
func (h *thost) Isolate() error {
	return ipCmd("-n", h.lab.prefix+"-br", "link", "set", h.port, "nomaster")
}

func (h *thost) Rejoin() error {
	return ipCmd("-n", h.lab.prefix+"-br", "link", "set", h.port, "master", "br0")
}

// NoNeighLocktime lets gratuitous ARP update the neighbour table at once.
func (h *thost) NoNeighLocktime() error {
	_, err := h.Exec("sysctl", "-qw", "net.ipv4.neigh."+h.Iface+".locktime=0")
	return err
}

// WaitNeighbour polls until ip maps to mac in the host's neighbour table.
func (h *thost) WaitNeighbour(ctx context.Context, ip netip.Addr, mac string) error {
	var last string
	for {
		out, err := h.Exec("ip", "-j", "neigh", "show", ip.String(), "dev", h.Iface)
		if err == nil {
			var ns []struct {
				LLAddr string `json:"lladdr"`
			}
			if json.Unmarshal([]byte(out), &ns) == nil && len(ns) > 0 {
				last = strings.ToLower(ns[0].LLAddr)
				if last == mac {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: neighbour %s is %q, want %s: %w", h.Name, ip, last, mac, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
