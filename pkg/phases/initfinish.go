package phases

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/vipd-project/vipd/pkg/topology"
)

// kubeadm init runs its phases in order and stops at the first error. The phases after
// wait-control-plane talk to the new API server through the control-plane endpoint (the VIP),
// seconds after it first answered; on a loaded machine one request there can meet a
// restarting API server ("error execution phase upload-config/kubelet: ... error patching
// Node ...: read: connection reset", seen on the real cluster after a rerun's reset). Those
// phases are idempotent, so bootstrap finishes init by running them again, instead of
// failing or resetting a control plane that works.

// initPostPhases are kubeadm init's phases after the control plane runs, in kubeadm's order.
var initPostPhases = []string{"upload-config all", "upload-certs --upload-certs", "mark-control-plane", "bootstrap-token", "kubelet-finalize all", "addon all"}

var reInitPhase = regexp.MustCompile(`error execution phase ([a-z-]+)`)

// initFailedAfterControlPlane tells whether kubeadm init's error is in a phase after the
// control plane came up, and which one.
func initFailedAfterControlPlane(stderr string) (string, bool) {
	m := reInitPhase.FindStringSubmatch(stderr)
	if m == nil {
		return "", false
	}
	for _, p := range initPostPhases {
		if strings.HasPrefix(p, m[1]) {
			return m[1], true
		}
	}
	return "", false
}

// finishInit runs kubeadm init's phases after the control plane again (3 attempts, the API
// server asked for /readyz before each).
func (r *Runner) finishInit(ctx context.Context, h topology.Host) error {
	var cmds []string
	for _, p := range initPostPhases {
		cmds = append(cmds, "kubeadm init phase "+p+" --config "+KubeadmConfig+" >/dev/null")
	}
	script := fmt.Sprintf("i=0; until %s get --raw /readyz >/dev/null 2>&1; do i=$((i+1)); [ $i -ge 60 ] && break; sleep 1; done\n%s", kubectl, strings.Join(cmds, " &&\n"))
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if _, err = r.change(ctx, h, "init/finish", script); err == nil {
			return nil
		}
		r.log.Info("finishing kubeadm init failed, retrying", "host", h.Name, "attempt", attempt, "err", err)
		if serr := sleep(ctx, 5*time.Second); serr != nil {
			return serr
		}
	}
	return err
}

// initErrLine is kubeadm's "error execution phase" line, shortened.
func initErrLine(stderr string) string {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "error execution phase") {
			l = strings.TrimSpace(l)
			if len(l) > 160 {
				l = l[:160] + "..."
			}
			return l
		}
	}
	return "kubeadm init failed"
}
