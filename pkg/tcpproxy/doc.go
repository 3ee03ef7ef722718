// Package tcpproxy owns the TCP frontend of vipd (":6443" by default): it
// accepts client connections and forwards each one to an UP backend (a
// kube-apiserver master), round-robin or least-connections.
//
// Decisions:
//
//   - Forwarding is io.Copy between two *net.TCPConn in each direction, never
//     wrapped, so that Linux uses splice(2) (no copy through user space).
//     Half-close is forwarded both ways with TCPConn.CloseWrite; an error in
//     either direction (a reset) aborts both sides with a reset.
//   - Backend choice: the UP backends (as the Health says) in round-robin
//     (or least-connections) order, followed by the backends not UP, as a
//     last resort. A failed dial is reported to Health.ReportFailure (a
//     passive health failure) and the next candidate is tried at once, up to
//     1+Retries attempts. So no client sees a refusal while another backend
//     is UP, and when no backend is UP (at start before the first check, or
//     when checks lie) the proxy still tries rather than refusing.
//   - TCP keepalive on both sides; no idle timeout unless IdleTimeout > 0
//     (watches, logs -f and exec live for hours). The idle timeout, when set,
//     is enforced by one sweeper goroutine reading TCP_INFO byte counters, so
//     that no deadline or wrapper is put on the spliced connections.
//   - Byte counters: io.Copy's totals when a connection ends (exact), and,
//     for connections still open, the client socket's TCP_INFO
//     bytes_received (in) and bytes_acked (out) read when Stats is called, so
//     an hours-long watch does not show 0 bytes. Counters never go backwards.
//   - MaxConns caps concurrent client connections: above it a new connection
//     is closed at once, counted (RefusedByCap) and logged at most once a
//     second.
//   - Shutdown (Run's context cancelled): the listener closes at once, open
//     connections get DrainGrace to finish, then are closed; Run returns when
//     every connection goroutine has ended.
//   - Reload (Update): backends, balance, timeouts, caps apply to new
//     connections; established ones are left alone, also those to a removed
//     backend, unless RemovedBackendGrace > 0 (then they are closed after
//     that grace). Listen and Freebind cannot change on reload (error naming
//     proxy.listen / proxy.freebind: restart needed).
//   - Serving: CanServe / OnServingChange report whether this host can serve
//     (listener bound and at least MinHealthy backends UP); vipd feeds it to
//     the VRRP tracker.
package tcpproxy
