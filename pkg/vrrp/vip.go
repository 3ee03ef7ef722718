package vrrp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// vipManager adds and removes the VIPs on the interface through a netlink
// handle opened in the router's network namespace.
type vipManager struct {
	h       *netlink.Handle
	ifindex int
	vips    []netip.Prefix
}

func toIPNet(p netip.Prefix) *net.IPNet {
	a := p.Addr().As4()
	return &net.IPNet{IP: net.IP(a[:]), Mask: net.CIDRMask(p.Bits(), 32)}
}

func (v *vipManager) link() (netlink.Link, error) {
	l, err := v.h.LinkByIndex(v.ifindex)
	if err != nil {
		return nil, fmt.Errorf("look up interface index %d: %w", v.ifindex, err)
	}
	return l, nil
}

// add adds every VIP (idempotent).
func (v *vipManager) add() error {
	l, err := v.link()
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range v.vips {
		if err := v.h.AddrReplace(l, &netlink.Addr{IPNet: toIPNet(p)}); err != nil {
			errs = append(errs, fmt.Errorf("add VIP %s to %s: %w", p, l.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

// del removes every VIP (idempotent).
func (v *vipManager) del() error {
	l, err := v.link()
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range v.vips {
		err := v.h.AddrDel(l, &netlink.Addr{IPNet: toIPNet(p)})
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove VIP %s from %s: %w", p, l.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

// present returns the VIPs currently on the interface.
func (v *vipManager) present() ([]netip.Prefix, error) {
	l, err := v.link()
	if err != nil {
		return nil, err
	}
	addrs, err := v.h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok {
			continue
		}
		for _, p := range v.vips {
			if p.Addr() == ip {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// garper sends gratuitous ARP through an AF_PACKET socket. It builds the
// frames itself, so it works even when the interface has no IPv4 address
// besides the VIP (arp.Dial/arp.New need one).
type garper struct {
	conn *packet.Conn
	mac  net.HardwareAddr
}

func openGARP(ifi *net.Interface) (*garper, error) {
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("interface %s has no Ethernet address: gratuitous ARP impossible", ifi.Name)
	}
	// Send-only: a filter that accepts nothing keeps ARP traffic out of
	// our receive queue.
	drop, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err != nil {
		return nil, err
	}
	c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, &packet.Config{Filter: drop})
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("open packet socket on %s for gratuitous ARP: %w: vipd needs CAP_NET_RAW: run it as root or grant the capabilities as in deploy/vipd.service", ifi.Name, err)
		}
		return nil, fmt.Errorf("open packet socket on %s for gratuitous ARP: %w", ifi.Name, err)
	}
	return &garper{conn: c, mac: ifi.HardwareAddr}, nil
}

// frames returns the two gratuitous ARP forms for ip: a request
// (who-has ip tell ip, target MAC zero) and a reply (ip is-at mac,
// target broadcast), both to the Ethernet broadcast address.
func garpFrames(mac net.HardwareAddr, ip netip.Addr) ([][]byte, error) {
	var out [][]byte
	for _, f := range []struct {
		op  arp.Operation
		tha net.HardwareAddr
	}{
		{arp.OperationRequest, net.HardwareAddr{0, 0, 0, 0, 0, 0}},
		{arp.OperationReply, ethernet.Broadcast},
	} {
		p, err := arp.NewPacket(f.op, mac, ip, f.tha, ip)
		if err != nil {
			return nil, fmt.Errorf("build gratuitous ARP for %s: %w", ip, err)
		}
		pb, err := p.MarshalBinary()
		if err != nil {
			return nil, err
		}
		fr := ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: pb}
		fb, err := fr.MarshalBinary()
		if err != nil {
			return nil, err
		}
		out = append(out, fb)
	}
	return out, nil
}

// send sends both forms for each ip and returns how many frames went out.
func (g *garper) send(ips []netip.Addr) (int, error) {
	n := 0
	var errs []error
	for _, ip := range ips {
		frames, err := garpFrames(g.mac, ip)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, fb := range frames {
			if _, err := g.conn.WriteTo(fb, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
				errs = append(errs, fmt.Errorf("send gratuitous ARP for %s: %w", ip, err))
				continue
			}
			n++
		}
	}
	return n, errors.Join(errs...)
}

func (g *garper) close() error { return g.conn.Close() }
