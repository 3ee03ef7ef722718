package phases

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/vipd-project/vipd/pkg/topology"
)

type lbPhase struct{}

func (lbPhase) Name() string                    { return PhaseLB }
func (lbPhase) Title() string                   { return "Install vipd on the load balancers" }
func (lbPhase) Parallel() bool                  { return true }
func (lbPhase) Hosts(r *Runner) []topology.Host { return r.t.LBs() }

type wantFile struct {
	path  string
	data  []byte
	mode  os.FileMode
	owner string // user:group
	what  string
}

type lbState struct {
	files      []wantFile
	stale      []wantFile // files to upload
	pkg        pkgState
	noUser     bool
	badDir     bool
	enabled    bool
	active     bool
	binProblem string // dry run: the vipd package could not be built
	// restartFor lists the changed settings that vipd applies only on restart (a reload
	// refuses them): the gossip cluster section, listen addresses, node name.
	restartFor []string
	keyNote    string // what happens to the gossip key, for the summary line
}

const lbProbeScript = `for f in %s; do
  if [ -f "$f" ]; then echo "file $f $(stat -c '%%a %%U:%%G' "$f") $(sha256sum < "$f" | cut -d' ' -f1)"; fi
done
echo "dir $(stat -c '%%a %%U:%%G' /etc/vipd 2>/dev/null)"
id -u vipd >/dev/null 2>&1 && echo "user yes" || echo "user no"
echo "enabled $(systemctl is-enabled vipd 2>/dev/null)"
echo "active $(systemctl is-active vipd 2>/dev/null)"
`

