package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vipd-project/vipd/pkg/stats"
)

// VipdOptions describe one vipd instance in a lab host. Zero values take the defaults noted.
type VipdOptions struct {
	// Bin is the vipd binary (required).
	Bin string
	// VIP is the virtual address (a /24 in the lab subnet).
	VIP      netip.Addr
	VRID     int // default 51
	Priority int // required, 1-255
	Version  int // default 3
	// Advert is the advertisement interval (0: vipd's default).
	Advert time.Duration
	// Preempt: nil keeps vipd's default (true).
	Preempt      *bool
	PreemptDelay time.Duration
	// UnicastPeers: empty means multicast.
	UnicastPeers []netip.Addr
	// AuthPass for VRRPv2 PASS.
	AuthPass string
	// TrackInterface: nil keeps vipd's default (true).
	TrackInterface *bool
	// GARPRefresh: 0 keeps the default.
	GARPRefresh time.Duration
	// LogLevel: default "debug".
	LogLevel string
	// ExtraYAML is appended at the top level of the generated config (proxy:, health: ...).
	ExtraYAML string
}

// Vipd is a vipd process in a lab host with its generated config.
type Vipd struct {
	*Proc
	Opts       VipdOptions
	ConfigPath string
	Socket     string
	// StatsAddr is host:port of its stats server inside the host's namespace.
	StatsAddr string
}

// VipdConfig renders the YAML config for vipd on host h.
func (h *Host) VipdConfig(o VipdOptions, socket string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node_name: %s\nlog_level: %s\n", h.Name, or(o.LogLevel, "debug"))
	fmt.Fprintf(&b, "vrrp:\n  interface: %s\n  vrid: %d\n  priority: %d\n  version: %d\n",
		h.Iface, orInt(o.VRID, 51), o.Priority, orInt(o.Version, 3))
	if o.Advert > 0 {
		fmt.Fprintf(&b, "  advert_interval: %s\n", o.Advert)
	}
	if o.Preempt != nil {
		fmt.Fprintf(&b, "  preempt: %v\n", *o.Preempt)
	}
	if o.PreemptDelay > 0 {
		fmt.Fprintf(&b, "  preempt_delay: %s\n", o.PreemptDelay)
	}
	fmt.Fprintf(&b, "  vips:\n    - %s\n", Prefix24(o.VIP))
	if len(o.UnicastPeers) > 0 {
		b.WriteString("  unicast_peers:\n")
		for _, p := range o.UnicastPeers {
			fmt.Fprintf(&b, "    - %s\n", p)
		}
		fmt.Fprintf(&b, "  unicast_source: %s\n", h.Addr)
	}
	if o.AuthPass != "" {
		fmt.Fprintf(&b, "  auth_pass: %q\n", o.AuthPass)
	}
	if o.TrackInterface != nil {
		fmt.Fprintf(&b, "  track_interface: %v\n", *o.TrackInterface)
	}
	if o.GARPRefresh > 0 {
		fmt.Fprintf(&b, "  garp:\n    refresh: %s\n", o.GARPRefresh)
	}
	fmt.Fprintf(&b, "stats:\n  listen: \"127.0.0.1:8404\"\ncontrol_socket: %s\n", socket)
	// Run-time state (vipd backend ..., vipd maintenance) beside the socket: never the host's.
	fmt.Fprintf(&b, "state_file: %s\n", filepath.Join(filepath.Dir(socket), "state.json"))
	if o.ExtraYAML != "" {
		b.WriteString(strings.TrimRight(o.ExtraYAML, "\n") + "\n")
	}
	return b.String()
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// StartVipd writes a config for the host into the lab directory and starts `vipd run -c` there.
// It does not wait for the daemon to be ready: use WaitReady.
func (h *Host) StartVipd(o VipdOptions) (*Vipd, error) {
	if o.Bin == "" {
		return nil, fmt.Errorf("%s: vipd binary not set", h.Name)
	}
	dir := filepath.Join(h.lab.Dir, h.Name+"-vipd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: vipd dir: %w", h.Name, err)
	}
	v := &Vipd{Opts: o, ConfigPath: filepath.Join(dir, "vipd.yaml"), Socket: filepath.Join(dir, "vipd.sock"),
		StatsAddr: "127.0.0.1:8404"}
	if err := os.WriteFile(v.ConfigPath, []byte(h.VipdConfig(o, v.Socket)), 0o600); err != nil {
		return nil, fmt.Errorf("%s: write vipd config: %w", h.Name, err)
	}
	if err := v.start(h); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *Vipd) start(h *Host) error {
	p, err := h.Start("vipd", []string{v.Opts.Bin, "run", "-c", v.ConfigPath}, "")
	if err != nil {
		return err
	}
	v.Proc = p
	return nil
}

