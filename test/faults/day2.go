package faults

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"
)

// Day-2 operations, driven the way each pair is operated: vipd through its control socket,
// the reference pair the way its README says (edit haproxy.cfg and reload HAProxy; stop
// Keepalived to move the VIP).

// Drain takes backend out of rotation on the host d runs on (on), or puts it back. vipd:
// `vipd backend drain BACKEND --grace GRACE` / `vipd backend enable`. HAProxy: haproxy.cfg
// rewritten without (or with) the server and reloaded the classic way, a new haproxy
// started with -sf OLDPID (the old one stops listening and finishes its connections).
func (e *Env) Drain(ctx context.Context, d Daemon, backend string, on bool, grace time.Duration) error {
	switch d := d.(type) {
	case vipdDaemon:
		args := []string{e.Bin, "backend", "enable", backend, "--socket", d.v.Socket}
		if on {
			args = []string{e.Bin, "backend", "drain", backend, "--grace", grace.String(), "--socket", d.v.Socket}
		}
		_, err := d.v.Host.Exec(ctx, args...)
		return err
	case *kaDaemon:
		keep := slices.DeleteFunc(slices.Clone(e.Backends()), func(b string) bool { return on && b == backend })
		return d.reloadHAProxy(keep)
	}
	return fmt.Errorf("drain: unknown daemon %T", d)
}

// Maintenance runs `vipd maintenance on|off` on d's host. Keepalived has no maintenance mode
// (its README moves the VIP by stopping keepalived: Term).
func (e *Env) Maintenance(ctx context.Context, d Daemon, on bool) error {
	v, ok := d.(vipdDaemon)
	if !ok {
		return fmt.Errorf("maintenance: %T has no maintenance mode", d)
	}
	mode := "off"
	if on {
		mode = "on"
	}
	_, err := v.v.Host.Exec(ctx, e.Bin, "maintenance", mode, "--socket", v.v.Socket)
	return err
}

// reloadHAProxy writes haproxy.cfg with backends and replaces the running HAProxy by a new one
// started with -sf (what the reference's `systemctl reload haproxy` amounts to without the
// master-worker mode).
func (d *kaDaemon) reloadHAProxy(backends []string) error {
	if err := os.WriteFile(d.cfg, []byte(haproxyConfig(backends)), 0o600); err != nil {
		return err
	}
	old := d.ha
	argv := append(slices.Clone(d.haArgv), "-sf", strconv.Itoa(old.PID))
	p, err := d.h.Start("haproxy", argv, "")
	if err != nil {
		return fmt.Errorf("%s: reload haproxy: %w", d.h.Name, err)
	}
	d.ha = p
	return exited(old, 30*time.Second)
}
