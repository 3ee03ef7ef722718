package nspawn

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ownerFile records what a lab made, so that a later Start can undo a lab whose process
// died without Close (a test binary killed by its timeout).
const ownerFile = "owner.json"

type owner struct {
	PID       int      `json:"pid"`
	StartTime string   `json:"startTime"` // field 22 of /proc/PID/stat: tells PID reuse apart
	NetNS     []string `json:"netns"`
	NspawnPID []int    `json:"nspawnPIDs"`
	Mounts    []string `json:"mounts"`
	Cgroups   []string `json:"cgroups"`
}

func procStartTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 19 {
			return f[19]
		}
	}
	return ""
}

// recordOwnerLocked writes the lab's owner file (best effort; called with l.mu held as
// resources are made).
func (l *Lab) recordOwnerLocked() {
	o := owner{PID: os.Getpid(), StartTime: procStartTime(os.Getpid()), NetNS: l.netns}
	for _, h := range l.Hosts {
		if h.cmd != nil && h.cmd.Process != nil {
			o.NspawnPID = append(o.NspawnPID, h.cmd.Process.Pid)
		}
		if h.mounted {
			o.Mounts = append(o.Mounts, h.merged)
		}
		o.Cgroups = append(o.Cgroups, h.cgroups...)
	}
	b, _ := json.Marshal(o)
	_ = os.WriteFile(filepath.Join(l.Dir, ownerFile), b, 0o600)
}

// reapStale undoes labs under /var/tmp whose owning process is gone: nspawn processes
// (by recorded PID, checked against the lab directory in their command line), the
// processes left in their cgroups, mounts, namespaces and the directory.
func reapStale(log *slog.Logger) {
	dirs, _ := filepath.Glob("/var/tmp/vipd-lab-*")
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		var o owner
		if json.Unmarshal(b, &o) != nil || o.PID == 0 {
			continue
		}
		if st := procStartTime(o.PID); st != "" && st == o.StartTime {
			continue // its owner is alive
		}
		log.Warn("removing a lab left behind by a dead process", "dir", dir, "pid", o.PID)
		for _, pid := range o.NspawnPID {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if strings.Contains(string(cmdline), dir) {
				_ = syscall.Kill(pid, syscall.SIGTERM)
			}
		}
		for i := 0; i < 50; i++ {
			alive := false
			for _, pid := range o.NspawnPID {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				alive = alive || strings.Contains(string(cmdline), dir)
			}
			if !alive {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, cg := range o.Cgroups {
			if strings.Contains(cg, "/vipd-lab/") {
				_ = killCgroup(cg)
			}
		}
		for _, m := range o.Mounts {
			if strings.HasPrefix(m, dir+"/") {
				if err := syscall.Unmount(m, 0); err != nil {
					_ = syscall.Unmount(m, syscall.MNT_DETACH)
				}
			}
		}
		for _, cg := range o.Cgroups {
			if strings.Contains(cg, "/vipd-lab/") {
				_ = removeCgroup(cg)
			}
		}
		for i := len(o.NetNS) - 1; i >= 0; i-- {
			if ns := o.NetNS[i]; ns != "" && !strings.ContainsAny(ns, "/.") {
				_ = syscall.Unmount(filepath.Join("/run/netns", ns), syscall.MNT_DETACH)
				_ = os.Remove(filepath.Join("/run/netns", ns))
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			log.Warn("remove stale lab dir", "dir", dir, "err", err)
		}
	}
}
