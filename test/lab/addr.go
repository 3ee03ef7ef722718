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

// AddrProbe answers "does eth0 hold this address?" through a netlink socket opened in the
// host's namespace, cheaply enough to sample every few milliseconds from any goroutine.
type AddrProbe struct{ w *addrWatcher }

// AddrProbe opens a probe for the host's eth0. Close it when done.
func (h *Host) AddrProbe() (*AddrProbe, error) {
	var p AddrProbe
	err := h.Do(func() error {
		w, err := newAddrWatcher(h.Iface)
		p.w = w
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: address probe: %w", h.Name, err)
	}
	return &p, nil
}

// Has reports whether eth0 holds a.
func (p *AddrProbe) Has(a netip.Addr) (bool, error) { return p.w.has(a) }

// Close releases the netlink socket.
func (p *AddrProbe) Close() { p.w.close() }
