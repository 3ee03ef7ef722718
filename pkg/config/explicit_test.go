package config

import (
	"slices"
	"strings"
	"testing"
)

// A value written in the file is judged, never replaced: priority 0, vrid 0 and an advert
// interval of 0s were silently turned into 100, 51 and 200ms. Every duration and count has a
// floor and a ceiling (a fast_interval of 1ns was a tight loop of checks).
func TestExplicitBadValuesRefused(t *testing.T) {
	const proxy = "proxy:\n  backends: [10.0.0.11:6443]\n"
	cases := []struct{ name, yaml, want string }{
		{"priority 0", minimal + "  priority: 0\n", "t.yaml:5: vrrp.priority: must be 1-254 (or 255 for the address owner), got 0"},
		{"vrid 0", minimal + "  vrid: 0\n", "t.yaml:5: vrrp.vrid: must be 1-255, got 0"},
		{"advert_interval 0s", minimal + "  advert_interval: 0s\n", "t.yaml:5: vrrp.advert_interval: VRRPv3 counts centiseconds: a multiple of 10ms from 10ms to 40.95s, got 0s"},
		{"garp count 0", minimal + "  garp:\n    count: 0\n", "t.yaml:6: vrrp.garp.count: must be 1-100"},
		{"fast_interval 1ns", minimal + proxy + "health:\n  fast_interval: 1ns\n", "t.yaml:8: health.fast_interval: must be 10ms-1h0m0s, got 1ns"},
		{"interval 0s", minimal + proxy + "health:\n  interval: 0s\n", "t.yaml:8: health.interval: must be 10ms-1h0m0s, got 0s"},
		{"timeout 2h", minimal + proxy + "health:\n  timeout: 2h\n", "t.yaml:8: health.timeout: must be 10ms-1m"},
		{"rise 0", minimal + proxy + "health:\n  rise: 0\n", "t.yaml:8: health.rise: must be 1-100, got 0"},
		{"expect_status 0", minimal + proxy + "health:\n  type: https\n  expect_status: 0\n", "t.yaml:9: health.expect_status: 0 is not an HTTP status code"},
		{"connect_timeout 0s", minimal + proxy + "  connect_timeout: 0s\n", "t.yaml:7: proxy.connect_timeout: must be 10ms-5m, got 0s"},
		{"connect_timeout 1ns", minimal + proxy + "  connect_timeout: 1ns\n", "t.yaml:7: proxy.connect_timeout: must be 10ms-5m, got 1ns"},
		{"keepalive 0s", minimal + proxy + "  keepalive: 0s\n", "t.yaml:7: proxy.keepalive: must be 1s-2h"},
		{"idle_timeout 1ms", minimal + proxy + "  idle_timeout: 1ms\n", "t.yaml:7: proxy.idle_timeout: must be 0 (none) or 100ms-24h, got 1ms"},
		{"first_byte_timeout 10ms", minimal + proxy + "  first_byte_timeout: 10ms\n", "t.yaml:7: proxy.first_byte_timeout: must be 0 (never) or 1s-1h, got 10ms"},
		{"half_closed_timeout 500ms", minimal + proxy + "  half_closed_timeout: 500ms\n", "t.yaml:7: proxy.half_closed_timeout: must be 0 (never) or 1s-24h, got 500ms"},
		{"max_conns_per_source -1", minimal + proxy + "  max_conns_per_source: -1\n", "t.yaml:7: proxy.max_conns_per_source: must be 0-1000000 (0: no cap), got -1"},
		{"drain_grace 1h", minimal + proxy + "  drain_grace: 1h\n", "t.yaml:7: proxy.drain_grace: must be 0-10m, got 1h0m0s"},
		{"retries 50", minimal + proxy + "  retries: 50\n", "t.yaml:7: proxy.retries: must be 0-10, got 50"},
		{"max_conns huge", minimal + proxy + "  max_conns: 50000000\n", "t.yaml:7: proxy.max_conns: must be 0-1000000"},
		{"stats refresh 0s", minimal + "stats:\n  refresh: 0s\n", "t.yaml:6: stats.refresh: must be 1s-1h, got 0s"},
		{"blocked intervals 0", minimal + "cluster:\n  enabled: true\n  peers: [10.0.0.2:7946]\n  key_file: /k\n  blocked_vrrp_intervals: 0\n",
			"t.yaml:9: cluster.blocked_vrrp_intervals: 0 is outside 1-1000"},
		{"conn_table_max 0", minimal + "cluster:\n  enabled: true\n  peers: [10.0.0.2:7946]\n  key_file: /k\n  conn_table_max: 0\n",
			"t.yaml:9: cluster.conn_table_max: 0 is outside 1-1000000"},
		{"log_level empty", "log_level: \"\"\n" + strings.TrimPrefix(minimal, "\n"), "t.yaml:1: log_level: \"\" is not one of"},
		// A bad duration names its field, not only its line.
		{"duration without unit", minimal + "  advert_interval: 1\n", "t.yaml:5: vrrp.advert_interval: \"1\" has no unit: write 1s or 1ms"},
		{"two bad durations", minimal + "  preempt_delay: soon\n  advert_interval: 1\n", "t.yaml:5: vrrp.preempt_delay: \"soon\" is not a duration"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
	_, err := Parse("t.yaml", []byte(minimal+"  preempt_delay: soon\n  advert_interval: 1\n"))
	if err == nil || !strings.Contains(err.Error(), "t.yaml:6: vrrp.advert_interval:") {
		t.Fatalf("every bad duration is reported, not only the first: %v", err)
	}
}

// Absent keys still take their defaults, and the health check is the documented HTTPS /readyz.
func TestAbsentTakesDefault(t *testing.T) {
	c, err := Parse("t.yaml", []byte(minimal+"proxy:\n  backends: [10.0.0.11:6443]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.VRRP.Priority != 100 || c.VRRP.VRID != 51 || c.VRRP.AdvertInterval.D().String() != "200ms" {
		t.Errorf("vrrp defaults: %+v", c.VRRP)
	}
	h := c.HealthConfig()
	if h.Type != "https" || h.Path != "/readyz" || h.ExpectStatus != 200 || !h.InsecureSkipVerify {
		t.Errorf("health default must be HTTPS GET /readyz (README, deploy/vipd.yaml): %+v", h)
	}
	if p := c.ProxyConfig(); p.DrainGrace.String() != "30s" {
		t.Errorf("drain_grace default: %s", p.DrainGrace)
	}
	if p := c.ProxyConfig(); p.FirstByteTimeout.String() != "10s" || p.HalfClosedTimeout.String() != "2m0s" || p.MaxConnsPerSource != 1000 || p.IdleTimeout != 0 {
		t.Errorf("guard defaults (deploy/vipd.yaml): first_byte %s half_closed %s per_source %d idle %s",
			p.FirstByteTimeout, p.HalfClosedTimeout, p.MaxConnsPerSource, p.IdleTimeout)
	}
	// An explicit 0 turns each off (never replaced by the default).
	c, err = Parse("t.yaml", []byte(minimal+"proxy:\n  backends: [10.0.0.11:6443]\n  first_byte_timeout: 0s\n  half_closed_timeout: 0s\n  max_conns_per_source: 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.ProxyConfig(); p.FirstByteTimeout != 0 || p.HalfClosedTimeout != 0 || p.MaxConnsPerSource != 0 {
		t.Errorf("explicit zeros replaced: %+v", p)
	}
	c, err = Parse("t.yaml", []byte(minimal+"proxy:\n  backends: [10.0.0.11:6443]\nhealth:\n  tls:\n    ca_file: /etc/vipd/ca.crt\n"))
	if err != nil || c.HealthConfig().InsecureSkipVerify {
		t.Errorf("with a CA the certificate is verified: %v", err)
	}
}

// One list decides what a reload may change; it names the fields.
func TestRestartRequired(t *testing.T) {
	const px = "proxy:\n  backends: [10.0.0.11:6443]\n"
	base := minimal + px
	parse := func(s string) *Config {
		t.Helper()
		c, err := Parse("t.yaml", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	old := parse(base)
	cases := []struct {
		yaml string
		want []string
	}{
		{base, nil},
		{base + "  track_weight: 20\n", []string{"proxy.track_weight"}},
		{base + "  listen: \":7443\"\n", []string{"proxy.listen"}},
		{strings.Replace(base, "10.0.0.11", "10.0.0.12", 1) + "  drain_grace: 5s\n", nil},
		{strings.Replace(base, "eth0", "eth1", 1), []string{"vrrp.interface"}},
		{minimal + "  priority: 90\n  advert_interval: 1s\n  unicast_peers: []\n" + px, nil},
		{minimal + "  unicast_peers: [10.0.0.2]\n" + px, []string{"vrrp.unicast_peers"}},
		{minimal, []string{"proxy"}},
		{base + "stats:\n  listen: \":9000\"\n", []string{"stats.listen"}},
		{base + "cluster:\n  enabled: true\n  peers: [10.0.0.2:7946]\n  key_file: /k\n", []string{"cluster"}},
		{base + "log_level: debug\nhealth:\n  rise: 3\n", nil},
		{base + "  first_byte_timeout: 5s\n  half_closed_timeout: 30s\n  max_conns_per_source: 10\n", nil},
	}
	for _, tc := range cases {
		got := RestartRequired(old, parse(tc.yaml))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q:\ngot  %q\nwant %q", tc.yaml, got, tc.want)
		}
	}
}
