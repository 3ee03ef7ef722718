// Package health owns the active and passive health checking of the proxy's
// backends (kube-apiserver masters, "host:port").
//
// A Monitor runs one checker goroutine per backend: a TCP connect, or an
// HTTPS GET of a path (default /readyz, expecting 200) with TLS verified
// against a CA file or skipped, an optional client certificate and an
// optional bearer token read from a file at every check (never logged).
//
// State machine (HAProxy's rise/fall): a backend that is UP goes DOWN after
// Fall consecutive failed checks; a DOWN backend goes UP after Rise
// consecutive successful checks. Checks run every Interval, and every
// FastInterval while the backend is DOWN or in transition (a failure counted
// while UP, a success counted while DOWN). A Jitter fraction spreads checks so
// that the backends' checks (and the two LBs' checks) do not align.
//
// Initial state: every backend starts in StateUnknown (IsUp reports false).
// The first check runs immediately when the Monitor starts (or when a backend
// is added by Update), and its result is decisive: one success marks the
// backend UP, one failure marks it DOWN. A proxy that starts therefore serves
// within one check latency instead of Rise × Interval; the rise/fall
// hysteresis applies from then on.
//
// Passive checks: ReportFailure (a dial from the proxy that failed) counts as
// one failed check at once and triggers an immediate active re-check.
//
// Transitions are published to subscribers (Subscribe) as Events, in order,
// from one dispatcher goroutine; Status returns a snapshot for stats/metrics.
// Time comes from an injectable Clock so that tests need no sleeps.
package health
