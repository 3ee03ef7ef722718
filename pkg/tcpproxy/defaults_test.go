package tcpproxy

import "time"

// Test fixtures: a valid Config for the tests to start from. The daemon's defaults live in
// pkg/config only (drain_grace there is 30s); these values are the tests' own.
const (
	DefaultListen         = ":6443"
	DefaultConnectTimeout = 1 * time.Second
	DefaultRetries        = 2
	DefaultMaxConns       = 20000
	DefaultKeepAlive      = 15 * time.Second
	DefaultDrainGrace     = 10 * time.Second
	DefaultMinHealthy     = 1
)

// DefaultConfig returns a valid configuration without backends.
func DefaultConfig() Config {
	return Config{
		Listen:         DefaultListen,
		Balance:        RoundRobin,
		ConnectTimeout: DefaultConnectTimeout,
		Retries:        DefaultRetries,
		MaxConns:       DefaultMaxConns,
		KeepAlive:      DefaultKeepAlive,
		DrainGrace:     DefaultDrainGrace,
		MinHealthy:     DefaultMinHealthy,
	}
}
