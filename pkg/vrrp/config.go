package vrrp

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Config configures one VRRP instance. Field names in error messages are
// the YAML keys under "vrrp:" (vrrp.vrid, vrrp.advert_interval, ...).
type Config struct {
	Interface      string        // vrrp.interface
	VRID           uint8         // vrrp.vrid, 1-255
	Priority       uint8         // vrrp.priority, 1-255 (255: address owner)
	Version        int           // vrrp.version, 2 or 3
	AdvertInterval time.Duration // vrrp.advert_interval: v3 10ms-40.95s in 10ms steps; v2 whole seconds 1-255
	// MaxPeerAdvertInterval (vrrp.max_peer_advert_interval, v3 only) is the
	// longest Max Adver Int accepted from another router; adverts with a
	// longer one are dropped (reason interval_too_long). RFC 5798 has a
	// backup adopt whatever interval the master sends, so one forged advert
	// with priority 255 and 40.95 s left the pair without a master for about
	// 2.5 minutes; the bound keeps that from stretching Master_Down_Timer.
	// 0: DefaultMaxPeerAdvertInterval(AdvertInterval). See the package doc.
	MaxPeerAdvertInterval time.Duration
	Preempt               bool          // vrrp.preempt
	PreemptDelay          time.Duration // vrrp.preempt_delay, 0-1000s
	VIPs                  []netip.Prefix
	UnicastPeers          []netip.Addr // vrrp.unicast_peers: empty means multicast 224.0.0.18
	UnicastSource         netip.Addr   // vrrp.unicast_source: source address (default: interface's primary IPv4)
	AuthPass              string       // vrrp.auth_pass: v2 only, at most 8 bytes
	// AuthHMACKey (vrrp.auth_hmac_key_file, 32-64 bytes; see ParseHMACKey)
	// turns on authenticated adverts, Keepalived's auth_hmac trailer: every
	// advert sent is signed, every advert received must carry a valid
	// signature by this key, fresh (clocks within max(3 x advert interval,
	// 5 s)) and not replayed. A host without the key cannot move the VIP, in
	// multicast or unicast mode. Both routers need the same key and key id.
	AuthHMACKey    []byte
	AuthHMACKeyID  uint8 // vrrp.auth_hmac_key_id, 1-255 (default 1)
	TrackInterface bool  // vrrp.track_interface: link down -> FAULT
	GARPCount      int   // vrrp.garp.count: gratuitous ARPs per burst
	GARPInterval   time.Duration
	GARPRefresh    time.Duration // vrrp.garp.refresh: 0 disables the periodic refresh
	// NoSourceMACCheck turns off the check that an advert's Ethernet
	// source MAC is the one its source address is bound to (see the package
	// doc). Only for peers that send from another MAC than the one their
	// address resolves to (a Keepalived with use_vmac).
	NoSourceMACCheck bool // vrrp.source_mac_check: false
}

// The defaults of the settings live in pkg/config (deploy/vipd.yaml shows them); the caller
// sets every field and Validate judges it.
const (
	// PeerIntervalFactor and MinPeerIntervalBound make the default bound
	// on a peer's advert interval: 3 times ours, at least 1 s (Keepalived's
	// advert_int 1 still pairs with a vipd at 200 ms).
	PeerIntervalFactor   = 3
	MinPeerIntervalBound = time.Second
)

// DefaultMaxPeerAdvertInterval is the bound on a peer's advert interval
// when vrrp.max_peer_advert_interval is not set: PeerIntervalFactor times
// ours, at least MinPeerIntervalBound, at most 40.95 s (the field's range).
func DefaultMaxPeerAdvertInterval(ours time.Duration) time.Duration {
	return min(max(PeerIntervalFactor*ours, MinPeerIntervalBound), maxInterval3)
}

// peerIntervalBound is the effective MaxPeerAdvertInterval.
func (c Config) peerIntervalBound() time.Duration {
	if c.MaxPeerAdvertInterval > 0 {
		return c.MaxPeerAdvertInterval
	}
	return DefaultMaxPeerAdvertInterval(c.AdvertInterval)
}

