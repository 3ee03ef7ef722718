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
// auth_* (with an HMAC key, below), interval_too_long (v3: longer than
// MaxPeerAdvertInterval, below),
// auth (v2: type or password differs), addr_count and addr_list (the advert
// lists other VIPs than ours, as Keepalived drops them), then the source
// MAC check below (spoofed_source, own_mac, source_unresolved,
// unverified_source, source_table_full). queue_full counts valid adverts dropped because the
// state machine fell behind. Drops are logged at most once per reason per
// 10 s with the count since the last line (vrid drops at debug level: other
// groups on the link are normal; source_unresolved at info). Garbage is
// rejected on the receive goroutine without allocation; the election loop
// never waits on it.
//
// # Source MAC check
//
// TTL 255 keeps forgeries from off-link out, but a host on the same L2
// segment can send a perfect advert (TTL 255, valid checksum, priority 254)
// with a peer's source address; Keepalived accepts it and so did vipd: the
// master stepped down for as long as the stream lasted. An IP address is
// easy to forge, the Ethernet source MAC of the frame is not changed as
// easily without disturbing the switch, so every valid advert is checked
// against the MAC its source address is bound to.
//
// Adverts still come in only through the raw IP socket, so the kernel's IP
// checks, netfilter rules and multicast membership apply as before. An
// AF_PACKET (SOCK_DGRAM, ETH_P_ALL) socket on the same interface, with a
// classic BPF filter that keeps only received IPv4 protocol 112 frames with
// TTL 255, not fragmented, VRRP v2/v3 for our VRID, records each frame's
// source MAC in a ring keyed by a seeded hash of the IP packet (opened
// before the raw socket). Linux hands a frame to the interface's taps
// before the IP layer sees it, so when the raw socket returns a packet its
// frame has already been recorded (a goroutine drains the tap; a lookup
// that misses drains it once more). Entries are matched by content, not
// order: frames from different senders may reach the two sockets in
// different orders when received on different CPUs. A packet whose
// frame cannot be found (the tap's queue overflowed under a flood) is
// taken only where it keeps a BACKUP where it is (like a source still being
// resolved) and otherwise dropped as unverified_source: dropping them all
// let a flood of forgeries starve a backup of its master's genuine adverts
// and made it take over (seen under load); now a flood can at worst hold a
// backup in BACKUP while it lasts. In normal operation this does not happen.
//
// The binding of a source address to a MAC:
//   - first advert from an address: the kernel's neighbour (ARP) entry for
//     it, if REACHABLE, STALE, DELAY, PROBE or PERMANENT. Without one, and
//     if the address is on-link, vipd asks the kernel to resolve it (a
//     broadcast ARP request; the genuine owner answers, so a forger
//     talking first gains nothing) and, until the answer is in (a
//     millisecond on a LAN; looked at again after 100 ms), that source's
//     adverts are "unresolved": one that would only keep a BACKUP where it
//     is (higher or equal priority, or any non-zero one without
//     preemption, interval not longer than ours) is taken, so routers
//     started together elect as fast as without the check; any other
//     (priority 0, a preemptable lower priority, anything at a MASTER) is
//     dropped as source_unresolved. An address that does not answer
//     within 3 s, or that is routed (its frames come from a gateway), is
//     bound to the MAC of its adverts.
//   - afterwards an advert from another MAC is dropped as spoofed_source,
//     logged (rate limited) with both MACs and where the binding comes from.
//     On such a mismatch vipd looks at the neighbour table again (at most
//     once a second per source, 100 ms after asking the kernel to resolve
//     the address again, at most once per 2 s per source, never for a
//     PERMANENT entry): if ARP now maps the address to the new MAC, the
//     binding moves (logged as "VRRP peer MAC changed"). So a replaced NIC
//     or a VM moved to a new interface is accepted again about a second
//     after its adverts start (measured 1.1 s in the netns test), in
//     multicast mode too, where nothing else would make the kernel re-ARP
//     the peer. Under a stream of forgeries this costs one ARP exchange
//     with the genuine peer per 2 s.
//   - an advert from our own interface's MAC (a reflection, or a forgery)
//     is dropped as own_mac.
//
// At most 64 sources are remembered (enough for any VRRP segment). A
// binding no matching advert has confirmed for 5 minutes is forgotten (10 s
// for a source still being resolved); heard again, the address is bound
// again like a new one (neighbour table, else ARP), so forgetting trusts
// nothing. When the table is full, a new source makes room by expiry or by
// forgetting the least recently heard source, at most once a second;
// otherwise it is refused: its adverts are treated like those of a source
// being resolved (they can only keep a BACKUP where it is) and counted,
// when dropped, as source_table_full (Status.SourceTable counts every
// refusal and eviction; logged rate limited). Before, a full table accepted
// every new source unchecked, so a host that first sprayed adverts from 64
// invented addresses could then forge a peer nobody had heard yet (a silent
// backup in multicast mode) and move the VIP. A peer heard every advert
// interval is never the least recently heard of a spray. Unicast mode only ever checks
// vrrp.unicast_peers (others are dropped as unknown_source before); in
// multicast mode any on-link router may join the election by the RFC, so
// a host on the segment can still move the VIP with an advert from its own
// address: use unicast_peers where that matters. The check does not help
// against a host that also answers ARP for the peer's address (ARP
// spoofing): pin the peers with static neighbour entries (ip neigh replace
// PEER lladdr MAC nud permanent), which the check then treats as the
// authority. Keepalived peers send from their own MAC with their own
// address and pass. A peer that sends from a MAC its address does not
// resolve to is refused: a Keepalived with use_vmac, or a peer whose
// interface is a bond in balance-tlb or balance-alb mode (modes 5 and 6
// rewrite the source MAC of unicast frames to a slave's; multicast ones
// keep the bond's, active-backup and 802.3ad keep it always). For those set
// Config.NoSourceMACCheck on the routers that hear them. Interfaces without
// 6-byte MACs (tun, WireGuard) run without the check, as do frames whose
// device reports no source address. The receive path stays free of
// allocations for accepted adverts and forgeries alike (a netlink dump only
// on the rare lookups above).
//
// # State machine
//
// Machine is the pure RFC 5798 Initialize/Backup/Master machine (plus
// FAULT), driven by Handle(now, Event) and NextDeadline, with no goroutines
// or clock, so it is tested with a fake clock. Skew_Time is
// ((256-prio)*Master_Adver_Interval)/256 for v3 and (256-prio)/256 s for v2;
// Master_Down_Interval = 3*Master_Adver_Interval + Skew_Time. A v3 backup
// adopts the master's interval, within the bound below. Priority 255 (address owner) starts as
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
// # Authenticated adverts (optional)
//
// With Config.AuthHMACKey (vrrp.auth_hmac_key_file) every advert carries
// the authentication trailer of Keepalived's auth_hmac (Keepalived HEAD;
// no released Debian package has it): 28 bytes after the VRRP message, an
// HMAC-SHA256 (truncated to 16 bytes) over a pseudo header (4, version,
// VRID, 0, the source address), the message with its checksum read as zero
// and the trailer's fields, with a 64-bit time-based sequence (UTC seconds,
// 1/65536 s, counter). The format is in hmac.go, built from Keepalived's
// source (vrrp_auth_hmac.c); a known-answer test checks it against an
// independent implementation, and TestKeepalivedHMACInterop pairs vipd with
// a Keepalived built from its development branch (commit 9cbce3e, opt-in:
// VIPD_KEEPALIVED_HMAC): each accepts the other's signed adverts, and with
// different keys each refuses them. vipd implements Keepalived's enforce mode with time anti-replay
// and one key: an advert without a valid trailer is dropped (auth_missing,
// auth_malformed, auth_unknown_key, auth_bad_hmac), as is one whose time
// is more than max(3 x advert interval, 5 s) from ours (auth_stale: the
// routers need synchronised clocks, NTP) or whose sequence does not grow
// past the last one verified from that source (auth_replay; marks move only
// after the HMAC verified, survive a reload, and at most 8 senders are
// remembered, least recently verified forgotten first). All of this runs before the other
// field checks and the source MAC check. A host without the key cannot move
// the VIP in multicast or unicast mode, even from a configured peer's
// address (TestHMACForgedAdverts). Without a key vipd ignores a trailer and
// reads the advert it carries.
//
// # The peer's advert interval: a deviation from RFC 5798
//
// RFC 5798 (6.4.2, 6.4.3) has a backup set Master_Adver_Interval to the
// Max Adver Int of whatever master it accepts, up to 40.95 s, and nothing
// authenticates adverts. In multicast mode any host on the link takes part
// in the election, so one host sending a short burst with priority 255 and
// 40.95 s made the master step down and both routers wait
// 3*40.95 s + Skew_Time for it to go quiet: no MASTER for 2 min 28 s
// (measured, TestVRRPForgedLongInterval in test/e2e). vipd drops v3 adverts
// whose interval is longer than Config.MaxPeerAdvertInterval
// (vrrp.max_peer_advert_interval; default DefaultMaxPeerAdvertInterval:
// 3 times ours, at least 1 s) as interval_too_long, counted and logged
// rate limited like every drop, whatever our state: such an advert neither
// makes a master step down nor stretches a backup's Master_Down_Timer. A
// burst at the bound (priority 255, 1 s for a 200 ms pair) is still
// obeyed, and the pair has a MASTER again about 3 s + Skew_Time after it
// (3.8 s measured). The cost: a genuine peer configured with a longer
// interval than the bound is not heard (both routers become MASTER, and
// the drop line names the interval); set the bound on both sides when
// intervals differ on purpose. VRRPv2 already requires the peer's interval
// to equal ours (RFC 3768), so the bound is v3 only. Keepalived has no such
// bound.
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
