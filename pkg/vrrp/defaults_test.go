package vrrp

import "time"

// Test fixtures: the tests start from a Config filled like this. The daemon's defaults live in
// pkg/config only.
const (
	DefaultVersion        = 3
	DefaultPriority       = 100
	DefaultAdvertInterval = 200 * time.Millisecond // v3; v2 defaults to 1 s
	DefaultGARPCount      = 5
	DefaultGARPInterval   = 300 * time.Millisecond
	DefaultGARPRefresh    = 60 * time.Second
)

// WithDefaults returns c with zero values replaced by defaults (version 3,
// priority 100, advert interval 200ms (1s for v2), 5 GARPs 300ms apart — the burst spans
// more than the 1 s neighbour locktime of Linux peers — refreshed every 60 s).
// Preempt's zero value (false) is not defaulted: the config layer decides.
func (c Config) WithDefaults() Config {
	if c.Version == 0 {
		c.Version = DefaultVersion
	}
	if c.Priority == 0 {
		c.Priority = DefaultPriority
	}
	if c.AdvertInterval == 0 {
		c.AdvertInterval = DefaultAdvertInterval
		if c.Version == 2 {
			c.AdvertInterval = time.Second
		}
	}
	if c.GARPCount == 0 {
		c.GARPCount = DefaultGARPCount
	}
	if c.GARPInterval == 0 {
		c.GARPInterval = DefaultGARPInterval
	}
	if c.GARPRefresh == 0 {
		c.GARPRefresh = DefaultGARPRefresh
	}
	return c
}
