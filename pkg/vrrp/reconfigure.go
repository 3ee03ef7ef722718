package vrrp

import (
	"errors"
	"time"
)

// Reconfigure: what a reload may change on a running router.

type reconfReq struct {
	cfg Config
	res chan error
}

// Reconfigure applies a new configuration: priority, preempt,
// preempt_delay, advert_interval, garp_*, unicast_peers (within unicast
// mode) and auth_pass change live. Changing interface, vrid, version, vips,
// unicast_source, track_interface or switching multicast/unicast is refused
// with an error naming the field; the old configuration keeps running.
func (r *Router) Reconfigure(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	old := r.cfg
	r.mu.Unlock()
	if err := old.reconfigurable(cfg); err != nil {
		return err
	}
	if !r.running.Load() {
		r.mu.Lock()
		r.cfg = cfg
		r.st.Priority = cfg.Priority
		r.st.AdvertInterval = cfg.AdvertInterval
		r.mu.Unlock()
		r.rx.Store(newRxFilter(cfg, r.primary))
		return nil
	}
	req := reconfReq{cfg: cfg, res: make(chan error, 1)}
	select {
	case r.reconfCh <- req:
		return <-req.res
	case <-r.done:
		return errors.New("vrrp: router stopped")
	}
}

func (r *Router) machineConfig(cfg Config) MachineConfig {
	return MachineConfig{
		Version:        cfg.Version,
		Priority:       cfg.Priority,
		AdvertInterval: cfg.AdvertInterval,
		Preempt:        cfg.Preempt,
		PreemptDelay:   cfg.PreemptDelay,
		PrimaryAddr:    r.primary,
		SolePeer:       len(cfg.UnicastPeers) == 1,
	}
}

func (r *Router) applyConfig(cfg Config) error {
	r.mu.Lock()
	old := r.cfg
	if err := old.reconfigurable(cfg); err != nil {
		r.mu.Unlock()
		return err
	}
	r.cfg = cfg
	r.st.Priority = cfg.Priority
	r.st.AdvertInterval = cfg.AdvertInterval
	r.mu.Unlock()
	r.rx.Store(newRxFilter(cfg, r.primary))
	r.setSigner(cfg)
	now := time.Now()
	r.apply(now, r.m.Configure(now, r.machineConfig(cfg)))
	r.ann.configure(cfg.GARPCount, cfg.GARPInterval)
	r.reevaluate()
	r.log.Info("VRRP reconfigured", "priority", cfg.Priority, "preempt", cfg.Preempt, "preempt_delay", cfg.PreemptDelay,
		"advert_interval", cfg.AdvertInterval, "unicast_peers", cfg.UnicastPeers)
	if cfg.GARPRefresh != old.GARPRefresh {
		r.log.Warn("vrrp.garp.refresh change takes effect after a restart")
	}
	return nil
}

// setSigner (re)creates the advert signer for cfg (Run goroutine), keeping
// the sequence growing across a key change.
func (r *Router) setSigner(cfg Config) {
	var seq uint64
	if r.signer != nil {
		seq = r.signer.seq
	}
	r.signer = nil
	if len(cfg.AuthHMACKey) > 0 {
		r.signer = newHMACSigner(cfg.AuthHMACKey, cfg.AuthHMACKeyID)
		r.signer.seq = seq
	}
}
