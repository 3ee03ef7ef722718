package cluster

import (
	"net/netip"
	"testing"
)

// FuzzGossipDecode feeds the gossip message decoder (what an encrypted packet from a key
// holder, or a corrupted one, can put in front of it): never a panic, never more entries than
// the cap, and whatever decodes as a state or table goes through the handlers.
func FuzzGossipDecode(f *testing.F) {
	st, _ := encodeState(wireState{NodeState: baseState("lb1", 100, "10.0.0.11"), Boot: 1, Seq: 2})
	vip := netip.MustParseAddrPort("10.0.0.100:6443")
	tb := encodeConns(connTable{Name: "lb1", Boot: 1, Seq: 3, Conns: []Conn{{Client: netip.MustParseAddrPort("10.0.1.1:40000"), VIP: vip}}})
	f.Add(st)
	f.Add(tb)
	f.Add(encodeBundle(st, tb))
	f.Add([]byte{msgBundle, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{msgConns, 3, 'a', 'b', 'c'})
	c, err := New(Config{Enabled: true, NodeName: "lb2", KeyFile: writeKey(f, testKey), ConnTableMax: 100}, Deps{Local: &fakeLocal{st: baseState("lb2", 90, "10.0.0.12")}})
	if err != nil {
		f.Fatal(err)
	}
	c.peerLocked("lb1").member = true
	f.Fuzz(func(t *testing.T, b []byte) {
		if tbl, err := decodeConns(b, 100); err == nil && len(tbl.Conns) > 100 {
			t.Fatalf("decoded %d entries, cap 100", len(tbl.Conns))
		}
		_, _ = decodeState(b)
		_, _, _ = splitBundle(b)
		c.handleMsg(b)
		c.mu.Lock()
		n := len(c.tables)
		c.mu.Unlock()
		if n > MaxPeerTables {
			t.Fatalf("%d tables kept", n)
		}
	})
}
