// Package vrrp is the VRRP engine of vipd: it elects which load-balancer
// host holds the virtual IP(s), wire compatible with Keepalived 2.2.7, and
// owns the VIP on the interface (netlink add/remove, gratuitous ARP).
//
// # Protocols
//
// VRRPv3 (RFC 5798, IPv4 only) is the default: the advertisement interval
// travels in centiseconds, so sub-second failover is possible; the checksum
// is sent over the IPv4 pseudo-header (what Keepalived sends and expects)
// and both that form and the RFC 9568 message-only form are accepted.
// VRRPv2 (RFC 3768) with authentication type 0 or 1 (PASS, 8 bytes, zero
// padded) lets vipd pair with a Keepalived configured like the reference
// (VRID 51, auth PASS) and replace it one host at a time; the v2 interval is
// whole seconds and must equal ours. Intervals are time.Duration end to end.
//
// Transport is raw IP protocol 112 bound to the interface (SO_BINDTODEVICE):
// multicast to 224.0.0.18 joined on the interface, or, with UnicastPeers,
// one copy to each peer. Adverts are sent with TTL 255 from the interface's
// primary IPv4 address (the first one that is not a VIP) or UnicastSource.
//
// # Receive checks
//
// Every received packet is checked in this order and dropped with a reason
// (the metric label in Status.Drops): ip_header, length, own_address,
// unknown_source (unicast: not a configured peer), ttl (not 255 — enforced
// in unicast mode too, unlike Keepalived's default, so forged adverts from
// off-link cannot move the VIP; peers must be on the same L2 segment),
// version, type, checksum, interval (zero; v2: different from ours), vrid,
// auth (v2: type or password differs), addr_count and addr_list (the advert
// lists other VIPs than ours, as Keepalived drops them). queue_full counts
// valid adverts dropped because the state machine fell behind. Drops are
// logged at most once per reason per 10 s with the count since the last
// line (vrid drops at debug level: other groups on the link are normal).
// Garbage is rejected on the receive goroutine without allocation; the
// election loop never waits on it.
//
// # State machine
//
// Machine is the pure RFC 5798 Initialize/Backup/Master machine (plus
// FAULT), driven by Handle(now, Event) and NextDeadline, with no goroutines
// or clock, so it is tested with a fake clock. Skew_Time is
// ((256-prio)*Master_Adver_Interval)/256 for v3 and (256-prio)/256 s for v2;
// Master_Down_Interval = 3*Master_Adver_Interval + Skew_Time. A v3 backup
// adopts the master's interval. Priority 255 (address owner) starts as
// master. A master on shutdown or fault sends priority 0; a backup hearing
// priority 0 takes over after ResignWait, Skew_Time's fraction of at most
// 100 ms instead of the whole interval (the higher priority still moves
// first; a graceful handover takes <= 100 ms, not 0.65 s as with Keepalived
// at advert_int 1), and at once in unicast mode with a single peer (no
// other backup can compete). Equal priorities are broken by
// the higher primary address. Differences from the letter of the RFC, as in
// Keepalived: a preempting backup that hears a lower-priority master takes
// over at once instead of waiting for Master_Down_Timer; preempt_delay
// holds that back for the delay after startup or after first seeing the
// lower-priority master; a master that hears a lower-priority advert sends
// its own advert and re-announces the VIP by gratuitous ARP at once (at most
// once per 250 ms; one inside that gap is deferred, not dropped); a master
// that steps down for a higher-priority advert sends one parting advert with
// its own priority, so that a master which never saw it (after a partition)
// re-announces the VIP to clients whose ARP caches point at us; a master whose priority changes
// advertises at once.
//
// # VIP ownership
//
// Becoming master adds the VIPs (netlink, idempotent) and sends a burst of
// GARPCount gratuitous ARPs GARPInterval apart, each in both forms (request
// and reply, broadcast), built by hand so they work even when the interface
// has no other IPv4 address. The burst is repeated when a lower-priority
// advert is heard while master, and one round is sent every GARPRefresh while
// master (which also puts back a VIP someone removed). Leaving master stops any burst first, then removes the VIPs. Run
// removes VIPs found on the interface at start (left by a crash), and on
// return (context cancelled) sends priority 0 if master and removes them.
//
// # Tracking
//
// Router.Track(name, weight) returns a *Track; Track.Set(failing, reason)
// lowers the effective priority by weight while failing (floor 1). Weight 0
// means FAULT: the VIP is given up and the router does not become master
// until the condition clears, like a Keepalived vrrp_script with weight 0.
// With TrackInterface, the link state (IFF_UP and IFF_RUNNING) is followed by
// netlink: link down is a FAULT. Weights also apply to a priority-255 router
// (Keepalived ignores them for address owners): vipd's VIP is never really
// owned, it is added on takeover, so tracking exists to move it away.
//
// # Privileges and namespaces
//
// New needs CAP_NET_RAW (raw and packet sockets) and CAP_NET_ADMIN (adding
// addresses, SO_RCVBUFFORCE) and says what to do when they are missing. It
// opens every socket (including netlink) in the calling thread's network
// namespace, so a caller may create a Router inside another namespace from a
// goroutine locked to a thread switched into it; Run may then run anywhere.
// CAP_NET_ADMIN must stay for the life of the process (VIP add/remove).
package vrrp
