// Package measure holds what the benchmarks share: reading a process's CPU time and memory
// from /proc, and summarizing repeated timings as median/min/max.
package measure

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CPUTicks returns utime+stime of pid in clock ticks (USER_HZ, 100 on Linux).
func CPUTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(s[i+2:])
	// After ") ": state is index 0, so utime (field 14 of stat) is index 11 and stime 12.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: parse utime/stime", pid)
	}
	return u + st, nil
}

// StatusKiB returns the number in field key of /proc/PID/status (VmRSS, RssAnon, RssFile,
// VmHWM: KiB).
func StatusKiB(pid int, key string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, key)
}

// Stat is the median, minimum and maximum of a set of timings.
type Stat struct{ Med, Min, Max time.Duration }

// Summarize returns the Stat of ds (zero for none); the median of an even count is the mean
// of the middle two.
func Summarize(ds []time.Duration) Stat {
	if len(ds) == 0 {
		return Stat{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Med: med, Min: s[0], Max: s[len(s)-1]}
}

// Secs formats d as seconds with millisecond precision.
func Secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// String is "med / min / max" in seconds.
func (s Stat) String() string { return Secs(s.Med) + " / " + Secs(s.Min) + " / " + Secs(s.Max) }
