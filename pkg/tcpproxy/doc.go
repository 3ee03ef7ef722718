// Package tcpproxy owns the TCP frontend of vipd (":6443" by default): it
// accepts client connections and forwards each one to an UP backend (a
// kube-apiserver master), round-robin or least-connections.
//
// Decisions:
//
//   - Established connections live in event loops (one epoll instance and
//     goroutine per P, see loop.go), and their sockets leave Go's net
//     package: the session owns the two raw descriptors (no netFD, address
//     objects or poll descriptor per socket, and one epoll registration, not
//     Go's poller's too). Each socket waits in the loop for bytes,
//     level-triggered, so an idle connection costs no goroutine, no stack
//     and no buffer: its session, two descriptors and two epoll entries
//     (~0.8 KiB of RSS; ~14 KiB with two parked goroutines per connection;
//     HAProxy ~2.6-3.3 KiB). Small messages (API requests and answers, watch
//     events) are copied by the loop itself with a nonblocking read into its
//     16 KiB buffer and a write: 2 raw syscalls, no goroutine woken, where a
//     splice costs a pipe round trip plus a probe. A write the destination
//     cannot take at once, and a transfer that fills the buffer maxInline
//     times in a row, go to a goroutine for as long as bytes move, with Go
//     views (duplicate descriptors) of the two sockets: it writes the rest
//     waiting in Go's poller, and moves large bursts with Linux splice(2)
//     (io.CopyN(dst, src, n) between the bare *net.TCPConn values, n the
//     bytes queued (SIOCINQ), which Go splices through a pooled pipe taken
//     only while bytes move; one io.Copy per direction for the connection's
//     life would hold a 1 MiB pipe per direction all along, charged to
//     fs.pipe-user-pages-soft, see pipe(7)). Half-close is forwarded both
//     ways (shutdown SHUT_WR); an error in either direction (a reset) aborts
//     both sides with a reset (SO_LINGER 0).
//   - Backend connections are opened by the accept loop itself: a
//     nonblocking socket and connect(2) whose completion the session's event
//     loop reports (connect.go), bounded by ConnectTimeout (a timer). A
//     client waiting for its backend costs its session, not a goroutine with
//     a stack and Go's dialer objects: a storm of 2,000 clients at once
//     (every kubelet after an LB failover) peaks at 0.7 x HAProxy's private
//     memory. Backends given by host name are dialed by a goroutine with
//     net.Dialer (it resolves them).
//   - Backend choice: the UP backends (as the Health says) in round-robin
//     (or least-connections) order, followed by the backends not UP, as a
//     last resort. A failed dial is reported to Health.ReportFailure (a
//     passive health failure) and the next candidate is tried at once, up to
//     1+Retries attempts. So no client sees a refusal while another backend
//     is UP, and when no backend is UP (at start before the first check, or
//     when checks lie) the proxy still tries rather than refusing.
//   - TCP keepalive on both sides; no idle timeout unless IdleTimeout > 0
//     (watches, logs -f and exec live for hours). The idle timeout, when
//     set, is enforced by one sweeper goroutine reading each connection's
//     last-burst time; no deadline is put on the connections.
//   - Clients that hold connections without using them (guard.go): a
//     client that sends no byte for FirstByteTimeout, and a session one
//     side has half-closed that stays silent for HalfClosedTimeout, are
//     closed by the same sweeper; MaxConnsPerSource caps the connections of
//     one client address. A session with both halves open that has spoken
//     is never closed by these (a quiet watch lives on).
//   - Byte counters are exact and live: each burst adds what was forwarded,
//     so an hours-long watch shows its bytes while open.
//   - MaxConns caps concurrent client connections: above it a new connection
//     is closed at once, counted (RefusedByCap) and logged at most once a
//     second. Run raises RLIMIT_NOFILE towards MaxConns x 4 + 1024 (the hard
//     limit too when permitted) and warns when it cannot. A dial failing
//     with EMFILE/ENFILE/ENOBUFS/ENOMEM is a local problem: not reported to
//     Health, not retried elsewhere.
//   - Shutdown (Run's context cancelled): the listener closes at once, open
//     connections get DrainGrace to finish, then are closed; Run returns when
//     every connection goroutine has ended.
//   - Reload (Update): backends, balance, timeouts, caps apply to new
//     connections; established ones are left alone, also those to a removed
//     backend, unless RemovedBackendGrace > 0 (then they are closed after
//     that grace). Listen and Freebind cannot change on reload (error naming
//     proxy.listen / proxy.freebind: restart needed).
//   - Run-time backend state (admin.go; vipd backend over the control socket):
//     SetAdmin drains (no new connections; open ones closed after a grace),
//     disables (MAINT: open ones closed now) or enables a backend; SetWeight
//     shares new connections (smooth weighted round-robin, or leastconn per
//     weight). Health checks are independent of it. It lives in the per-backend
//     state a reload keeps, so it survives reloads; a backend a reload removes
//     is reset. CloseLocal closes the connections to an address this host gave
//     up (the VIP after a handover).
//   - Serving: CanServe / OnServingChange report whether this host can serve
//     (listener bound and at least MinHealthy backends UP); vipd feeds it to
//     the VRRP tracker.
package tcpproxy
