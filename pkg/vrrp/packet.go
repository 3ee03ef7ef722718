package vrrp

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"time"
)

// Wire constants.
const (
	// IPProtocol is the IPv4 protocol number of VRRP.
	IPProtocol = 112
	// TTL is the only IPv4 TTL a VRRP packet may be sent and (multicast) received with.
	TTL = 255
	// TypeAdvertisement is the only VRRP packet type (RFC 5798 5.2.2).
	TypeAdvertisement = 1
	// AuthNone and AuthPass are the VRRPv2 authentication types we speak
	// (RFC 3768 5.3.6; type 2, IP AH, is deprecated and rejected).
	AuthNone = 0
	AuthPass = 1

	headerLen = 8
	authLen   = 8 // VRRPv2 authentication data
	// maxInterval3 is the largest v3 Max Adver Int (12 bits of centiseconds).
	maxInterval3 = 4095 * 10 * time.Millisecond
)

// MulticastGroup is the IPv4 VRRP multicast address 224.0.0.18.
var MulticastGroup = netip.AddrFrom4([4]byte{224, 0, 0, 18})

// Packet is one VRRP advertisement (the VRRP message, without the IP header).
type Packet struct {
	Version  int // 2 or 3
	Type     uint8
	VRID     uint8
	Priority uint8
	// AdvertInterval is the advertisement interval: centisecond resolution
	// on the wire for v3, whole seconds for v2.
	AdvertInterval time.Duration
	// AuthType and AuthData are VRRPv2 only (zero for v3).
	AuthType uint8
	AuthData [8]byte
	// Checksum is the checksum as found on the wire (set by Unmarshal;
	// Marshal computes its own).
	Checksum uint16
	// ChecksumMessageOnly is set by Unmarshal when a v3 packet's checksum
	// verified only in the RFC 9568 message-only form (no pseudo-header).
	ChecksumMessageOnly bool
	Addrs               []netip.Addr
}

// ParseError is the error returned for a packet that is dropped. Reason is
// a short fixed word usable as a metric label: version, type, vrid, ttl,
// checksum, length, auth, unknown_source, addr_count, addr_list, interval,
// ip_header, own_address.
type ParseError struct {
	Reason string
	Msg    string
	Got    int64
	Want   int64
	hasNum bool
}

func (e *ParseError) Error() string {
	s := "vrrp packet dropped (" + e.Reason + "): " + e.Msg
	if e.hasNum {
		s += " (got " + strconv.FormatInt(e.Got, 10) + ", want " + strconv.FormatInt(e.Want, 10) + ")"
	}
	return s
}

func perr(reason, msg string) *ParseError { return &ParseError{Reason: reason, Msg: msg} }
func perrN(reason, msg string, got, want int64) *ParseError {
	return &ParseError{Reason: reason, Msg: msg, Got: got, Want: want, hasNum: true}
}

// Len returns the length of the marshalled VRRP message.
func (p *Packet) Len() int {
	n := headerLen + 4*len(p.Addrs)
	if p.Version == 2 {
		n += authLen
	}
	return n
}

// Marshal returns the VRRP message for p with its checksum computed. src and
// dst are the IPv4 source and destination the message will be sent with (the
// v3 checksum covers the IPv4 pseudo-header, RFC 5798 5.2.8; v2 covers the
// message only, RFC 3768 5.3.8).
func (p *Packet) Marshal(src, dst netip.Addr) ([]byte, error) {
	return p.AppendMarshal(make([]byte, 0, p.Len()), src, dst)
}

// AppendMarshal is Marshal appending to b.
func (p *Packet) AppendMarshal(b []byte, src, dst netip.Addr) ([]byte, error) {
	if p.Version != 2 && p.Version != 3 {
		return b, perrN("version", "cannot marshal version", int64(p.Version), 3)
	}
	if len(p.Addrs) > 255 {
		return b, perrN("addr_count", "too many addresses", int64(len(p.Addrs)), 255)
	}
	for _, a := range p.Addrs {
		if !a.Is4() {
			return b, perr("addr_list", "address "+a.String()+" is not IPv4")
		}
	}
	typ := p.Type
	if typ == 0 {
		typ = TypeAdvertisement
	}
	start := len(b)
	b = append(b, byte(p.Version)<<4|typ&0x0f, p.VRID, p.Priority, byte(len(p.Addrs)))
	if p.Version == 3 {
		if p.AdvertInterval <= 0 || p.AdvertInterval > maxInterval3 {
			return b[:start], perrN("interval", "v3 advert interval out of range 10ms-40.95s (ms)", p.AdvertInterval.Milliseconds(), 1000)
		}
		cs := uint16((p.AdvertInterval + 5*time.Millisecond) / (10 * time.Millisecond))
		if cs == 0 {
			cs = 1
		}
		b = binary.BigEndian.AppendUint16(b, cs&0x0fff)
	} else {
		sec := (p.AdvertInterval + 500*time.Millisecond) / time.Second
		if sec < 1 || sec > 255 {
			return b[:start], perrN("interval", "v2 advert interval out of range 1-255 s (ms)", p.AdvertInterval.Milliseconds(), 1000)
		}
		b = append(b, p.AuthType, byte(sec))
	}
	b = append(b, 0, 0) // checksum
	for _, a := range p.Addrs {
		a4 := a.As4()
		b = append(b, a4[:]...)
	}
	if p.Version == 2 {
		b = append(b, p.AuthData[:]...)
	}
	msg := b[start:]
	var sum uint32
	if p.Version == 3 {
		if !src.Is4() || !dst.Is4() {
			return b[:start], perr("ip_header", "v3 checksum needs IPv4 source and destination")
		}
		sum = pseudoSum(src, dst, len(msg))
	}
	cs := finish(sumBytes(sum, msg))
	binary.BigEndian.PutUint16(msg[6:8], cs)
	return b, nil
}

