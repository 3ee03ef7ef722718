// Package phases owns what bootstrap does on the hosts: the k0sctl-style phases (facts, lb,
// common, init, cni, join-masters, join-workers, verify), each probing a host before acting and
// skipping what is done; the plan printed by --dry-run; and the status, drill, reset and
// kubeconfig operations. Hosts are reached through the small Host interface (an *sshx.Client
// in production, a fake answering recorded outputs in the unit tests).
package phases

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/vipd-project/vipd/pkg/sshx"
)

// Host runs commands as root on one machine and uploads files to it.
type Host interface {
	// Run runs cmd with sh -c as root. A non-zero exit gives an *sshx.ExitError with the
	// Result filled in.
	Run(ctx context.Context, cmd string) (sshx.Result, error)
	// Upload writes data to path atomically with the given mode and owner ("root:vipd").
	Upload(ctx context.Context, path string, data []byte, mode os.FileMode, owner string) error
}

// Commands start with a tag comment naming what they are for: "# probe lb" for read-only
// questions, "# change common/swap" for commands that change the host. The tags make the
// commands recognisable in logs and let tests tell probes from changes.
func probeCmd(what, script string) string  { return "# probe " + what + "\n" + script }
func changeCmd(what, script string) string { return "# change " + what + "\n" + script }

// IsProbe reports whether a command issued by this package only reads the host.
func IsProbe(cmd string) bool { return strings.HasPrefix(cmd, "# probe ") }

// exitCode returns the exit code of a command that ran (0 when err is nil), or -1 and the
// error when it did not run at all (connection lost, context cancelled).
func exitCode(err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var ee *sshx.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode, nil
	}
	return -1, err
}

// StepError is a failure of one step of a phase on a host, with the fix when one is known.
type StepError struct {
	Step string
	Fix  string
	Err  error
}

func (e *StepError) Error() string {
	s := e.Step
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *StepError) Unwrap() error { return e.Err }

func stepErr(step string, err error) error {
	if err == nil {
		return nil
	}
	return &StepError{Step: step, Err: err}
}

// PhaseError is what Up returns when a phase failed on a host.
type PhaseError struct {
	Host  string
	Phase string
	Err   error
}

func (e *PhaseError) Error() string { return fmt.Sprintf("[%s] %s: %v", e.Host, e.Phase, e.Err) }
func (e *PhaseError) Unwrap() error { return e.Err }

// ExitCodeOf returns the exit code of the failed remote command inside err, or -1.
func ExitCodeOf(err error) int {
	var ee *sshx.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode
	}
	return -1
}

// FixOf returns the suggested fix carried by err, if any.
func FixOf(err error) string {
	var se *StepError
	for e := err; errors.As(e, &se); e = se.Err {
		if se.Fix != "" {
			return se.Fix
		}
	}
	return ""
}

func asExit(err error) *sshx.ExitError {
	var ee *sshx.ExitError
	if errors.As(err, &ee) {
		return ee
	}
	return nil
}
