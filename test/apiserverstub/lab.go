package apiserverstub

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/vipd-project/vipd/test/lab"
)

// Masters runs the stand-in as a process on lab hosts (port 6443), one per host, so a test, the
// demo or a benchmark can SIGKILL a master by PID and start it again. The lab ends the processes
// by PID when it closes.
type Masters struct {
	// CA signed every master's certificate; CAFile is its PEM in the lab directory.
	CA     *CA
	CAFile string
	// Bin is the stand-in program, built into the lab directory.
	Bin string

	lab   *lab.Lab
	sans  []net.IP
	hosts map[string]*lab.Host
	procs map[string]*lab.Proc
	all   []*lab.Proc
}

// StartMasters builds the stand-in, makes a CA, and starts the stand-in on each host with a
// certificate for the host's address and extraSANs (the VIP and the LBs' addresses, so clients
// that connect through them verify too). It returns once every master accepts connections.
func StartMasters(ctx context.Context, l *lab.Lab, hosts []*lab.Host, extraSANs []net.IP) (*Masters, error) {
	bin, err := Build(ctx, l.Dir)
	if err != nil {
		return nil, err
	}
	ca, err := NewCA("vipd lab CA")
	if err != nil {
		return nil, err
	}
	m := &Masters{CA: ca, CAFile: filepath.Join(l.Dir, "apiserver-ca.crt"), Bin: bin, lab: l, sans: extraSANs,
		hosts: map[string]*lab.Host{}, procs: map[string]*lab.Proc{}}
	if err := ca.WriteCA(m.CAFile); err != nil {
		return nil, err
	}
	for _, h := range hosts {
		m.hosts[h.Name] = h
		if err := m.Start(ctx, h.Name); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Start starts (or restarts, after Kill) the stand-in on the named host and waits until it
// accepts connections (at most 30 s).
func (m *Masters) Start(ctx context.Context, name string) error {
	h := m.hosts[name]
	if h == nil {
		return fmt.Errorf("apiserverstub: no master %q", name)
	}
	if p := m.procs[name]; p != nil && p.Running() {
		return fmt.Errorf("apiserverstub: %s is still running (pid %d)", name, p.PID)
	}
	crt, key, err := m.CA.WriteFiles(m.lab.Dir, "apiserver-"+name, append([]net.IP{h.Addr.AsSlice()}, m.sans...), nil)
	if err != nil {
		return err
	}
	p, err := h.Start("apiserver", []string{m.Bin, "-listen", ":6443", "-cert", crt, "-key", key, "-host", name}, "")
	if err != nil {
		return err
	}
	m.procs[name] = p
	m.all = append(m.all, p)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		c, err := h.Dial(ctx, "tcp", "127.0.0.1:6443")
		if err == nil {
			c.Close()
			return nil
		}
		if !p.Running() {
			return fmt.Errorf("apiserverstub on %s exited: %v\n%s", name, p.Wait(0), p.Tail(10))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("apiserverstub on %s: not listening: %w (%v)\n%s", name, ctx.Err(), err, p.Tail(10))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Kill SIGKILLs the named master's stand-in (by PID) and waits for it to exit.
func (m *Masters) Kill(name string) error {
	p := m.procs[name]
	if p == nil {
		return fmt.Errorf("apiserverstub: no master %q", name)
	}
	p.Kill()
	select {
	case <-p.Done():
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("apiserverstub on %s (pid %d) did not exit after SIGKILL", name, p.PID)
	}
}

// Proc is the named master's current process (nil before Start).
func (m *Masters) Proc(name string) *lab.Proc { return m.procs[name] }

// Procs returns every process started so far, restarts included (e.g. to check none is left).
func (m *Masters) Procs() []*lab.Proc { return append([]*lab.Proc(nil), m.all...) }

// Addr is host:6443 of the named master.
func (m *Masters) Addr(name string) string {
	return net.JoinHostPort(m.hosts[name].Addr.String(), "6443")
}

// ClientTLS is a client configuration that verifies the masters' certificates with the CA.
func (m *Masters) ClientTLS() *tls.Config {
	return &tls.Config{RootCAs: m.CA.Pool(), MinVersion: tls.VersionTLS12}
}
