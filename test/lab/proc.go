package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Proc is a process started in a host with Host.Start.
type Proc struct {
	Name    string
	PID     int
	LogPath string
	Host    *Host
	Started time.Time

	done    chan struct{}
	waitErr error
	state   *os.ProcessState
	proc    *os.Process
}

// Start runs argv in the host's namespace in the background, stdout and stderr appended to
// logfile (default DIR/HOST-NAME.log). The lab ends it by PID in Close. The process is in a
// process group of its own (a Ctrl-C on the terminal reaches only the caller) and gets SIGKILL
// if the caller dies.
func (h *Host) Start(name string, argv []string, logfile string) (*Proc, error) {
	if logfile == "" {
		logfile = filepath.Join(h.lab.Dir, h.Name+"-"+name+".log")
	}
	f, err := os.OpenFile(logfile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: open log for %s: %w", h.Name, name, err)
	}
	defer f.Close()
	cmd := h.Command(context.Background(), argv...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := h.lab.startCmd(cmd); err != nil {
		return nil, fmt.Errorf("%s: start %s (%s): %w", h.Name, name, strings.Join(argv, " "), err)
	}
	p := &Proc{Name: name, PID: cmd.Process.Pid, LogPath: logfile, Host: h, Started: time.Now(),
		done: make(chan struct{}), proc: cmd.Process}
	go func() {
		p.waitErr = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	if err := h.lab.addProc(p); err != nil {
		p.Kill()
		<-p.done
		return nil, err
	}
	return p, nil
}

// Signal sends sig to the process (by PID); a no-op once it has exited.
func (p *Proc) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.proc.Signal(sig); err != nil && err != os.ErrProcessDone {
		return fmt.Errorf("signal %s (pid %d): %w", p.Name, p.PID, err)
	}
	return nil
}

// Kill sends SIGKILL (by PID).
func (p *Proc) Kill() { _ = p.Signal(syscall.SIGKILL) }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Running reports whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Wait waits up to timeout for the process to exit and returns its exit error (nil for status 0).
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.waitErr
	default:
	}
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running after %s", p.Name, p.PID, timeout)
	}
}

// Stop sends SIGTERM and waits up to timeout, then SIGKILLs.
func (p *Proc) Stop(timeout time.Duration) error {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if err := p.Wait(timeout); err != nil && p.Running() {
		p.Kill()
		<-p.done
		return err
	}
	return nil
}

// Log returns the process's log so far.
func (p *Proc) Log() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", p.LogPath, err)
	}
	return string(b)
}

// Tail returns the last n lines of the log.
func (p *Proc) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
