package health

import "time"

// Test fixtures: the tests start from this Config. The daemon's defaults live in pkg/config
// only (where the check type defaults to https, as documented).

// HAProxy's inter 2s, rise 2, fall 3.
const (
	DefaultInterval     = 2 * time.Second
	DefaultFastInterval = 500 * time.Millisecond
	DefaultTimeout      = 1 * time.Second
	DefaultRise         = 2
	DefaultFall         = 3
	DefaultJitter       = 0.1
	DefaultPath         = "/readyz"
)

// DefaultConfig returns a TCP check with the default timings.
func DefaultConfig() Config {
	return Config{
		Type:         TypeTCP,
		Interval:     DefaultInterval,
		FastInterval: DefaultFastInterval,
		Timeout:      DefaultTimeout,
		Rise:         DefaultRise,
		Fall:         DefaultFall,
		Jitter:       DefaultJitter,
		Path:         DefaultPath,
		ExpectStatus: 200,
	}
}

// WithDefaults returns c with zero-valued fields (where zero is not a valid
// setting) replaced by their defaults. Jitter, Port and the booleans keep
// their zero value.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.Type == "" {
		c.Type = d.Type
	}
	if c.Interval == 0 {
		c.Interval = d.Interval
	}
	if c.FastInterval == 0 {
		c.FastInterval = d.FastInterval
		if c.FastInterval > c.Interval {
			c.FastInterval = c.Interval
		}
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.Rise == 0 {
		c.Rise = d.Rise
	}
	if c.Fall == 0 {
		c.Fall = d.Fall
	}
	if c.Path == "" {
		c.Path = d.Path
	}
	if c.ExpectStatus == 0 {
		c.ExpectStatus = d.ExpectStatus
	}
	return c
}