// Restart starts vipd again in the same host with the same config (after it was killed). The
// log file is appended to.
func (v *Vipd) Restart() error {
	if v.Proc.Running() {
		return fmt.Errorf("%s: vipd (pid %d) is still running", v.Host.Name, v.PID)
	}
	return v.start(v.Host)
}

// Term sends SIGTERM (graceful stop).
func (v *Vipd) Term() error { return v.Signal(syscall.SIGTERM) }

// Stats is /stats.json decoded into pkg/stats's model (the one owner of that format), with
// the raw body beside it.
type Stats struct {
	stats.Snapshot
	Raw json.RawMessage `json:"-"`
}

// Advert returns the advertisement interval the daemon runs with.
func (s *Stats) Advert() time.Duration {
	return s.VRRP.AdvertInterval.Std().Round(time.Millisecond)
}

// DropsTotal sums the drop counters.
func (s *Stats) DropsTotal() uint64 {
	var n uint64
	for _, c := range s.VRRP.Drops {
		n += c
	}
	return n
}

// Stats fetches /stats.json from the daemon (inside its namespace).
func (v *Vipd) Stats(ctx context.Context) (*Stats, error) {
	body, err := v.Get(ctx, "/stats.json")
	if err != nil {
		return nil, err
	}
	var s Stats
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("%s: decode /stats.json: %w", v.Host.Name, err)
	}
	s.Raw = body
	return &s, nil
}

// Get fetches a path from the daemon's stats server and returns the body of a 200 answer.
func (v *Vipd) Get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+v.StatsAddr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := v.Host.HTTPClient(2 * time.Second).Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: GET %s: %w", v.Host.Name, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", v.Host.Name, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("%s: GET %s: %s", v.Host.Name, path, resp.Status)
	}
	return body, nil
}

// State returns the VRRP state from /stats.json ("" with an error if the daemon does not answer).
func (v *Vipd) State(ctx context.Context) (string, error) {
	s, err := v.Stats(ctx)
	if err != nil {
		return "", err
	}
	return s.VRRP.State, nil
}

// WaitReady waits until /stats.json answers and shows a state other than INIT.
func (v *Vipd) WaitReady(ctx context.Context) error {
	var last error
	for {
		if !v.Running() {
			return fmt.Errorf("%s: vipd exited: %v\n%s", v.Host.Name, v.Wait(0), v.Tail(20))
		}
		st, err := v.State(ctx)
		if err == nil && st != "" && st != "INIT" {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: vipd not ready (state %q, %v): %w", v.Host.Name, st, last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitState waits until the VRRP state is want (e.g. "MASTER") and returns when it was seen.
func (v *Vipd) WaitState(ctx context.Context, want string) (time.Time, error) {
	var st string
	for {
		s, err := v.State(ctx)
		if err == nil && s == want {
			return time.Now(), nil
		}
		if err == nil {
			st = s
		}
		if !v.Running() {
			return time.Time{}, fmt.Errorf("%s: vipd exited while waiting for %s (%v):\n%s", v.Host.Name, want, v.Wait(0), v.Tail(20))
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s: state %q, want %s: %w", v.Host.Name, st, want, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StatusCLI runs `vipd status --socket SOCK [--json]` in the host and returns its output.
func (v *Vipd) StatusCLI(ctx context.Context, asJSON bool) (string, error) {
	argv := []string{v.Opts.Bin, "status", "--socket", v.Socket}
	if asJSON {
		argv = append(argv, "--json")
	}
	return v.Host.Exec(ctx, argv...)
}
