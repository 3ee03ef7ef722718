package nspawn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupRoots are the hierarchies each host gets a directory of its own in (DESIGN.md §5:
// this machine's PID 1 is not systemd, so nspawn runs with --keep-unit in the cgroup its
// launcher was moved to).
var cgroupRoots = []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"}

// bootHost mounts the host's overlay, writes its per-host files and starts systemd-nspawn,
// then waits until systemd in the guest reports running or degraded and sshd listens.
func (l *Lab) bootHost(ctx context.Context, h *Host) error {
	upper := filepath.Join(h.dir, "upper")
	work := filepath.Join(h.dir, "work")
	h.merged = filepath.Join(h.dir, "root")
	for _, d := range []string{upper, work, h.merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("host %s: create %s: %w", h.Name, d, err)
		}
	}
	opt := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", l.lower, upper, work)
	if err := syscall.Mount("overlay", h.merged, "overlay", 0, opt); err != nil {
		return fmt.Errorf("host %s: mount overlay: %w", h.Name, err)
	}
	l.mu.Lock()
	h.mounted = true
	l.recordOwnerLocked()
	l.mu.Unlock()
	if err := l.writeHostFiles(ctx, h); err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	for _, root := range cgroupRoots {
		if _, err := os.Stat(root); err != nil {
			continue
		}
		cg := filepath.Join(root, "vipd-lab", h.machName)
		if err := os.MkdirAll(cg, 0o755); err != nil {
			return fmt.Errorf("host %s: create cgroup %s: %w", h.Name, cg, err)
		}
		l.mu.Lock()
		h.cgroups = append(h.cgroups, cg)
		l.mu.Unlock()
	}
	env := []string{"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1"}
	var k8sArgs []string
	if l.opts.K8s != nil {
		cgs, err := l.k8sCgroups(h)
		l.mu.Lock()
		h.cgroups = append(h.cgroups, cgs...)
		l.mu.Unlock()
		if err != nil {
			return err
		}
		if k8sArgs, err = l.k8sNspawnArgs(h); err != nil {
			return err
		}
		env = []string{"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=0", "SYSTEMD_SECCOMP=0"}
	}
	lf, err := os.Create(filepath.Join(h.dir, "console.log"))
	if err != nil {
		return fmt.Errorf("host %s: create console log: %w", h.Name, err)
	}
	h.logFile = lf
	keys := filepath.Join(h.dir, "keys", "ssh_host_ed25519_key")
	args := []string{
		"--quiet", "--boot", "--keep-unit", "--register=no",
		"--directory=" + h.merged,
		"--machine=" + h.machName,
		"--hostname=" + h.Name,
		"--network-namespace-path=/run/netns/" + h.NetNS,
		"--private-network",
		"--capability=CAP_NET_ADMIN",
		"--bind-ro=" + keys + ":/etc/ssh/ssh_host_ed25519_key",
		"--bind-ro=" + keys + ".pub:/etc/ssh/ssh_host_ed25519_key.pub",
		"--resolv-conf=off", "--timezone=off", "--link-journal=no",
		"--console=read-only",
	}
	args = append(args, k8sArgs...)
	// The launcher moves itself into the host's cgroups, then becomes nspawn (same PID).
	var script strings.Builder
	for _, cg := range h.cgroups {
		fmt.Fprintf(&script, "echo $$ > %s/cgroup.procs || exit 97\n", cg)
	}
	script.WriteString(`exec systemd-nspawn "$@"` + "\n")
	cmd := exec.Command("/bin/sh", append([]string{"-c", script.String(), "nspawn"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = lf, lf // never the caller's stdout: a harness reading a pipe would hang
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("host %s: start systemd-nspawn: %w", h.Name, err)
	}
	l.mu.Lock()
	h.cmd = cmd
	l.recordOwnerLocked()
	l.mu.Unlock()
	h.done = make(chan struct{})
	go func() { _ = cmd.Wait(); close(h.done) }()

	deadline := time.Now().Add(90 * time.Second)
	var last string
	for {
		select {
		case <-h.done:
			return fmt.Errorf("host %s: systemd-nspawn exited (%v); console log %s: %s", h.Name, cmd.ProcessState, lf.Name(), readTail(lf.Name()))
		case <-ctx.Done():
			return fmt.Errorf("host %s: boot: %w", h.Name, ctx.Err())
		case <-time.After(150 * time.Millisecond):
		}
		if h.initPID == 0 {
			h.initPID = findInit(cmd.Process.Pid)
			if h.initPID == 0 {
				continue
			}
		}
		out, _ := l.Exec(ctx, h.Name, "systemctl", "is-system-running")
		last = strings.TrimSpace(string(out))
		if last == "running" || last == "degraded" {
			if _, err := l.Exec(ctx, h.Name, "sh", "-c", "ss -Hltn 'sport = :22' | grep -q ."); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			failed, _ := l.Exec(ctx, h.Name, "systemctl", "--failed", "--no-legend")
			return fmt.Errorf("host %s: not booted after 90s (is-system-running: %q; failed units: %s)", h.Name, last, strings.TrimSpace(string(failed)))
		}
	}
	if last == "degraded" {
		failed, _ := l.Exec(ctx, h.Name, "systemctl", "--failed", "--no-legend")
		l.log.Warn("host booted degraded", "host", h.Name, "failed", strings.TrimSpace(string(failed)))
	}
	return nil
}

// writeHostFiles writes what differs per host into its overlay's upper layer.
func (l *Lab) writeHostFiles(ctx context.Context, h *Host) error {
	pub, err := os.ReadFile(l.SSHPubKey)
	if err != nil {
		return fmt.Errorf("read client key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(h.merged, "root/.ssh/authorized_keys"), pub, 0o600); err != nil {
		return fmt.Errorf("write authorized_keys: %w", err)
	}
	hash, err := l.opsShadowHash(ctx)
	if err != nil {
		return err
	}
	shadowPath := filepath.Join(h.merged, "etc/shadow")
	shadow, err := os.ReadFile(shadowPath)
	if err != nil {
		return fmt.Errorf("read shadow: %w", err)
	}
	lines := strings.Split(string(shadow), "\n")
	found := false
	for i, ln := range lines {
		f := strings.Split(ln, ":")
		if len(f) > 2 && f[0] == l.OpsUser {
			f[1] = hash
			lines[i] = strings.Join(f, ":")
			found = true
		}
	}
	if !found {
		return fmt.Errorf("no user %s in the rootfs's /etc/shadow", l.OpsUser)
	}
	if err := os.WriteFile(shadowPath, []byte(strings.Join(lines, "\n")), 0o640); err != nil {
		return fmt.Errorf("write shadow: %w", err)
	}
	var hosts strings.Builder
	hosts.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, o := range l.Hosts {
		fmt.Fprintf(&hosts, "%s\t%s\n", o.Addr, o.Name)
	}
	if err := os.WriteFile(filepath.Join(h.merged, "etc/hosts"), []byte(hosts.String()), 0o644); err != nil {
		return fmt.Errorf("write /etc/hosts: %w", err)
	}
	if l.opts.K8s != nil {
		return l.writeK8sGuestFiles(h)
	}
	return nil
}

// findInit returns the PID (in our namespace) of the guest's PID 1: the descendant of
// the nspawn process whose innermost namespace PID is 1.
func findInit(nspawnPID int) int {
	queue := []int{nspawnPID}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p != nspawnPID {
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
			if err == nil {
				for _, ln := range strings.Split(string(st), "\n") {
					if f := strings.Fields(strings.TrimPrefix(ln, "NSpid:")); strings.HasPrefix(ln, "NSpid:") && len(f) > 1 && f[len(f)-1] == "1" {
						return p
					}
				}
			}
		}
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", p))
		for _, t := range tasks {
			b, _ := os.ReadFile(t)
			for _, c := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(c); err == nil {
					queue = append(queue, n)
				}
			}
		}
	}
	return 0
}

// Exec runs a command inside a host (all its namespaces, as root, like `machinectl
// shell`) and returns its combined output. The error includes the output's last lines.
func (l *Lab) Exec(ctx context.Context, host string, argv ...string) ([]byte, error) {
	h := l.Host(host)
	if h == nil {
		return nil, fmt.Errorf("no lab host %q", host)
	}
	if h.initPID == 0 {
		return nil, fmt.Errorf("host %s is not running", host)
	}
	args := append([]string{"--target", strconv.Itoa(h.initPID), "--mount", "--uts", "--ipc", "--net", "--pid", "--",
		"/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if err != nil {
		return buf.Bytes(), fmt.Errorf("on %s: %s: %w: %s", host, strings.Join(argv, " "), err, tail(buf.Bytes()))
	}
	return buf.Bytes(), nil
}

// ReadFile reads a file of a running host (through its overlay).
func (l *Lab) ReadFile(host, path string) ([]byte, error) {
	h := l.Host(host)
	if h == nil || h.merged == "" {
		return nil, fmt.Errorf("no lab host %q", host)
	}
	return os.ReadFile(filepath.Join(h.merged, filepath.Clean("/"+path)))
}

// WriteFile writes a file into a running host (through its overlay), creating parents.
func (l *Lab) WriteFile(host, path string, data []byte, mode os.FileMode) error {
	h := l.Host(host)
	if h == nil || h.merged == "" {
		return fmt.Errorf("no lab host %q", host)
	}
	p := filepath.Join(h.merged, filepath.Clean("/"+path))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("host %s: mkdir for %s: %w", host, path, err)
	}
	return os.WriteFile(p, data, mode)
}

// stopHost ends the host's nspawn by PID (SIGTERM: the guest halts cleanly; SIGKILL after
// 15 s), then unmounts its overlay and removes its cgroups.
func (l *Lab) stopHost(h *Host) error {
	var errs []error
	if h.cmd != nil && h.cmd.Process != nil {
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.done:
		case <-time.After(15 * time.Second):
			_ = h.cmd.Process.Kill()
			select {
			case <-h.done:
			case <-time.After(5 * time.Second):
				errs = append(errs, fmt.Errorf("host %s: systemd-nspawn (pid %d) did not exit", h.Name, h.cmd.Process.Pid))
			}
		}
	}
	// A SIGTERM that reaches nspawn before it forwards signals kills nspawn alone and leaves
	// the guest's systemd running: end whatever is left in the host's own cgroup.
	for _, cg := range h.cgroups {
		if err := killCgroup(cg); err != nil {
			errs = append(errs, fmt.Errorf("host %s: %w", h.Name, err))
		}
	}
	if h.logFile != nil {
		h.logFile.Close()
	}
	if h.mounted {
		var err error
		for i := 0; i < 20; i++ {
			if err = syscall.Unmount(h.merged, 0); err == nil || errors.Is(err, syscall.EINVAL) {
				err = nil
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			if lerr := syscall.Unmount(h.merged, syscall.MNT_DETACH); lerr != nil {
				errs = append(errs, fmt.Errorf("host %s: unmount %s: %w", h.Name, h.merged, err))
			}
		}
	}
	for _, cg := range h.cgroups {
		if err := removeCgroup(cg); err != nil {
			errs = append(errs, fmt.Errorf("host %s: %w", h.Name, err))
		}
	}
	return errors.Join(errs...)
}

// removeCgroup removes a cgroup directory tree bottom-up (cgroupfs only allows rmdir of
// empty groups), retrying briefly while the last processes exit.
func removeCgroup(dir string) error {
	var err error
	for i := 0; i < 30; i++ {
		var dirs []string
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, e error) error {
			if e == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(a, b int) bool { return len(dirs[a]) > len(dirs[b]) })
		err = nil
		for _, d := range dirs {
			if e := syscall.Rmdir(d); e != nil && !errors.Is(e, syscall.ENOENT) {
				err = fmt.Errorf("remove cgroup %s: %w", d, e)
			}
		}
		if err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	return tail(b)
}

// killCgroup kills every process left in a cgroup v2 directory (cgroup.kill; cgroup v1
// directories are skipped: the same processes are in the v2 one) and waits until it is
// empty.
func killCgroup(dir string) error {
	kill := filepath.Join(dir, "cgroup.kill")
	if _, err := os.Stat(kill); err != nil {
		return nil
	}
	populated := func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		return err == nil && strings.Contains(string(b), "populated 1")
	}
	if !populated() {
		return nil
	}
	if err := os.WriteFile(kill, []byte("1"), 0o200); err != nil {
		return fmt.Errorf("kill processes left in %s: %w", dir, err)
	}
	for i := 0; i < 50 && populated(); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if populated() {
		return fmt.Errorf("processes still in %s after cgroup.kill", dir)
	}
	return nil
}