// configOnly: only the configuration (or the VRRP password) changed, which vipd reloads on
// SIGHUP without giving up the VIP.
func (s *lbState) configOnly() bool {
	if len(s.stale) == 0 || s.binProblem != "" || s.pkg.stale || len(s.restartFor) > 0 {
		return false
	}
	for _, f := range s.stale {
		if f.path != VipdConfigPath && f.path != VipdAuthPath {
			return false
		}
	}
	return true
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// desired returns the files bootstrap writes on h and the vipd package for h; in a dry run,
// a package that cannot be built is a problem for the plan instead of an error.
func (lbPhase) desired(ctx context.Context, r *Runner, h topology.Host) ([]wantFile, *VipdPackage, string, error) {
	f, err := r.Facts(ctx, h)
	if err != nil {
		return nil, nil, "", err
	}
	cfg, err := RenderVipdConfig(r.t, h, f.Interface)
	if err != nil {
		return nil, nil, "", err
	}
	var files []wantFile
	if r.t.GossipEnabled() {
		k, err := r.gossipKey(ctx)
		if err != nil {
			return nil, nil, "", err
		}
		// Before the configuration that names it. vipd (user vipd) refuses a key others can
		// read or its group can write: root:vipd 0640.
		data, what := k.forHost(h)
		files = append(files, wantFile{VipdGossipKey, data, 0o640, "root:vipd", what})
	}
	files = append(files,
		wantFile{VipdConfigPath, cfg, 0o640, "root:vipd", "vipd config"})
	lb := r.t.LoadBalancer
	if lb.VRRPVersion == 2 && lb.AuthPassEnv != "" {
		pass := r.o.Getenv(lb.AuthPassEnv)
		if pass == "" && !r.o.DryRun {
			return nil, nil, "", fmt.Errorf("loadBalancer.authPassEnv: environment variable %s is empty", lb.AuthPassEnv)
		}
		files = append(files, wantFile{VipdAuthPath, []byte(pass + "\n"), 0o640, "root:vipd", "VRRP password"})
	}
	pkg, err := r.o.VipdPackage(f.Arch)
	if err != nil {
		if !r.o.DryRun {
			return nil, nil, "", fmt.Errorf("vipd package for %s: %w", f.Arch, err)
		}
		return files, nil, err.Error(), nil
	}
	return files, pkg, "", nil
}

func (p lbPhase) Probe(ctx context.Context, r *Runner, h topology.Host) (Status, error) {
	files, pkg, binProblem, err := p.desired(ctx, r, h)
	if err != nil {
		return Status{}, err
	}
	paths := []string{VipdBinaryPath, VipdConfigPath, VipdUnitPath, VipdAuthPath, VipdGossipKey}
	out, _, err := r.probe(ctx, h, "lb", fmt.Sprintf(lbProbeScript, strings.Join(paths, " "))+pkgProbeScript)
	if err != nil {
		return Status{}, err
	}
	have := map[string]string{} // path -> "mode owner sha"
	s := &lbState{files: files, binProblem: binProblem, pkg: pkgState{want: pkg}}
	for _, line := range strings.Split(out, "\n") {
		fs := strings.Fields(line)
		switch {
		case s.pkg.parse(line):
		case len(fs) == 5 && fs[0] == "file":
			have[fs[1]] = strings.Join(fs[2:], " ")
		case len(fs) >= 1 && fs[0] == "dir":
			s.badDir = strings.Join(fs[1:], " ") != "750 root:vipd"
		case line == "user no":
			s.noUser = true
		case len(fs) == 2 && fs[0] == "enabled":
			s.enabled = fs[1] == "enabled"
		case len(fs) == 2 && fs[0] == "active":
			s.active = fs[1] == "active"
		}
	}
	todo := s.pkg.todo(have)
	if binProblem != "" {
		todo = append(todo, "install the vipd package: "+binProblem)
		s.pkg.stale = true
	}
	if s.noUser && !s.pkg.stale {
		todo = append(todo, "create the system user vipd")
	}
	if s.badDir && !(s.noUser && s.pkg.stale) {
		// (A first install of the package makes it, with the user.)
		todo = append(todo, "create /etc/vipd (0750 root:vipd)")
	}
	for _, f := range files {
		want := fmt.Sprintf("%o %s %s", f.mode, f.owner, sha(f.data))
		if have[f.path] != want {
			s.stale = append(s.stale, f)
			todo = append(todo, fmt.Sprintf("upload %s (%04o %s, %s)", f.path, f.mode, f.owner, f.what))
			switch f.path {
			case VipdGossipKey:
				// vipd reads the key when it starts.
				s.restartFor = append(s.restartFor, "gossip key")
				if k, err := r.gossipKey(ctx); err == nil {
					s.keyNote = k.note(h)
				}
			case VipdConfigPath:
				if s.active && have[f.path] != "" {
					running, _, err := r.probe(ctx, h, "lb/config", "cat "+VipdConfigPath)
					if err != nil {
						return Status{}, err
					}
					s.restartFor = append(s.restartFor, restartOnlyChanges([]byte(running), f.data)...)
				}
			}
		}
	}
	if !s.enabled {
		todo = append(todo, "systemctl enable vipd")
	}
	switch {
	case s.pkg.stale && s.active:
		todo = append(todo, "restart vipd on the new package (the package's postinst does; one lb at a time)")
	case !s.active:
		todo = append(todo, "systemctl start vipd")
	case s.configOnly():
		todo = append(todo, "systemctl reload vipd (configuration only: the VIP stays where it is)")
	case len(s.restartFor) > 0 && len(s.stale) > 0:
		during := "the VIP moves to another lb meanwhile"
		if len(r.t.LBs()) < 2 {
			during = "the VIP is down meanwhile"
		}
		todo = append(todo, fmt.Sprintf("systemctl restart vipd (%s changed, which vipd applies only on a restart; %s)", strings.Join(s.restartFor, ", "), during))
	case len(s.stale) > 0:
		todo = append(todo, "systemctl restart vipd")
	}
	if len(todo) == 0 {
		return Status{Done: true, Detail: fmt.Sprintf("vipd installed, configured and running (package %s)", s.pkg.installed)}, nil
	}
	return Status{Todo: todo, data: s}, nil
}

func (lbPhase) Run(ctx context.Context, r *Runner, h topology.Host, st Status) (string, error) {
	s := st.data.(*lbState)
	fresh := s.noUser // no vipd user yet: the package's first install makes it and /etc/vipd
	if s.pkg.stale && fresh {
		// vipd cannot run yet (no configuration but the package's example): nothing to
		// serialise with the other lbs.
		if err := s.pkg.install(ctx, r, h); err != nil {
			return "", err
		}
	} else if s.noUser {
		if _, err := r.change(ctx, h, "lb/user", "id -u vipd >/dev/null 2>&1 || useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vipd"); err != nil {
			return "", err
		}
	}
	if s.badDir && !(fresh && s.pkg.stale) {
		if _, err := r.change(ctx, h, "lb/dir", "install -d -m 0750 -o root -g vipd /etc/vipd"); err != nil {
			return "", err
		}
	}
	// The configuration before an upgrade of the package: its postinst restarts vipd once,
	// on the new binary with the new configuration.
	for _, f := range s.stale {
		if err := r.upload(ctx, h, f.path, f.data, f.mode, f.owner); err != nil {
			return "", err
		}
	}
	restarting := s.active && (s.pkg.stale || (len(s.stale) > 0 && !s.configOnly()))
	if restarting {
		// One lb at a time: a stopping vipd hands the VIP over and drains its connections;
		// restarting every lb at once would leave the VIP on none of them meanwhile.
		r.lbRestartMu.Lock()
		defer r.lbRestartMu.Unlock()
	}
	if s.pkg.stale && !fresh {
		if err := s.pkg.install(ctx, r, h); err != nil {
			return "", err
		}
	}
	var cmds []string
	if !s.enabled {
		cmds = append(cmds, "systemctl enable vipd")
	}
	verb := "vipd started"
	switch {
	case s.pkg.stale && s.active && (s.enabled && len(s.pkg.legacy) == 0):
		// The postinst restarted it (it restarts an enabled vipd whose configuration is not
		// the example); start is a no-op then and says why if vipd is down.
		cmds = append(cmds, "systemctl start vipd")
		verb = "vipd updated and restarted, package " + s.pkg.want.Version + " installed"
	case s.pkg.stale && s.active:
		cmds = append(cmds, "systemctl restart vipd")
		verb = "vipd updated and restarted, package " + s.pkg.want.Version + " installed"
	case !s.active:
		// restart, not start: a first install's postinst may have started vipd on a
		// configuration left from an earlier install, before bootstrap wrote this one.
		cmds = append(cmds, "systemctl restart vipd")
		if s.pkg.stale {
			verb = "vipd started, package " + s.pkg.want.Version + " installed"
		}
	case s.configOnly():
		cmds = append(cmds, "systemctl reload vipd")
		verb = "vipd configuration reloaded"
	case len(s.stale) > 0:
		cmds = append(cmds, "systemctl restart vipd")
		verb = "vipd updated and restarted"
	default:
		verb = "vipd enabled"
	}
	if len(cmds) > 0 {
		if _, err := r.change(ctx, h, "lb/systemctl", strings.Join(cmds, " && ")); err != nil {
			if st, _, perr := r.probe(ctx, h, "lb/journal", "journalctl -u vipd -n 5 --no-pager -o cat 2>/dev/null"); perr == nil && st != "" {
				return "", &StepError{Step: "start vipd", Err: err, Fix: "vipd's last log lines:\n" + strings.TrimSpace(st)}
			}
			return "", err
		}
	}
	msg := fmt.Sprintf("%s (priority %d)", verb, r.t.LBPriority(h))
	if s.keyNote != "" {
		msg += "; " + s.keyNote
	}
	return msg, nil
}

// VIPHolders returns the lb hosts that have the VIP on an interface now.
func (r *Runner) VIPHolders(ctx context.Context) ([]string, error) {
	lbs := r.t.LBs()
	held := make([]bool, len(lbs))
	err := forEach(lbs, func(h topology.Host) error {
		ok, err := r.holdsVIP(ctx, h)
		held[indexOf(lbs, h)] = ok
		return err
	})
	var names []string
	for i, h := range lbs {
		if held[i] {
			names = append(names, h.Name)
		}
	}
	return names, err
}

func indexOf(hs []topology.Host, h topology.Host) int {
	for i := range hs {
		if hs[i].Name == h.Name {
			return i
		}
	}
	return -1
}

func (r *Runner) holdsVIP(ctx context.Context, h topology.Host) (bool, error) {
	out, _, err := r.probe(ctx, h, "lb/vip", "ip -o -4 addr show")
	if err != nil {
		return false, err
	}
	return strings.Contains(out, " inet "+r.t.VIPAddr()+"/"), nil
}

// Finish waits until exactly one lb holds the VIP.
func (lbPhase) Finish(ctx context.Context, r *Runner) (string, string, error) {
	deadline := time.Now().Add(r.o.VIPTimeout)
	var holders []string
	for {
		var err error
		holders, err = r.VIPHolders(ctx)
		if err != nil {
			return "", "", err
		}
		if len(holders) == 1 {
			return holders[0], fmt.Sprintf("holds the VIP %s", r.t.VIPPrefix()), nil
		}
		if time.Now().After(deadline) {
			break
		}
		if err := sleep(ctx, r.o.Poll/2); err != nil {
			return "", "", err
		}
	}
	if len(holders) == 0 {
		return "", "", &StepError{Step: "wait for the VIP", Err: fmt.Errorf("no lb holds %s after %s", r.t.VIPPrefix(), r.o.VIPTimeout),
			Fix: "check `journalctl -u vipd` on the lb hosts and `vipd status`; VRRP (IP protocol 112) must pass between them"}
	}
	return "", "", &StepError{Step: "wait for the VIP", Err: fmt.Errorf("%s all hold %s after %s (split brain)", strings.Join(holders, ", "), r.t.VIPPrefix(), r.o.VIPTimeout),
		Fix: "the lb hosts do not hear each other's VRRP adverts: allow IP protocol 112 (multicast 224.0.0.18) between them, or set loadBalancer.unicast: true"}
}