// Validate checks c and returns all problems, each naming its YAML field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("vrrp.%s: %s", field, fmt.Sprintf(format, a...)))
	}
	switch {
	case c.Interface == "":
		bad("interface", "is required (the interface that carries the VIP, e.g. eth0)")
	case len(c.Interface) > 15:
		bad("interface", "%q is longer than 15 characters", c.Interface)
	case strings.ContainsAny(c.Interface, "/ \t:"):
		bad("interface", "%q is not a valid interface name", c.Interface)
	}
	if c.VRID == 0 {
		bad("vrid", "must be 1-255, got 0")
	}
	if c.Priority == 0 {
		bad("priority", "must be 1-254 (or 255 for the address owner), got 0: 0 is what a resigning master sends")
	}
	switch c.Version {
	case 3:
		iv := c.AdvertInterval
		if iv < 10*time.Millisecond || iv > maxInterval3 || iv%(10*time.Millisecond) != 0 {
			bad("advert_interval", "VRRPv3 counts centiseconds: a multiple of 10ms from 10ms to 40.95s, got %s", iv)
		}
		if c.AuthPass != "" {
			bad("auth_pass", "VRRPv3 has no authentication; remove it or set vrrp.version: 2")
		}
		if m := c.MaxPeerAdvertInterval; m != 0 && (m < iv || m > maxInterval3) {
			bad("max_peer_advert_interval", "must be at least advert_interval (%v) and at most 40.95s, got %v", iv, m)
		}
	case 2:
		iv := c.AdvertInterval
		if iv < time.Second || iv > 255*time.Second || iv%time.Second != 0 {
			bad("advert_interval", "VRRPv2 counts whole seconds (1s-255s), got %s", iv)
		}
		if len(c.AuthPass) > 8 {
			bad("auth_pass", "longer than 8 bytes (VRRPv2 PASS carries 8)")
		}
		if c.MaxPeerAdvertInterval != 0 {
			bad("max_peer_advert_interval", "is VRRPv3 only (VRRPv2 peers must send our own interval); remove it")
		}
	default:
		bad("version", "must be 2 or 3 (got %d)", c.Version)
	}
	if c.PreemptDelay < 0 || c.PreemptDelay > 1000*time.Second {
		bad("preempt_delay", "%v out of range 0-1000s", c.PreemptDelay)
	}
	if len(c.VIPs) == 0 {
		bad("vips", "at least one virtual IPv4 address is required")
	}
	if len(c.AuthHMACKey) > 0 {
		if len(c.AuthHMACKey) < hmacKeyMin || len(c.AuthHMACKey) > hmacKeyMax {
			bad("auth_hmac_key_file", "key is %d bytes, want %d-%d", len(c.AuthHMACKey), hmacKeyMin, hmacKeyMax)
		}
		if c.AuthHMACKeyID == 0 {
			bad("auth_hmac_key_id", "must be 1-255 (got 0)")
		}
		if c.AuthPass != "" {
			bad("auth_hmac_key_file", "set auth_pass or auth_hmac_key_file, not both (as Keepalived's auth_hmac and authentication)")
		}
	}
	if len(c.VIPs) > 64 {
		bad("vips", "%d addresses; at most 64", len(c.VIPs))
	}
	seen := map[netip.Addr]bool{}
	for i, p := range c.VIPs {
		a := p.Addr()
		switch {
		case !p.IsValid() || !a.Is4():
			bad(fmt.Sprintf("vips[%d]", i), "%v is not an IPv4 prefix (VRRP for IPv6 is not supported)", p)
		case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			bad(fmt.Sprintf("vips[%d]", i), "%v is not a usable unicast address", p)
		case seen[a]:
			bad(fmt.Sprintf("vips[%d]", i), "%v listed twice", a)
		}
		seen[a] = true
	}
	peers := map[netip.Addr]bool{}
	for i, a := range c.UnicastPeers {
		switch {
		case !a.Is4() || a.IsUnspecified() || a.IsMulticast():
			bad(fmt.Sprintf("unicast_peers[%d]", i), "%v is not a unicast IPv4 address", a)
		case peers[a]:
			bad(fmt.Sprintf("unicast_peers[%d]", i), "%v listed twice", a)
		case a == c.UnicastSource:
			bad(fmt.Sprintf("unicast_peers[%d]", i), "%v is our own unicast_source", a)
		case seen[a]:
			bad(fmt.Sprintf("unicast_peers[%d]", i), "%v is one of the vips", a)
		}
		peers[a] = true
	}
	if c.UnicastSource.IsValid() && (!c.UnicastSource.Is4() || c.UnicastSource.IsUnspecified() || c.UnicastSource.IsMulticast()) {
		bad("unicast_source", "%v is not a unicast IPv4 address", c.UnicastSource)
	}
	if seen[c.UnicastSource] {
		bad("unicast_source", "%v is one of the vips", c.UnicastSource)
	}
	if c.GARPCount < 1 || c.GARPCount > 100 {
		bad("garp.count", "must be 1-100 (got %d)", c.GARPCount)
	}
	if c.GARPInterval < 0 || c.GARPInterval > 10*time.Second {
		bad("garp.interval", "%v out of range 0-10s", c.GARPInterval)
	}
	if c.GARPRefresh < 0 || (c.GARPRefresh > 0 && c.GARPRefresh < time.Second) || c.GARPRefresh > 24*time.Hour {
		bad("garp.refresh", "%v must be 0 (off) or 1s-24h", c.GARPRefresh)
	}
	return errors.Join(errs...)
}

// RestartFields names the settings (as written in vipd.yaml, "vrrp.vrid") that differ
// between c and next and that a running Router cannot take: its sockets, its VIP set and its
// identity on the link are fixed when it starts. It is the one list of them: Reconfigure
// refuses these, and pkg/config's reload policy asks it.
func RestartFields(c, next Config) []string {
	var out []string
	add := func(changed bool, field string) {
		if changed {
			out = append(out, "vrrp."+field)
		}
	}
	add(c.Interface != next.Interface, "interface")
	add(c.VRID != next.VRID, "vrid")
	add(c.Version != next.Version, "version")
	add(!samePrefixes(c.VIPs, next.VIPs), "vips")
	add(c.UnicastSource != next.UnicastSource, "unicast_source")
	// Multicast <-> unicast switches sockets; a change of the peer list does not.
	add((len(c.UnicastPeers) == 0) != (len(next.UnicastPeers) == 0), "unicast_peers")
	add(c.TrackInterface != next.TrackInterface, "track_interface")
	add(c.NoSourceMACCheck != next.NoSourceMACCheck, "source_mac_check")
	return out
}

// reconfigurable checks that next differs from c only in fields Reconfigure can apply.
func (c Config) reconfigurable(next Config) error {
	if f := RestartFields(c, next); len(f) > 0 {
		return fmt.Errorf("%s changed: this needs a restart", strings.Join(f, ", "))
	}
	return nil
}

// samePrefixes compares as sets (order does not matter).
func samePrefixes(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	seen := make(map[netip.Prefix]int, len(a))
	for _, p := range a {
		seen[p]++
	}
	for _, p := range b {
		if seen[p] == 0 {
			return false
		}
		seen[p]--
	}
	return true
}