// Parse decodes and verifies one VRRP message (the IP payload). src and dst
// are the IPv4 addresses from the IP header (for the v3 pseudo-header
// checksum). It never panics; errors are *ParseError.
func Parse(b []byte, src, dst netip.Addr) (*Packet, error) {
	p := new(Packet)
	if err := p.Unmarshal(b, src, dst); err != nil {
		return nil, err
	}
	return p, nil
}

// Unmarshal is Parse into p, reusing p.Addrs' storage. On error p's content
// is undefined.
func (p *Packet) Unmarshal(b []byte, src, dst netip.Addr) error {
	if len(b) < headerLen {
		return perrN("length", "message shorter than the VRRP header", int64(len(b)), headerLen)
	}
	ver := int(b[0] >> 4)
	if ver != 2 && ver != 3 {
		return perrN("version", "unsupported VRRP version", int64(ver), 3)
	}
	typ := b[0] & 0x0f
	if typ != TypeAdvertisement {
		return perrN("type", "not an advertisement", int64(typ), TypeAdvertisement)
	}
	n := int(b[3])
	want := headerLen + 4*n
	if ver == 2 {
		want += authLen
	}
	// Keepalived and RFC 3768 allow no trailing data other than the auth
	// field; be strict on short packets, tolerant of padding (Ethernet
	// minimum frame padding is removed by the IP layer already).
	if len(b) < want {
		return perrN("length", "message shorter than its address count implies", int64(len(b)), int64(want))
	}
	b = b[:want]
	p.Version = ver
	p.Type = typ
	p.VRID = b[1]
	p.Priority = b[2]
	p.Checksum = binary.BigEndian.Uint16(b[6:8])
	p.ChecksumMessageOnly = false
	p.AuthType = 0
	p.AuthData = [8]byte{}
	if ver == 3 {
		cs := binary.BigEndian.Uint16(b[4:6]) & 0x0fff
		p.AdvertInterval = time.Duration(cs) * 10 * time.Millisecond
		msgSum := sumBytes(0, b)
		ok := src.Is4() && dst.Is4() && finish(msgSum+pseudoSum(src, dst, len(b))) == 0
		if !ok {
			// RFC 9568: the IPv4 checksum may cover the message only.
			if finish(msgSum) != 0 {
				return perr("checksum", "bad VRRPv3 checksum (neither pseudo-header nor message-only form)")
			}
			p.ChecksumMessageOnly = true
		}
	} else {
		p.AuthType = b[4]
		p.AdvertInterval = time.Duration(b[5]) * time.Second
		if finish(sumBytes(0, b)) != 0 {
			return perr("checksum", "bad VRRPv2 checksum")
		}
		copy(p.AuthData[:], b[headerLen+4*n:])
	}
	if p.AdvertInterval == 0 {
		return perr("interval", "advertisement interval is zero")
	}
	p.Addrs = p.Addrs[:0]
	for i := 0; i < n; i++ {
		o := headerLen + 4*i
		p.Addrs = append(p.Addrs, netip.AddrFrom4([4]byte(b[o:o+4])))
	}
	return nil
}

// IPv4Header holds the fields of a received IPv4 header vipd looks at.
type IPv4Header struct {
	TTL      uint8
	Protocol uint8
	Src, Dst netip.Addr
}

// SplitIPv4 splits a raw IPv4 packet (as a Linux raw socket delivers it) into
// header fields and payload. It never panics; errors are *ParseError with
// reason ip_header or length.
func SplitIPv4(b []byte) (IPv4Header, []byte, error) {
	var h IPv4Header
	if len(b) < 20 {
		return h, nil, perrN("length", "shorter than an IPv4 header", int64(len(b)), 20)
	}
	if b[0]>>4 != 4 {
		return h, nil, perrN("ip_header", "not IPv4", int64(b[0]>>4), 4)
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || len(b) < ihl {
		return h, nil, perrN("ip_header", "bad IPv4 header length", int64(ihl), 20)
	}
	total := int(binary.BigEndian.Uint16(b[2:4]))
	// Linux hands raw sockets the reassembled packet; some kernels report
	// the total length in host order or without the header, so only use
	// it to trim when it is plausible.
	end := len(b)
	if total >= ihl && total <= len(b) {
		end = total
	}
	h.TTL = b[8]
	h.Protocol = b[9]
	h.Src = netip.AddrFrom4([4]byte(b[12:16]))
	h.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	return h, b[ihl:end], nil
}

func pseudoSum(src, dst netip.Addr, length int) uint32 {
	s, d := src.As4(), dst.As4()
	var sum uint32
	sum += uint32(s[0])<<8 | uint32(s[1])
	sum += uint32(s[2])<<8 | uint32(s[3])
	sum += uint32(d[0])<<8 | uint32(d[1])
	sum += uint32(d[2])<<8 | uint32(d[3])
	sum += IPProtocol
	sum += uint32(length)
	return sum
}

func sumBytes(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

// finish folds a one's complement sum and complements it. Over data that
// includes a correct checksum it yields 0.
func finish(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// PassData returns the 8-byte VRRPv2 authentication data for a PASS
// password (zero padded, as Keepalived sends it).
func PassData(pass string) [8]byte {
	var d [8]byte
	copy(d[:], pass)
	return d
}
