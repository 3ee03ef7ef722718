package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Options describe a lab.
type Options struct {
	// Hosts are the logical host names, e.g. "lb1", "lb2", "client" (at most 9 characters).
	// Host i (from 0) gets address Subnet.Addr()+HostBase+i.
	Hosts []string
	// Subnet is the lab's /24 (default 10.77.0.0/24). Any 10.x /24 works: the lab is isolated.
	Subnet netip.Prefix
	// HostBase is the last octet of the first host's address (default 11).
	HostBase int
	// Prefix names the namespaces; default "vl" + 5 random hex characters.
	Prefix string
	// Dir holds the logs and configs of processes; default a new temporary directory that
	// Close removes unless KeepDir is set.
	Dir     string
	KeepDir bool
	// Logger for lab events (namespace creation, commands that fail); default discards.
	Logger *slog.Logger
}

// Lab is a running lab. Create it with Start or New, end it with Close.
type Lab struct {
	Prefix string
	Subnet netip.Prefix
	Dir    string
	// BridgeNS is the namespace holding the bridge "br0".
	BridgeNS string

	log     *slog.Logger
	hosts   []*Host
	byName  map[string]*Host
	ownDir  bool
	keepDir bool

	mu      sync.Mutex
	procs   []*Proc
	onClose []func()
	closed  bool
	spawn   chan spawnReq
}

// spawnReq asks the lab's spawner thread to start a command.
type spawnReq struct {
	cmd  *exec.Cmd
	errc chan error
}

// spawner starts every process of the lab from one OS thread that lives as long as the lab:
// Pdeathsig fires when the thread that forked a child exits, and Host.Do retires threads.
func (l *Lab) spawner() {
	runtime.LockOSThread()
	for r := range l.spawn {
		r.errc <- r.cmd.Start()
	}
}

// startCmd starts cmd from the spawner thread.
func (l *Lab) startCmd(cmd *exec.Cmd) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lab is closed")
	}
	errc := make(chan error, 1)
	l.spawn <- spawnReq{cmd: cmd, errc: errc}
	return <-errc
}

// TB is the part of testing.TB that New uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// New starts a lab for a test: it skips unless run as root, fails the test if the lab cannot be
// built, and closes it in t.Cleanup (also when the test fails).
func New(t TB, opts Options) *Lab {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("start lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Logf("close lab %s: %v", l.Prefix, err)
		}
	})
	return l
}

