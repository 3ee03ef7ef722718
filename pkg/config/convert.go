package config

import (
	"net/netip"
	"slices"

	"github.com/vipd-project/vipd/pkg/cluster"
	"github.com/vipd-project/vipd/pkg/health"
	"github.com/vipd-project/vipd/pkg/stats"
	"github.com/vipd-project/vipd/pkg/tcpproxy"
	"github.com/vipd-project/vipd/pkg/vrrp"
)

// The conversions below map the file onto each package's Config. They are total: a value the
// file could not express is left zero (validate has reported it), never a panic. Secrets
// (auth_pass_file, auth_hmac_key_file, the stats password) are in the result only after CheckHost read them.

// VRRPConfig is the vrrp: section as pkg/vrrp's Config.
func (c *Config) VRRPConfig() vrrp.Config {
	v := c.VRRP
	out := vrrp.Config{
		Interface:             v.Interface,
		VRID:                  uint8(v.VRID),
		Priority:              uint8(v.Priority),
		Version:               v.Version,
		AdvertInterval:        v.AdvertInterval.D(),
		MaxPeerAdvertInterval: v.MaxPeerAdvertInterval.D(),
		Preempt:               v.Preempt != nil && *v.Preempt,
		PreemptDelay:          v.PreemptDelay.D(),
		AuthPass:              v.AuthPass,
		TrackInterface:        v.TrackInterface != nil && *v.TrackInterface,
		NoSourceMACCheck:      v.SourceMACCheck != nil && !*v.SourceMACCheck,
		GARPCount:             v.GARP.Count,
		GARPInterval:          v.GARP.Interval.D(),
	}
	if v.GARP.Refresh != nil {
		out.GARPRefresh = v.GARP.Refresh.D()
	}
	if v.AuthPassFile != "" {
		out.AuthPass = c.authPass
	}
	if v.AuthHMACKeyFile != "" {
		out.AuthHMACKey, out.AuthHMACKeyID = c.authHMACKey, uint8(v.AuthHMACKeyID)
	}
	for _, s := range v.VIPs {
		if p, err := netip.ParsePrefix(s); err == nil {
			out.VIPs = append(out.VIPs, p)
		}
	}
	for _, s := range v.UnicastPeers {
		if a, err := netip.ParseAddr(s); err == nil {
			out.UnicastPeers = append(out.UnicastPeers, a)
		}
	}
	if a, err := netip.ParseAddr(v.UnicastSource); err == nil {
		out.UnicastSource = a
	}
	return out
}

// ProxyConfig is the proxy: section as pkg/tcpproxy's Config (zero without a proxy section).
func (c *Config) ProxyConfig() tcpproxy.Config {
	p := c.Proxy
	if p == nil {
		return tcpproxy.Config{}
	}
	deref := func(i *int) int {
		if i == nil {
			return 0
		}
		return *i
	}
	out := tcpproxy.Config{
		Listen:              p.Listen,
		Backends:            slices.Clone(p.Backends),
		Balance:             p.Balance,
		ConnectTimeout:      p.ConnectTimeout.D(),
		Retries:             deref(p.Retries),
		MaxConns:            deref(p.MaxConns),
		IdleTimeout:         p.IdleTimeout.D(),
		FirstByteTimeout:    p.FirstByteTimeout.D(),
		HalfClosedTimeout:   p.HalfClosedTimeout.D(),
		MaxConnsPerSource:   deref(p.MaxConnsPerSource),
		KeepAlive:           p.KeepAlive.D(),
		RemovedBackendGrace: p.RemovedBackendGrace.D(),
		MinHealthy:          deref(p.MinHealthyBackends),
	}
	if p.DrainGrace != nil {
		out.DrainGrace = p.DrainGrace.D()
	}
	return out
}

// TrackWeight is how much the proxy lowers the VRRP priority when it cannot serve.
func (c *Config) TrackWeight() int {
	if c.Proxy == nil || c.Proxy.TrackWeight == nil {
		return 0
	}
	return *c.Proxy.TrackWeight
}

// HealthConfig is the health: section as pkg/health's Config.
func (c *Config) HealthConfig() health.Config {
	h := c.Health
	out := health.Config{
		Type:               h.Type,
		Interval:           h.Interval.D(),
		FastInterval:       h.FastInterval.D(),
		Timeout:            h.Timeout.D(),
		Rise:               h.Rise,
		Fall:               h.Fall,
		Path:               h.Path,
		ExpectStatus:       h.ExpectStatus,
		CAFile:             h.TLS.CAFile,
		InsecureSkipVerify: h.TLS.InsecureSkipVerify != nil && *h.TLS.InsecureSkipVerify,
		CertFile:           h.TLS.CertFile,
		KeyFile:            h.TLS.KeyFile,
		BearerTokenFile:    h.BearerTokenFile,
		AuthErrorsAreUp:    h.AuthErrorsAreUp,
	}
	if h.Jitter != nil {
		out.Jitter = *h.Jitter
	}
	return out
}

// StatsConfig is the stats: section as pkg/stats' Config; healthz is the daemon's liveness.
func (c *Config) StatsConfig(healthz func() error) stats.Config {
	out := stats.Config{Listen: c.Stats.Listen, Refresh: c.Stats.Refresh.D(), Healthz: healthz}
	if ba := c.Stats.BasicAuth; ba != nil {
		out.BasicAuth = &stats.BasicAuth{Username: ba.Username, Password: c.statsPassword}
	}
	return out
}

// ClusterConfig is the cluster: section (and node_name) as pkg/cluster's Config.
func (c *Config) ClusterConfig() cluster.Config {
	cl := c.Cluster
	return cluster.Config{
		Enabled:              cl.Enabled,
		NodeName:             c.NodeName,
		Bind:                 cl.Bind,
		Advertise:            cl.Advertise,
		Peers:                slices.Clone(cl.Peers),
		KeyFile:              cl.KeyFile,
		SplitBrain:           cl.SplitBrain,
		BlockedVRRPIntervals: cl.BlockedVRRPIntervals,
		ConnReset:            cl.ConnReset != nil && *cl.ConnReset,
		ConnTableMax:         cl.ConnTableMax,
		ConnResetRate:        cl.ConnResetRate,
	}
}
