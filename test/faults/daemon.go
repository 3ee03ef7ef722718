package faults

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vipd-project/vipd/test/lab"
)

// Daemon is what runs on one LB host and what the faults act on: vipd, or the reference's
// Keepalived with HAProxy beside it.
type Daemon interface {
	// Kill SIGKILLs every LB process of the host (a crash) and waits for them to exit.
	Kill() error
	// Term stops the VRRP daemon gracefully (SIGTERM, `systemctl stop keepalived`) and waits.
	Term() error
	// Freeze stops (SIGSTOP) or continues (SIGCONT) the VRRP daemon.
	Freeze(stop bool) error
	// Restart starts whatever is not running.
	Restart() error
	Running() bool
	// State is the VRRP state the daemon reports now (MASTER, BACKUP, FAULT...).
	State(ctx context.Context) (string, error)
	// LogPath is the VRRP daemon's log; TransitionLine marks one state change in it.
	LogPath() string
	TransitionLine() string
	Tail(n int) string
}

// exited waits for p to exit; its exit status (killed, or 0 after SIGTERM) is not an error
// here.
func exited(p *lab.Proc, within time.Duration) error {
	if err := p.Wait(within); err != nil && p.Running() {
		return err
	}
	return nil
}

// vipdDaemon is vipd: one process, state from /stats.json.
type vipdDaemon struct{ v *lab.Vipd }

func (d vipdDaemon) Kill() error {
	d.v.Kill()
	return exited(d.v.Proc, 5*time.Second)
}

func (d vipdDaemon) Term() error {
	if err := d.v.Term(); err != nil {
		return err
	}
	return exited(d.v.Proc, 45*time.Second) // the unit's TimeoutStopSec: drain_grace (30 s) + margin
}

func (d vipdDaemon) Freeze(stop bool) error { return d.v.Signal(freezeSig(stop)) }

func (d vipdDaemon) Restart() error {
	if d.v.Running() {
		return nil
	}
	return d.v.Restart()
}

func (d vipdDaemon) Running() bool { return d.v.Running() }

func (d vipdDaemon) State(ctx context.Context) (string, error) {
	s, err := d.v.Stats(ctx)
	if err != nil {
		return "", err
	}
	return s.VRRP.State, nil
}

func (d vipdDaemon) LogPath() string        { return d.v.LogPath }
func (d vipdDaemon) TransitionLine() string { return "VRRP state change" }
func (d vipdDaemon) Tail(n int) string      { return d.v.Tail(n) }

func freezeSig(stop bool) syscall.Signal {
	if stop {
		return syscall.SIGSTOP
	}
	return syscall.SIGCONT
}

// kaDaemon is the reference pair's LB host: Keepalived configured like the reference (VRRPv2,
// auth PASS, advert_int 1) and HAProxy (mode tcp, roundrobin, TCP checks every 2 s).
type kaDaemon struct {
	ka *lab.Keepalived
	ha *lab.Proc
	h  *lab.Host
	// haArgv restarts HAProxy.
	haArgv []string
	// cfg is haproxy.cfg; backends the servers it lists (day2.go edits it).
	cfg      string
	backends []string
}

func startKeepalivedHAProxy(h *lab.Host, o lab.KeepalivedOptions, backends []string) (*kaDaemon, error) {
	cfg := filepath.Join(h.Lab().Dir, h.Name+"-haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(haproxyConfig(backends)), 0o600); err != nil {
		return nil, err
	}
	d := &kaDaemon{h: h, cfg: cfg, backends: backends, haArgv: []string{"haproxy", "-db", "-f", cfg}}
	var err error
	if d.ha, err = h.Start("haproxy", d.haArgv, ""); err != nil {
		return nil, err
	}
	if d.ka, err = h.StartKeepalived(o); err != nil {
		return nil, err
	}
	return d, d.ka.WaitStarted(10 * time.Second)
}

// haproxyConfig is the reference's haproxy.cfg for the masters (m1, m2... in order), with the
// kubeadm guide's timeouts.
func haproxyConfig(backends []string) string {
	var servers strings.Builder
	for i, b := range backends {
		fmt.Fprintf(&servers, "    server m%d %s check inter 2s fall 3 rise 2\n", i+1, b)
	}
	return fmt.Sprintf(`global
    maxconn 4000

defaults
    mode tcp
    timeout connect 5s
    timeout client 20s
    timeout server 20s
    retries 3

frontend k8s-api
    bind *:6443
    default_backend k8s-masters

backend k8s-masters
    balance roundrobin
%s`, servers.String())
}

func (d *kaDaemon) Kill() error {
	d.ka.Crash()
	d.ha.Kill()
	return exited(d.ha, 5*time.Second)
}

func (d *kaDaemon) Term() error {
	if err := d.ka.Term(); err != nil {
		return err
	}
	return exited(d.ka.Proc, 30*time.Second)
}

func (d *kaDaemon) Freeze(stop bool) error {
	if pid := d.ka.VRRPPID(); pid > 0 {
		if err := syscall.Kill(pid, freezeSig(stop)); err != nil {
			return fmt.Errorf("%s: keepalived VRRP child %d: %w", d.h.Name, pid, err)
		}
	}
	return d.ka.Signal(freezeSig(stop))
}

func (d *kaDaemon) Restart() error {
	if !d.ha.Running() {
		p, err := d.h.Start("haproxy", d.haArgv, "")
		if err != nil {
			return err
		}
		d.ha = p
	}
	if d.ka.Running() {
		return nil
	}
	if err := d.ka.Restart(); err != nil {
		return err
	}
	return d.ka.WaitStarted(10 * time.Second)
}

func (d *kaDaemon) Running() bool { return d.ka.Running() && d.ha.Running() }

// State is the last "Entering X STATE" Keepalived logged ("" before the first).
func (d *kaDaemon) State(context.Context) (string, error) {
	if !d.ka.Running() {
		return "", fmt.Errorf("%s: keepalived not running", d.h.Name)
	}
	b, err := os.ReadFile(d.ka.LogPath)
	if err != nil {
		return "", err
	}
	i := bytes.LastIndex(b, []byte("Entering "))
	if i < 0 {
		return "", nil
	}
	f := strings.Fields(string(b[i:]))
	if len(f) < 2 {
		return "", nil
	}
	return f[1], nil
}

func (d *kaDaemon) LogPath() string        { return d.ka.LogPath }
func (d *kaDaemon) TransitionLine() string { return "Entering " }
func (d *kaDaemon) Tail(n int) string      { return d.ka.Tail(n) }

// VipdOf is the lab process behind a vipd Daemon (nil for Keepalived + HAProxy): for the
// tests that talk to its control socket.
func VipdOf(d Daemon) *lab.Vipd {
	if v, ok := d.(vipdDaemon); ok {
		return v.v
	}
	return nil
}
