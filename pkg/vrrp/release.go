package vrrp

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// ReleaseVIPs removes cfg's VIPs from cfg's interface, if they are there, and returns those it
// removed. It is for after the daemon died without doing so itself (SIGKILL, a crash, the
// watchdog): a VIP left on a host whose daemon is gone still answers ARP, so the VIP sits on
// two hosts once the peer takes over. The systemd unit runs it as ExecStopPost
// (`vipd release`). Safe to run at any time the daemon is not running: the VIP is only ever
// added by a MASTER, and a MASTER that is not running holds nothing.
func ReleaseVIPs(cfg Config) ([]string, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("release VIPs: netlink: %w", err)
	}
	defer h.Close()
	l, err := h.LinkByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("release VIPs: interface %s: %w", cfg.Interface, err)
	}
	v := &vipManager{h: h, ifindex: l.Attrs().Index, vips: cfg.VIPs}
	present, err := v.present()
	if err != nil {
		return nil, fmt.Errorf("release VIPs: %w", err)
	}
	if len(present) == 0 {
		return nil, nil
	}
	if err := (&vipManager{h: h, ifindex: v.ifindex, vips: present}).del(); err != nil {
		return nil, fmt.Errorf("release VIPs: %w", err)
	}
	out := make([]string, len(present))
	for i, p := range present {
		out[i] = p.String()
	}
	return out, nil
}
