package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The control socket (control_socket, mode 0660) serves, as HTTP:
//
//	GET  /stats.json              the stats snapshot (vipd status)
//	GET  /backends                the backends with their run-time state (vipd backend list)
//	POST /backends/{verb}         drain, disable, enable, weight (vipd backend ...)
//	POST /maintenance/{on|off}    (vipd maintenance ...)
//
// Reading is open to whoever can open the socket (root and group vipd by its mode). A change is
// accepted only from a peer whose credentials, read from the socket itself (SO_PEERCRED), are
// uid 0 or a member of group vipd, and is logged with who asked.

// adminGroup is the group whose members may change the daemon's state over the socket.
const adminGroup = "vipd"

// serveControl answers on the local control socket.
func (d *daemon) serveControl(ctx context.Context) (net.Listener, error) {
	path := d.cfg.ControlSocket
	ln, err := listenControl(path)
	if err != nil {
		return nil, err
	}
	ours, _ := os.Lstat(path)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats.json", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, d.snapshot())
	})
	mux.HandleFunc("GET /backends", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, d.snapshot().Backends)
	})
	mux.HandleFunc("POST /backends/{verb}", d.changeOnly(d.handleBackend))
	mux.HandleFunc("POST /maintenance/{mode}", d.changeOnly(d.handleMaintenance))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ConnContext: withPeerCred}
	go func() {
		_ = srv.Serve(ln)
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
		// Only the socket this daemon made: not a file someone put there since.
		if st, err := os.Lstat(path); err == nil && ours != nil && os.SameFile(st, ours) {
			_ = os.Remove(path)
		}
	}()
	return ln, nil
}

// ctlResult is the answer to a change: what was done, for the CLI to print.
type ctlResult struct {
	Backend string `json:"backend,omitempty"`
	Message string `json:"message"`
	// DrainEnds is, for a drain with a grace, when the open connections will be closed.
	DrainEnds time.Time `json:"drain_ends,omitzero"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// ctlError is an error answer: code 400 for a request naming something that does not exist,
// 403 for a peer not allowed, 409 for a change the daemon refused.
type ctlError struct {
	code int
	msg  string
}

func (e *ctlError) Error() string { return e.msg }

// changeOnly runs h for an authorized peer, with who it is for the log.
func (d *daemon) changeOnly(h func(r *http.Request, who peer) (ctlResult, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := r.Context().Value(peerKey{}).(peer)
		if !ok {
			http.Error(w, "cannot read the peer's credentials on the control socket", http.StatusForbidden)
			return
		}
		if err := who.authorized(); err != nil {
			d.log.Warn("control: change refused", "path", r.URL.Path, "uid", who.UID, "pid", who.PID, "user", who.User, "err", err)
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		res, err := h(r, who)
		if err != nil {
			code := http.StatusConflict
			var ce *ctlError
			if errors.As(err, &ce) {
				code = ce.code
			}
			http.Error(w, err.Error(), code)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}

// peer is the process at the other end of a control connection.
type peer struct {
	UID, GID uint32
	PID      int32
	User     string // "" when uid has no name
}

type peerKey struct{}

// withPeerCred reads SO_PEERCRED once per connection.
func withPeerCred(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return ctx
	}
	p := peer{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}
	if u, err := user.LookupId(strconv.FormatUint(uint64(cred.Uid), 10)); err == nil {
		p.User = u.Username
	}
	return context.WithValue(ctx, peerKey{}, p)
}

// authorized: uid 0, or group vipd as the peer's group or one of its user's groups.
func (p peer) authorized() error {
	if p.UID == 0 {
		return nil
	}
	g, err := user.LookupGroup(adminGroup)
	if err != nil {
		return fmt.Errorf("uid %d may not change vipd's state (only root, as group %s does not exist here)", p.UID, adminGroup)
	}
	if strconv.FormatUint(uint64(p.GID), 10) == g.Gid {
		return nil
	}
	if u, err := user.LookupId(strconv.FormatUint(uint64(p.UID), 10)); err == nil {
		if gids, err := u.GroupIds(); err == nil && slices.Contains(gids, g.Gid) {
			return nil
		}
	}
	return fmt.Errorf("uid %d (%s) may not change vipd's state: only root and members of group %s", p.UID, p.User, adminGroup)
}

// logAttrs are who asked, for the log line of every change.
func (p peer) logAttrs() []any {
	return []any{"by_uid", p.UID, "by_pid", p.PID, "by_user", p.User}
}

// listenControl binds the control socket at path (mode 0660). It removes a stale socket left
// by an earlier run, but never anything else: control_socket set to an existing regular file,
// directory or symlink is refused and the file left as it is. A socket a running vipd still
// answers on is not taken over either.
func listenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	case st.Mode().Type() != os.ModeSocket:
		return nil, fmt.Errorf("control_socket: %s exists and is not a socket (mode %s); refusing to remove it", path, st.Mode())
	default:
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("control_socket: %s is in use by another process (a vipd already running?)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
