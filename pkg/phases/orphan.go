package phases

import (
	"fmt"
	"regexp"
	"strings"
)

// A kubeadm init or join that bootstrap started outlives bootstrap when bootstrap is
// interrupted (a closed terminal, SIGKILL, Ctrl-C): its SSH session ends, but nothing signals
// a command without a terminal, and sudo does not pass on the SIGKILL bootstrap sends when it
// is cancelled. The orphan runs on until it next writes to the closed pipe or finishes (the
// real-Kubernetes kill-and-rerun test saw one still running after the kill). A rerun that
// repaired the host meanwhile would race it: after the rerun's `kubeadm reset -f` the old
// join could still add its etcd member or write its manifests. So bootstrap records the PID
// of each kubeadm init and join it starts, and a rerun stops one still running (SIGTERM, then
// SIGKILL after 10 s) before it repairs the host; `status` reports it as half-done.

// KubeadmPIDFile holds the PID of the last kubeadm init or join bootstrap started on a host
// (a tmpfs: it does not outlive a reboot, and neither does the process).
const KubeadmPIDFile = JoinConfigDir + "/kubeadm.pid"

// kubeadmTracked is a shell command running `kubeadm ARGS` with its PID recorded; its exit
// status is kubeadm's. kubeadm runs as a background child the shell waits for, so a trapped
// signal ends the wait at once (the traps of the join command still run).
func kubeadmTracked(args string) string {
	return fmt.Sprintf("install -d -m 0700 %s && { kubeadm %s & echo $! > %s; wait $!; }", JoinConfigDir, args, KubeadmPIDFile)
}

// orphanProbe prints "kubeadm-running:PID" when the recorded kubeadm init/join still runs.
const orphanProbe = `p=$(cat ` + KubeadmPIDFile + ` 2>/dev/null) && [ -n "$p" ] && tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -qE '^kubeadm (init|join) ' && echo "kubeadm-running:$p"
`

var reOrphan = regexp.MustCompile(`(?m)^kubeadm-running:([0-9]+)$`)

// splitOrphan takes orphanProbe's line out of a probe's output: the PID ("" when none) and
// the rest of the output.
func splitOrphan(out string) (pid, rest string) {
	if m := reOrphan.FindStringSubmatch(out); m != nil {
		return m[1], reOrphan.ReplaceAllString(out, "")
	}
	return "", out
}

// stopOrphanCmd stops the kubeadm with that PID if it is still the recorded kubeadm init or
// join: SIGTERM, then SIGKILL after 10 s; it returns once the process is gone.
func stopOrphanCmd(pid string) string {
	return fmt.Sprintf(`p=%s
tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -qE '^kubeadm (init|join) ' || exit 0
kill -TERM "$p" 2>/dev/null
i=0
while kill -0 "$p" 2>/dev/null; do
  i=$((i+1))
  if [ "$i" -eq 100 ]; then kill -KILL "$p" 2>/dev/null; fi
  if [ "$i" -ge 150 ]; then echo "kubeadm (pid $p) did not stop" >&2; exit 1; fi
  sleep 0.1
done
rm -f %s`, pid, KubeadmPIDFile)
}

// orphanNote is how a probe reports a running orphan.
func orphanNote(what, pid string) string {
	return fmt.Sprintf("the %s of an interrupted run is still running (pid %s)", what, strings.TrimSpace(pid))
}
