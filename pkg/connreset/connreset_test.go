package connreset

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/ipv4"
)

func TestProbePacket(t *testing.T) {
	c := Conn{Client: netip.MustParseAddrPort("10.0.0.10:40000"), VIP: netip.MustParseAddrPort("10.0.0.100:6443")}
	p := Probe(c, 0xdeadbeef, 0x01020304)
	h, err := ipv4.ParseHeader(p)
	if err != nil {
		t.Fatal(err)
	}
	if h.Src.String() != "10.0.0.100" || h.Dst.String() != "10.0.0.10" || h.Protocol != 6 || h.TotalLen != 40 || h.TTL != 64 {
		t.Fatalf("IP header %+v", h)
	}
	if checksum(p[:20], 0) != 0 {
		t.Error("IP header checksum does not verify")
	}
	tcp := p[20:]
	if sp, dp := binary.BigEndian.Uint16(tcp[0:]), binary.BigEndian.Uint16(tcp[2:]); sp != 6443 || dp != 40000 {
		t.Errorf("ports %d->%d", sp, dp)
	}
	if binary.BigEndian.Uint32(tcp[4:]) != 0xdeadbeef || binary.BigEndian.Uint32(tcp[8:]) != 0x01020304 {
		t.Error("seq/ack not as given")
	}
	if tcp[13] != 0x10 {
		t.Errorf("flags %#x, want ACK only", tcp[13])
	}
	// The checksum over pseudo-header + segment including its checksum field must be 0.
	if tcpChecksum([4]byte{10, 0, 0, 100}, [4]byte{10, 0, 0, 10}, tcp) != 0 {
		t.Error("TCP checksum does not verify")
	}
	// A known vector, computed independently (RFC 1071 on the same bytes).
	tcp2 := append([]byte(nil), tcp...)
	tcp2[16], tcp2[17] = 0, 0
	var sum uint32
	for _, w := range [][]byte{{10, 0}, {0, 100}, {10, 0}, {0, 10}, {0, 6}, {0, 20}} {
		sum += uint32(w[0])<<8 | uint32(w[1])
	}
	for i := 0; i < len(tcp2); i += 2 {
		sum += uint32(tcp2[i])<<8 | uint32(tcp2[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	if got := binary.BigEndian.Uint16(tcp[16:]); got != ^uint16(sum) {
		t.Errorf("TCP checksum %#x, want %#x", got, ^uint16(sum))
	}
}

func TestParseProcAddr(t *testing.T) {
	cases := map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"6400000A:192B":                         "10.0.0.100:6443",
		"00000000000000000000000001000000:0016": "[::1]:22",
		"0000000000000000FFFF00006400000A:192B": "10.0.0.100:6443",
	}
	for in, want := range cases {
		got, err := parseProcAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("parseProcAddr(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0100007F", "XYZ:1F90", "0100007F:1F9", "01007F:1F90"} {
		if _, err := parseProcAddr(bad); err == nil {
			t.Errorf("parseProcAddr(%q) accepted", bad)
		}
	}
}

// ProcHeld must list a live loopback connection, keyed as the server side sees it.
func TestProcHeldListsOwnConnections(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	held, err := ProcHeld()
	if err != nil {
		t.Fatal(err)
	}
	want := Conn{Client: netip.MustParseAddrPort(cc.LocalAddr().String()), VIP: netip.MustParseAddrPort(ln.Addr().String())}
	if !held[want] {
		t.Fatalf("ProcHeld lacks %v (%d entries)", want, len(held))
	}
	listen := Conn{Client: netip.MustParseAddrPort("0.0.0.0:0"), VIP: want.VIP}
	if held[listen] {
		t.Error("listening socket listed as a connection")
	}
}

func TestPlanFilters(t *testing.T) {
	vip := netip.MustParseAddrPort("10.0.0.100:6443")
	c := func(s string) Conn { return Conn{Client: netip.MustParseAddrPort(s), VIP: vip} }
	mine := c("10.0.0.10:1000")
	in := []Conn{
		mine,
		c("10.0.0.11:1001"),
		c("10.0.0.11:1001"),          // duplicate
		c("[fd00::1]:1002"),          // IPv6: not implemented
		c("10.0.0.12:0"),             // no port
		c("[::ffff:10.0.0.13]:1003"), // mapped: fine
		c("10.0.0.14:1004"),          // over the cap of 2
	}
	todo, res := plan(in, map[Conn]bool{mine: true}, 2)
	if len(todo) != 2 || todo[0] != c("10.0.0.11:1001") || todo[1] != c("10.0.0.13:1003") {
		t.Errorf("todo = %v", todo)
	}
	if res.Requested != 7 || res.Held != 1 || res.Invalid != 3 || res.OverCap != 1 {
		t.Errorf("result = %+v", res)
	}
	r := &Resetter{fd: -1, cfg: Config{Rate: 1000, Burst: 1, Max: 10, Held: ProcHeld}}
	if _, err := r.Reset(context.Background(), in); err == nil {
		t.Error("closed resetter did not refuse")
	}
}
