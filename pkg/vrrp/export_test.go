package vrrp

// Reconfigurable exposes reconfigurable to the external tests (reload_policy_test.go).
func (c Config) Reconfigurable(next Config) error { return c.reconfigurable(next) }