type tbWriter struct{ t TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// RandomPrefix returns base followed by 5 random hex characters (keep base <= 3 characters).
func RandomPrefix(base string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return base + hex.EncodeToString(b[:])[:5]
}

// Start builds a lab. On error everything already made is removed again.
func Start(ctx context.Context, opts Options) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the lab needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("the lab needs iproute2: %w", err)
	}
	if opts.Prefix == "" {
		opts.Prefix = RandomPrefix("vl")
	}
	if len(opts.Prefix) > 8 {
		return nil, fmt.Errorf("lab prefix %q: at most 8 characters", opts.Prefix)
	}
	if !opts.Subnet.IsValid() {
		opts.Subnet = netip.MustParsePrefix("10.77.0.0/24")
	}
	opts.Subnet = opts.Subnet.Masked()
	if opts.Subnet.Bits() != 24 || !opts.Subnet.Addr().Is4() || opts.Subnet.Addr().As4()[0] != 10 {
		return nil, fmt.Errorf("lab subnet %s: want a 10.x.y.0/24", opts.Subnet)
	}
	if opts.HostBase == 0 {
		opts.HostBase = 11
	}
	if opts.HostBase+len(opts.Hosts) > 250 {
		return nil, fmt.Errorf("lab: %d hosts from .%d do not fit in a /24", len(opts.Hosts), opts.HostBase)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	l := &Lab{
		Prefix:   opts.Prefix,
		Subnet:   opts.Subnet,
		BridgeNS: opts.Prefix + "-br",
		log:      opts.Logger,
		byName:   map[string]*Host{},
		keepDir:  opts.KeepDir,
		spawn:    make(chan spawnReq),
	}
	go l.spawner()
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "lab-"+opts.Prefix+"-")
		if err != nil {
			return nil, fmt.Errorf("lab dir: %w", err)
		}
		opts.Dir, l.ownDir = d, true
	}
	l.Dir = opts.Dir
	if err := l.build(ctx, opts); err != nil {
		_ = l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Lab) build(ctx context.Context, opts Options) error {
	if err := l.ip(ctx, "netns", "add", l.BridgeNS); err != nil {
		return err
	}
	steps := [][]string{
		{"-n", l.BridgeNS, "link", "set", "lo", "up"},
		{"-n", l.BridgeNS, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0", "stp_state", "0", "forward_delay", "0"},
		{"-n", l.BridgeNS, "link", "set", "br0", "up"},
	}
	for _, s := range steps {
		if err := l.ip(ctx, s...); err != nil {
			return err
		}
	}
	for i, name := range opts.Hosts {
		if name == "" || len(name) > 9 || strings.ContainsAny(name, " /") {
			return fmt.Errorf("lab host %q: want 1-9 characters, no spaces or slashes", name)
		}
		if l.byName[name] != nil {
			return fmt.Errorf("lab host %q: duplicate", name)
		}
		a := l.Subnet.Addr().As4()
		a[3] = byte(opts.HostBase + i)
		h := &Host{
			Name:   name,
			NS:     l.Prefix + "-" + name,
			Addr:   netip.AddrFrom4(a),
			Iface:  "eth0",
			Port:   fmt.Sprintf("%sp%d", l.Prefix, i),
			lab:    l,
			closed: make(chan struct{}),
		}
		if err := l.ip(ctx, "netns", "add", h.NS); err != nil {
			return err
		}
		l.hosts = append(l.hosts, h)
		l.byName[name] = h
		steps := [][]string{
			{"-n", l.BridgeNS, "link", "add", h.Port, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
			{"-n", l.BridgeNS, "link", "set", h.Port, "master", "br0"},
			{"-n", l.BridgeNS, "link", "set", h.Port, "up"},
			{"-n", h.NS, "link", "set", "lo", "up"},
			{"-n", h.NS, "addr", "add", netip.PrefixFrom(h.Addr, 24).String(), "dev", "eth0"},
			{"-n", h.NS, "link", "set", "eth0", "up"},
		}
		for _, s := range steps {
			if err := l.ip(ctx, s...); err != nil {
				return err
			}
		}
	}
	l.log.Info("lab up", "prefix", l.Prefix, "subnet", l.Subnet, "hosts", len(l.hosts))
	return nil
}

// ip runs an ip(8) command in the root namespace (only netns management and -n NS commands).
func (l *Lab) ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Host returns the host with that logical name, or nil.
func (l *Lab) Host(name string) *Host { return l.byName[name] }

// Hosts returns every host in creation order.
func (l *Lab) Hosts() []*Host { return append([]*Host(nil), l.hosts...) }

// Addr returns the lab address with the given last octet (e.g. Addr(100) for a VIP).
func (l *Lab) Addr(last int) netip.Addr {
	a := l.Subnet.Addr().As4()
	a[3] = byte(last)
	return netip.AddrFrom4(a)
}

// Prefix24 returns addr/24 as a string, the form vipd and keepalived configs want.
func Prefix24(a netip.Addr) string { return netip.PrefixFrom(a, 24).String() }

func (l *Lab) addProc(p *Proc) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lab is closed")
	}
	l.procs = append(l.procs, p)
	return nil
}

// OnClose registers fn to run at the start of Close, before the lab's processes are killed
// (last registered runs first).
func (l *Lab) OnClose(fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onClose = append(l.onClose, fn)
}

// Close ends every process the lab started (SIGKILL by PID, then waits), deletes the hosts' and
// the bridge's namespaces and the lab's own temporary directory. Safe to call twice.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs, onClose := l.procs, l.onClose
	// Ends the spawner thread only after the processes are gone (Pdeathsig would kill them).
	defer close(l.spawn)
	l.mu.Unlock()

	var errs []error
	for i := len(onClose) - 1; i >= 0; i-- {
		onClose[i]()
	}
	for _, p := range procs {
		p.Kill()
	}
	for _, p := range procs {
		select {
		case <-p.Done():
		case <-time.After(5 * time.Second):
			errs = append(errs, fmt.Errorf("process %s (pid %d) did not end after SIGKILL", p.Name, p.PID))
		}
	}
	for _, h := range l.hosts {
		h.closeOnce.Do(func() { close(h.closed) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, h := range l.hosts {
		if err := l.ip(ctx, "netns", "del", h.NS); err != nil {
			errs = append(errs, err)
		}
	}
	if l.BridgeNS != "" {
		// Deleting a missing namespace (a half-built lab) is not worth reporting.
		if _, err := os.Stat("/run/netns/" + l.BridgeNS); err == nil {
			if err := l.ip(ctx, "netns", "del", l.BridgeNS); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if l.ownDir && !l.keepDir {
		if err := os.RemoveAll(l.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
