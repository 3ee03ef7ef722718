package e2e

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vipd-project/vipd/test/lab"
)

// This file builds VRRP packets by hand (independently of pkg/vrrp) and sends them from a lab
// host through a raw IPPROTO_RAW socket, so the test controls every header field.

var vrrpGroup = netip.MustParseAddr("224.0.0.18")

// vrrpRawAdvert is one VRRP advertisement as put on the wire.
type vrrpRawAdvert struct {
	Version  int // 2 or 3
	Type     int // 1 = advertisement
	VRID     int
	Priority int
	Interval time.Duration
	Addrs    []netip.Addr
	AuthPass string // v2: PASS auth (type 1) when set, else no auth
	// BadChecksum flips the checksum after computing it.
	BadChecksum bool
}

func vrrpOnesSum(b []byte, sum uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func vrrpFold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// marshal returns the VRRP message; v3 checksums include the IPv4 pseudo-header (RFC 5798
// 5.2.8, what Keepalived sends), v2 checksums cover the message only (RFC 3768).
func (a vrrpRawAdvert) marshal(src, dst netip.Addr) []byte {
	typ := a.Type
	if typ == 0 {
		typ = 1
	}
	var b []byte
	if a.Version == 2 {
		b = make([]byte, 8, 8+4*len(a.Addrs)+8)
		b[0] = byte(2<<4 | typ)
		b[1] = byte(a.VRID)
		b[2] = byte(a.Priority)
		b[3] = byte(len(a.Addrs))
		if a.AuthPass != "" {
			b[4] = 1
		}
		b[5] = byte(a.Interval / time.Second)
		for _, ip := range a.Addrs {
			b = append(b, ip.AsSlice()...)
		}
		var auth [8]byte
		copy(auth[:], a.AuthPass)
		b = append(b, auth[:]...)
		binary.BigEndian.PutUint16(b[6:], vrrpFold(vrrpOnesSum(b, 0)))
	} else {
		b = make([]byte, 8, 8+4*len(a.Addrs))
		b[0] = byte(3<<4 | typ)
		b[1] = byte(a.VRID)
		b[2] = byte(a.Priority)
		b[3] = byte(len(a.Addrs))
		binary.BigEndian.PutUint16(b[4:], uint16(a.Interval/(10*time.Millisecond))&0x0fff)
		for _, ip := range a.Addrs {
			b = append(b, ip.AsSlice()...)
		}
		var ph [12]byte
		copy(ph[0:4], src.AsSlice())
		copy(ph[4:8], dst.AsSlice())
		ph[9] = 112
		binary.BigEndian.PutUint16(ph[10:], uint16(len(b)))
		binary.BigEndian.PutUint16(b[6:], vrrpFold(vrrpOnesSum(b, vrrpOnesSum(ph[:], 0))))
	}
	if a.BadChecksum {
		b[6] ^= 0x5a
	}
	return b
}

// vrrpIPv4Packet wraps payload (IP protocol 112) in an IPv4 header.
func vrrpIPv4Packet(src, dst netip.Addr, ttl int, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0] = 0x45
	h[1] = 0xc0 // DSCP CS6, like VRRP daemons
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	h[8] = byte(ttl)
	h[9] = 112
	copy(h[12:16], src.AsSlice())
	copy(h[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(h[10:], vrrpFold(vrrpOnesSum(h, 0)))
	return append(h, payload...)
}

// vrrpRawPacket is one packet to send and where to.
type vrrpRawPacket struct {
	What string
	Dst  netip.Addr
	Data []byte
}

// vrrpSendRaw sends the packets from host h, each `repeat` times, a little apart, through a raw
// socket bound to eth0 (so multicast needs no route). It returns how many went out.
func vrrpSendRaw(h *lab.Host, pkts []vrrpRawPacket, repeat int) (int, error) {
	var fd int
	if err := h.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, h.Iface); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind to %s: %w", h.Iface, err)
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("%s: %w", h.Name, err)
	}
	defer unix.Close(fd)
	n := 0
	for i := 0; i < repeat; i++ {
		for _, p := range pkts {
			sa := &unix.SockaddrInet4{Addr: p.Dst.As4()}
			if err := unix.Sendto(fd, p.Data, 0, sa); err != nil {
				return n, fmt.Errorf("%s: send %s to %s: %w", h.Name, p.What, p.Dst, err)
			}
			n++
			time.Sleep(2 * time.Millisecond)
		}
	}
	return n, nil
}
