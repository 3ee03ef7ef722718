package cluster

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// NodeState is what a node tells its peers about itself. The daemon's wiring fills it from
// VRRP, the proxy's health view and the config (Local.LocalState).
type NodeState struct {
	Name              string          `json:"name"`
	Version           string          `json:"version"`            // vipd version
	VRRPState         string          `json:"vrrp_state"`         // INIT, BACKUP, MASTER, FAULT
	Priority          int             `json:"priority"`           // configured
	EffectivePriority int             `json:"effective_priority"` // after tracking
	HoldsVIP          bool            `json:"holds_vip"`          // the VIPs are on the interface
	VIPs              []string        `json:"vips"`               // as configured, with prefix
	VRID              int             `json:"vrid"`               // virtual router ID
	ProtoVersion      int             `json:"proto_version"`      // VRRP version 2 or 3
	AdvertInterval    time.Duration   `json:"advert_interval"`    // configured advert interval
	PrimaryAddr       netip.Addr      `json:"primary_addr"`       // source address of our adverts
	Backends          map[string]bool `json:"backends"`           // backend address -> UP
	ConfigFingerprint string          `json:"config_fingerprint"` // hash of settings that must match
	// LastAdvertFrom is when this node last received a VRRP advert (for its VRID) from each
	// source address. It is not sent as is: peers receive the age of each entry.
	LastAdvertFrom map[netip.Addr]time.Time `json:"-"`
}

// wireState is the gossip form of a NodeState.
type wireState struct {
	NodeState
	// AdvertAgeMs: age in ms, at send time, of the last advert heard from each address.
	AdvertAgeMs map[string]int64 `json:"advert_age_ms,omitempty"`
	Resigned    bool             `json:"resigned,omitempty"` // gave up the VIP for split brain
	Conns       int              `json:"conns"`              // connections in our shared table
	Boot        int64            `json:"boot"`               // start time of the sender, ns
	Seq         uint64           `json:"seq"`                // per boot, increasing
}

// Message types (first byte of a user message).
const (
	msgState  byte = 'S'
	msgConns  byte = 'C'
	msgBundle byte = 'B' // push/pull: u32 len + state message, then conn message
)

func encodeState(w wireState) ([]byte, error) {
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode node state: %w", err)
	}
	return append([]byte{msgState}, b...), nil
}

func decodeState(b []byte) (wireState, error) {
	var w wireState
	if len(b) < 1 || b[0] != msgState {
		return w, errors.New("not a state message")
	}
	if err := json.Unmarshal(b[1:], &w); err != nil {
		return w, fmt.Errorf("decode node state: %w", err)
	}
	if w.Name == "" {
		return w, errors.New("decode node state: no node name")
	}
	return w, nil
}

// connTable is a node's table of client connections as shared over gossip.
type connTable struct {
	Name  string
	Boot  int64
	Seq   uint64
	Conns []Conn
}

const maxWireConns = 1 << 20

// encodeConns: 'C', u8 name len, name, i64 boot, u64 seq, u32 groups; per group: addrport(VIP),
// u32 count, count × addrport(client). addrport: u8 len (4/16), addr, u16 port.
// Conns must be sorted by VIP (sortConns) for compact groups.
func encodeConns(t connTable) []byte {
	var buf bytes.Buffer
	buf.WriteByte(msgConns)
	name := t.Name
	if len(name) > 255 {
		name = name[:255]
	}
	buf.WriteByte(byte(len(name)))
	buf.WriteString(name)
	_ = binary.Write(&buf, binary.BigEndian, t.Boot)
	_ = binary.Write(&buf, binary.BigEndian, t.Seq)
	type group struct {
		vip     netip.AddrPort
		clients []netip.AddrPort
	}
	var groups []group
	for _, c := range t.Conns {
		if n := len(groups); n == 0 || groups[n-1].vip != c.VIP {
			groups = append(groups, group{vip: c.VIP})
		}
		g := &groups[len(groups)-1]
		g.clients = append(g.clients, c.Client)
	}
	_ = binary.Write(&buf, binary.BigEndian, uint32(len(groups)))
	for _, g := range groups {
		writeAddrPort(&buf, g.vip)
		_ = binary.Write(&buf, binary.BigEndian, uint32(len(g.clients)))
		for _, c := range g.clients {
			writeAddrPort(&buf, c)
		}
	}
	return buf.Bytes()
}

func writeAddrPort(buf *bytes.Buffer, ap netip.AddrPort) {
	a := ap.Addr().Unmap()
	s := a.AsSlice()
	buf.WriteByte(byte(len(s)))
	buf.Write(s)
	_ = binary.Write(buf, binary.BigEndian, ap.Port())
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = errors.New("truncated connection table")
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u8() int {
	p := r.take(1)
	if p == nil {
		return 0
	}
	return int(p[0])
}

func (r *reader) u32() uint32 {
	p := r.take(4)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint32(p)
}

func (r *reader) u64() uint64 {
	p := r.take(8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

func (r *reader) addrPort() netip.AddrPort {
	n := r.u8()
	if r.err == nil && n != 4 && n != 16 {
		r.err = fmt.Errorf("bad address length %d in connection table", n)
	}
	p := r.take(n)
	port := r.take(2)
	if r.err != nil {
		return netip.AddrPort{}
	}
	a, _ := netip.AddrFromSlice(p)
	return netip.AddrPortFrom(a.Unmap(), binary.BigEndian.Uint16(port))
}

// decodeConns parses a conn message, keeping at most limit connections.
func decodeConns(b []byte, limit int) (connTable, error) {
	var t connTable
	if len(b) < 1 || b[0] != msgConns {
		return t, errors.New("not a connection table message")
	}
	r := &reader{b: b[1:]}
	t.Name = string(r.take(r.u8()))
	t.Boot = int64(r.u64())
	t.Seq = r.u64()
	groups := r.u32()
	for g := uint32(0); g < groups && r.err == nil; g++ {
		vip := r.addrPort()
		n := r.u32()
		if r.err == nil && (n > maxWireConns || int(n) > len(r.b)) {
			return t, fmt.Errorf("connection table from %q: bad count %d", t.Name, n)
		}
		for i := uint32(0); i < n && r.err == nil; i++ {
			c := r.addrPort()
			if r.err == nil && len(t.Conns) < limit {
				t.Conns = append(t.Conns, Conn{Client: c, VIP: vip})
			}
		}
	}
	if r.err != nil {
		return t, fmt.Errorf("connection table from %q: %w", t.Name, r.err)
	}
	if t.Name == "" {
		return t, errors.New("connection table without node name")
	}
	return t, nil
}

func sortConns(cs []Conn) {
	slices.SortFunc(cs, func(a, b Conn) int {
		if c := a.VIP.Compare(b.VIP); c != 0 {
			return c
		}
		return a.Client.Compare(b.Client)
	})
}

func encodeBundle(state, conns []byte) []byte {
	b := make([]byte, 0, 5+len(state)+len(conns))
	b = append(b, msgBundle)
	b = binary.BigEndian.AppendUint32(b, uint32(len(state)))
	b = append(b, state...)
	return append(b, conns...)
}

func splitBundle(b []byte) (state, conns []byte, err error) {
	if len(b) < 5 || b[0] != msgBundle {
		return nil, nil, errors.New("not a state bundle")
	}
	n := binary.BigEndian.Uint32(b[1:5])
	if uint64(n) > uint64(len(b)-5) {
		return nil, nil, errors.New("truncated state bundle")
	}
	return b[5 : 5+n], b[5+n:], nil
}
