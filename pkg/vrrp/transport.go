package vrrp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// rawConn is a raw IPv4 socket for IP protocol 112 bound to one interface.
// Reads return whole IPv4 packets (Linux keeps the header on raw sockets);
// writes let the kernel build the header (TTL 255, source set per packet
// with IP_PKTINFO).
type rawConn struct {
	closed  atomic.Bool
	f       *os.File
	rc      syscall.RawConn
	ifindex int
}

func openRaw(ifname string, ifindex int, src netip.Addr, multicast bool) (*rawConn, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, IPProtocol)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("open raw IP socket for VRRP (protocol 112): %w: vipd needs CAP_NET_RAW: run it as root or grant AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN as in deploy/vipd.service", err)
		}
		return nil, fmt.Errorf("open raw IP socket for VRRP (protocol 112): %w", err)
	}
	fail := func(what string, err error) (*rawConn, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("VRRP socket on %s: %s: %w", ifname, what, err)
	}
	if err := unix.BindToDevice(fd, ifname); err != nil {
		return fail("SO_BINDTODEVICE", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, TTL); err != nil {
		return fail("IP_TTL 255", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, TTL); err != nil {
		return fail("IP_MULTICAST_TTL 255", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0); err != nil {
		return fail("IP_MULTICAST_LOOP off", err)
	}
	// Class 6 (internetwork control), as Keepalived sends (tos 0xc0).
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, 0xc0)
	// A large buffer absorbs bursts of garbage; FORCE needs CAP_NET_ADMIN.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	}
	mreq := &unix.IPMreqn{Ifindex: int32(ifindex)}
	if src.Is4() {
		mreq.Address = src.As4()
	}
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, mreq); err != nil {
		return fail("IP_MULTICAST_IF", err)
	}
	if multicast {
		join := &unix.IPMreqn{Multiaddr: MulticastGroup.As4(), Ifindex: int32(ifindex)}
		if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, join); err != nil {
			return fail("join 224.0.0.18", err)
		}
	}
	f := os.NewFile(uintptr(fd), "vrrp-"+ifname)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("VRRP socket on %s: %w", ifname, err)
	}
	return &rawConn{f: f, rc: rc, ifindex: ifindex}, nil
}

// read reads one IPv4 packet into b (blocking, no allocation).
func (c *rawConn) read(b []byte) (int, error) {
	var n int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), b)
		return rerr != unix.EAGAIN && rerr != unix.EINTR
	})
	if err != nil {
		if c.closed.Load() {
			return 0, net.ErrClosed
		}
		return 0, err
	}
	return n, rerr
}

// send sends one VRRP message to dst with source address src.
func (c *rawConn) send(msg []byte, src, dst netip.Addr) error {
	oob := unix.PktInfo4(&unix.Inet4Pktinfo{Ifindex: int32(c.ifindex), Spec_dst: src.As4()})
	to := &unix.SockaddrInet4{Addr: dst.As4()}
	var serr error
	err := c.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), msg, oob, to, 0)
		return serr != unix.EAGAIN && serr != unix.EINTR
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("send VRRP advert %s -> %s: %w", src, dst, serr)
	}
	return nil
}

func (c *rawConn) close() error {
	c.closed.Store(true)
	return c.f.Close()
}
