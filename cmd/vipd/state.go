package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vipd-project/vipd/pkg/tcpproxy"
)

// savedState is state_file: what was set at run time over the control socket, so that a
// restart (an upgrade of vipd, a crash) comes back as the operator left it. Only what differs
// from the file's defaults is written.
type savedState struct {
	// Maintenance: the host stays BACKUP until `vipd maintenance off`.
	Maintenance bool `json:"maintenance,omitempty"`
	// Backends: address as in vipd.yaml -> its run-time state.
	Backends map[string]savedBackend `json:"backends,omitempty"`
}

type savedBackend struct {
	Admin  string `json:"admin"` // READY, DRAIN or MAINT
	Weight int    `json:"weight"`
}

func (d *daemon) stateFile() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.StateFile
}

// saveState writes the current run-time state to state_file atomically (mode 0640): a temporary
// file in the same directory, synced, renamed over the old one.
func (d *daemon) saveState() error {
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	st := savedState{Maintenance: d.maint.Load(), Backends: map[string]savedBackend{}}
	if d.proxy != nil {
		for _, b := range d.proxy.Admin() {
			if b.State != tcpproxy.AdminReady || b.Weight != tcpproxy.DefaultWeight {
				st.Backends[b.Addr] = savedBackend{Admin: b.State.String(), Weight: b.Weight}
			}
		}
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	path := d.stateFile()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if err := tmp.Chmod(0o640); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// loadState applies state_file at start. A missing file is a fresh start; an unreadable one is
// logged and ignored (the LB must come up; the file's defaults apply); a backend the file names
// that vipd.yaml no longer lists is dropped.
func (d *daemon) loadState() {
	path := d.stateFile()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var st savedState
	if err == nil {
		err = json.Unmarshal(data, &st)
	}
	if err != nil {
		d.log.Error("state_file unreadable; starting with every backend READY and no maintenance", "state_file", path, "err", err)
		return
	}
	if st.Maintenance {
		d.maint.Store(true)
		d.log.Warn("maintenance mode kept from before the restart: this host stays BACKUP until `vipd maintenance off`", "state_file", path)
	}
	for addr, b := range st.Backends {
		if err := d.applySaved(addr, b); err != nil {
			d.log.Warn("state_file: backend state dropped", "state_file", path, "backend", addr, "err", err)
			continue
		}
		d.log.Info("backend state kept from before the restart", "backend", addr, "admin", b.Admin, "weight", b.Weight)
	}
}

func (d *daemon) applySaved(addr string, b savedBackend) error {
	if d.proxy == nil {
		return errors.New("no proxy section")
	}
	var st tcpproxy.AdminState
	switch b.Admin {
	case "READY":
		st = tcpproxy.AdminReady
	case "DRAIN":
		st = tcpproxy.AdminDrain
	case "MAINT":
		st = tcpproxy.AdminMaint
	default:
		return fmt.Errorf("unknown admin state %q", b.Admin)
	}
	if err := d.proxy.SetWeight(addr, b.Weight); err != nil {
		return err
	}
	_, err := d.proxy.SetAdmin(addr, st, 0)
	return err
}
