package lab

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// addrWatcher lists an interface's addresses through a netlink handle opened in the current
// thread's namespace (so create it inside Host.Do).
type addrWatcher struct {
	h     *netlink.Handle
	link  netlink.Link
	iface string
}

func newAddrWatcher(iface string) (*addrWatcher, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	l, err := h.LinkByName(iface)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("link %s: %w", iface, err)
	}
	return &addrWatcher{h: h, link: l, iface: iface}, nil
}

func (w *addrWatcher) has(a netip.Addr) (bool, error) {
	as, err := w.h.AddrList(w.link, netlink.FAMILY_V4)
	if err != nil {
		return false, err
	}
	for _, x := range as {
		if y, ok := netip.AddrFromSlice(x.IP.To4()); ok && y == a {
			return true, nil
		}
	}
	return false, nil
}

func (w *addrWatcher) close() { w.h.Close() }
