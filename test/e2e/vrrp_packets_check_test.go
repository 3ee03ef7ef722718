package e2e

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vipd-project/vipd/test/lab"
)

// TestVRRPPacketBuilder checks the hand-made packets of the hostile test against the real
// Keepalived: a well-formed priority-254 advert from the client makes Keepalived's master give up
// the VIP (so the packets the hostile test breaks on purpose differ from valid ones only by the
// one broken field).
func TestVRRPPacketBuilder(t *testing.T) {
	vrrpNeedRoot(t)
	vrrpKeepalivedNeeded(t)
	for _, version := range []int{3, 2} {
		t.Run("v"+string(rune('0'+version)), func(t *testing.T) {
			l := lab.New(t, lab.Options{Hosts: []string{"lb1", "client"}})
			lb1, client := l.Host("lb1"), l.Host("client")
			vip := l.Addr(100)
			k, err := lb1.StartKeepalived(lab.KeepalivedOptions{VIP: vip, Priority: 100, Version: version, State: "MASTER"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := lb1.WaitAddr(vrrpCtx(t, 10*time.Second), vip, true); err != nil {
				t.Fatalf("%v\n%s", err, k.Tail(20))
			}
			a := vrrpRawAdvert{Version: version, VRID: 51, Priority: 254, Interval: time.Second, Addrs: []netip.Addr{vip}}
			if version == 2 {
				a.AuthPass = "123456"
			}
			pkt := vrrpRawPacket{What: "valid advert", Dst: vrrpGroup, Data: vrrpIPv4Packet(client.Addr, vrrpGroup, 255, a.marshal(client.Addr, vrrpGroup))}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; i < 30; i++ {
					if _, err := vrrpSendRaw(client, []vrrpRawPacket{pkt}, 1); err != nil {
						t.Error(err)
						return
					}
					if ok, _ := lb1.HasAddr(vip.String()); !ok {
						return
					}
					time.Sleep(200 * time.Millisecond)
				}
			}()
			<-done
			if _, err := lb1.WaitAddr(vrrpCtx(t, 3*time.Second), vip, false); err != nil {
				t.Fatalf("keepalived ignored a priority-254 advert built by the test: %v\n%s", err, k.Tail(20))
			}
		})
	}
}
