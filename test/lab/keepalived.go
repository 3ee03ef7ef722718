package lab

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// KeepalivedOptions describe a Keepalived instance configured like the reference
// (shared/seed: VRID 51, advert_int 1, auth PASS 123456 in VRRPv2), minus its haproxy check.
type KeepalivedOptions struct {
	VIP      netip.Addr
	VRID     int // default 51
	Priority int
	// Version 2 (the reference, with auth PASS) or 3. Default 2.
	Version int
	// Advert interval; default 1s (whole seconds in v2).
	Advert time.Duration
	// AuthPass (v2 only); default "123456" in v2.
	AuthPass string
	// State is the initial state keyword (MASTER for the higher priority in the reference);
	// default BACKUP.
	State string
	// NoPreempt sets nopreempt (needs State BACKUP).
	NoPreempt    bool
	UnicastPeers []netip.Addr
	// Bin defaults to "keepalived".
	Bin string
}

// Keepalived is a keepalived process (the parent; its VRRP child's PID is in VRRPPidFile).
type Keepalived struct {
	*Proc
	Opts        KeepalivedOptions
	ConfigPath  string
	VRRPPidFile string
	dir         string
}

// KeepalivedConfig renders keepalived.conf for host h.
func (h *Host) KeepalivedConfig(o KeepalivedOptions) string {
	ver := orInt(o.Version, 2)
	adv := o.Advert
	if adv == 0 {
		adv = time.Second
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n    router_id %s\n    vrrp_version %d\n}\n\n", h.Name, ver)
	fmt.Fprintf(&b, "vrrp_instance VI_1 {\n    state %s\n    interface %s\n    virtual_router_id %d\n    priority %d\n",
		or(o.State, "BACKUP"), h.Iface, orInt(o.VRID, 51), o.Priority)
	// advert_int takes seconds with decimals (v3 allows centiseconds).
	fmt.Fprintf(&b, "    advert_int %s\n", strconv.FormatFloat(adv.Seconds(), 'f', -1, 64))
	if o.NoPreempt {
		b.WriteString("    nopreempt\n")
	}
	if ver == 2 {
		fmt.Fprintf(&b, "    authentication {\n        auth_type PASS\n        auth_pass %s\n    }\n", or(o.AuthPass, "123456"))
	}
	if len(o.UnicastPeers) > 0 {
		fmt.Fprintf(&b, "    unicast_src_ip %s\n    unicast_peer {\n", h.Addr)
		for _, p := range o.UnicastPeers {
			fmt.Fprintf(&b, "        %s\n", p)
		}
		b.WriteString("    }\n")
	}
	fmt.Fprintf(&b, "    virtual_ipaddress {\n        %s dev %s\n    }\n}\n", Prefix24(o.VIP), h.Iface)
	return b.String()
}

// StartKeepalived writes keepalived.conf into the lab directory and runs keepalived in the
// foreground (-n), VRRP only, logging to the console (its log file), pid files in the lab dir.
func (h *Host) StartKeepalived(o KeepalivedOptions) (*Keepalived, error) {
	dir := filepath.Join(h.lab.Dir, h.Name+"-keepalived")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: keepalived dir: %w", h.Name, err)
	}
	k := &Keepalived{Opts: o, ConfigPath: filepath.Join(dir, "keepalived.conf"),
		VRRPPidFile: filepath.Join(dir, "vrrp.pid"), dir: dir}
	if err := os.WriteFile(k.ConfigPath, []byte(h.KeepalivedConfig(o)), 0o644); err != nil {
		return nil, fmt.Errorf("%s: write keepalived config: %w", h.Name, err)
	}
	if err := k.start(h); err != nil {
		return nil, err
	}
	// The VRRP child is not ours: end it by PID before the lab kills the parent.
	h.lab.OnClose(func() {
		if pid := k.VRRPPID(); pid > 0 && k.Running() && isChild(pid, k.PID) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return k, nil
}

func (k *Keepalived) start(h *Host) error {
	_ = os.Remove(k.VRRPPidFile)
	argv := []string{or(k.Opts.Bin, "keepalived"), "-n", "-l", "-D", "-G", "-P", "-R",
		"-f", k.ConfigPath,
		"-p", filepath.Join(k.dir, "keepalived.pid"),
		"-r", k.VRRPPidFile,
		"-c", filepath.Join(k.dir, "checkers.pid")}
	p, err := h.Start("keepalived", argv, "")
	if err != nil {
		return err
	}
	k.Proc = p
	return nil
}

// Restart starts keepalived again after it was stopped or killed.
func (k *Keepalived) Restart() error {
	if k.Proc.Running() {
		return fmt.Errorf("%s: keepalived (pid %d) is still running", k.Host.Name, k.PID)
	}
	return k.start(k.Host)
}

// VRRPPID returns the PID of keepalived's VRRP child process (0 if not known yet).
func (k *Keepalived) VRRPPID() int {
	b, err := os.ReadFile(k.VRRPPidFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// WaitStarted waits until the VRRP child has written its pid file.
func (k *Keepalived) WaitStarted(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for k.VRRPPID() == 0 {
		if !k.Running() || time.Now().After(deadline) {
			return fmt.Errorf("%s: keepalived's VRRP child did not start:\n%s", k.Host.Name, k.Tail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Crash kills the VRRP child and then the parent with SIGKILL, by PID, so no priority-0 advert
// goes out (killing the parent first would let the child stop gracefully). -R keeps the parent
// from respawning the child in between.
func (k *Keepalived) Crash() {
	if pid := k.VRRPPID(); pid > 0 && k.Running() {
		if isChild(pid, k.PID) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	k.Kill()
	_ = k.Wait(5 * time.Second)
}

// isChild reports whether pid's parent is ppid (guards against a stale pid file).
func isChild(pid, ppid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(s[i+1:])
	return len(f) > 2 && f[1] == strconv.Itoa(ppid)
}

// Term stops keepalived gracefully (SIGTERM to the parent; the child sends priority 0).
func (k *Keepalived) Term() error { return k.Signal(syscall.SIGTERM) }
