package vrrp

import (
	"net/netip"
	"time"
)

// State is a VRRP router state (RFC 5798 6.4, plus FAULT as in Keepalived).
type State int

// States.
const (
	StateInit State = iota
	StateBackup
	StateMaster
	StateFault
)

func (s State) String() string {
	switch s {
	case StateInit:
		return "INIT"
	case StateBackup:
		return "BACKUP"
	case StateMaster:
		return "MASTER"
	case StateFault:
		return "FAULT"
	}
	return "UNKNOWN"
}

// MarshalText makes State render as its name in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// EventKind is the kind of an Event fed to a Machine.
type EventKind int

// Events.
const (
	// EvStartup starts the machine (RFC 5798 6.4.1 Startup).
	EvStartup EventKind = iota
	// EvShutdown stops it (Shutdown): a master sends a priority-0 advert.
	EvShutdown
	// EvAdvert is a valid advertisement (Priority, Src, Interval).
	EvAdvert
	// EvTimer means the clock reached NextDeadline.
	EvTimer
	// EvPriority changes the effective local priority (Priority), e.g. by tracking.
	EvPriority
	// EvFault enters FAULT (Reason): the VIP is given up and not taken until EvFaultClear.
	EvFault
	// EvFaultClear leaves FAULT.
	EvFaultClear
	// EvResign starts a planned handover (handover.go): a master advertises priority 0 but
	// keeps the VIP until it hears another master, for at most Interval; then (Release) it
	// gives the VIP up anyway, or keeps it and goes on as master.
	EvResign
	// EvHold (Hold true) keeps the router BACKUP whatever it hears (maintenance); Hold false
	// lets it take part in the election again.
	EvHold
)

// Event is an input of the state machine.
type Event struct {
	Kind     EventKind
	Priority uint8
	Src      netip.Addr
	Interval time.Duration
	Reason   string
	// Release (EvResign): give the VIP up when Interval passes without a peer taking over.
	Release bool
	// Hold (EvHold): stay BACKUP.
	Hold bool
}

// ActionKind is the kind of an Action the Machine asks its owner to perform.
type ActionKind int

// Actions.
const (
	// ActSendAdvert: send an advertisement with Priority.
	ActSendAdvert ActionKind = iota
	// ActAcquire: become master: add the VIPs and send a GARP burst.
	ActAcquire
	// ActRelease: remove the VIPs (leaving master).
	ActRelease
	// ActAnnounce: send a GARP burst again (we are master and heard a
	// lower-priority advert).
	ActAnnounce
	// ActStateChange: the state changed From -> To because of Reason.
	ActStateChange
)

// Action is an output of the state machine.
type Action struct {
	Kind     ActionKind
	Priority uint8
	From, To State
	Reason   string
}

// MachineConfig is the part of the configuration the state machine uses.
type MachineConfig struct {
	Version        int // 2 or 3
	Priority       uint8
	AdvertInterval time.Duration
	Preempt        bool
	PreemptDelay   time.Duration
	PrimaryAddr    netip.Addr
	// SolePeer says the resigning master can only be our single configured
	// unicast peer, so no other backup competes: a priority-0 advert makes
	// us master at once instead of after Skew_Time.
	SolePeer bool
}

// Machine is the pure RFC 5798 (and RFC 3768) state machine: no goroutines,
// no clock of its own. Feed it events with Handle and perform the returned
// actions; call Handle(now, Event{Kind: EvTimer}) when now reaches
// NextDeadline.
type Machine struct {
	cfg   MachineConfig
	state State
	prio  uint8 // effective priority

	masterAdverInterval time.Duration
	deadline            time.Time // Master_Down_Timer (backup) or Adver_Timer (master)
	masterAddr          netip.Addr
	masterPrio          uint8
	preemptAt           time.Time // backup: earliest time a lower-priority master may be preempted
	lastForced          time.Time // master: last extra advert+announce
	pendingAnnounce     time.Time // master: a rate-limited announce is due then
	started             bool
	resign              *resign // master: a planned handover in progress (handover.go)
	hold                bool    // maintenance: stay BACKUP (handover.go)
}

// NewMachine returns a machine in INIT.
func NewMachine(cfg MachineConfig) *Machine {
	m := &Machine{cfg: cfg, prio: cfg.Priority}
	m.masterAdverInterval = cfg.AdvertInterval
	return m
}

// State returns the current state.
func (m *Machine) State() State { return m.state }

// Priority returns the effective priority.
func (m *Machine) Priority() uint8 { return m.prio }

// MasterAddr returns the address of the current master as far as known
// (our own primary address while master).
func (m *Machine) MasterAddr() netip.Addr {
	if m.state == StateMaster {
		return m.cfg.PrimaryAddr
	}
	if m.state == StateBackup {
		return m.masterAddr
	}
	return netip.Addr{}
}

// MasterAdverInterval returns Master_Adver_Interval.
func (m *Machine) MasterAdverInterval() time.Duration { return m.masterAdverInterval }

// announceGap bounds how often hearing lower-priority adverts makes a
// master re-announce (a flood of them costs at most 4 bursts a second); an
// announce inside the gap is deferred to its end, never dropped.
const announceGap = 250 * time.Millisecond

// NextDeadline returns when the machine next needs an EvTimer (zero if never).
func (m *Machine) NextDeadline() time.Time {
	if !m.pendingAnnounce.IsZero() && (m.deadline.IsZero() || m.pendingAnnounce.Before(m.deadline)) {
		return m.pendingAnnounce
	}
	return m.deadline
}

// SkewTime returns Skew_Time for the effective priority (RFC 5798 6.1;
// RFC 3768 6.1 for v2).
func (m *Machine) SkewTime() time.Duration {
	p := time.Duration(256 - int(m.prio))
	if m.cfg.Version == 2 {
		return p * time.Second / 256
	}
	return p * m.masterAdverInterval / 256
}

// maxResignBase caps the interval ResignWait scales by.
const maxResignBase = 100 * time.Millisecond

// ResignWait is how long a backup waits, after the master resigned with a
// priority-0 advert, before it takes over. RFC 5798 says Skew_Time
// ((256-Priority)/256 of the advert interval: 0.65 s for priority 90 at 1 s,
// Keepalived's figure). vipd computes the same fraction of at most 100 ms:
// the higher-priority backup still moves first (the order the RFC's wait
// exists for), and a graceful handover takes at most 100 ms whatever the
// interval. Backups that collide resolve it by the normal election.
func (m *Machine) ResignWait() time.Duration {
	base := m.masterAdverInterval
	if m.cfg.Version == 2 {
		base = time.Second
	}
	base = min(base, maxResignBase)
	return time.Duration(256-int(m.prio)) * base / 256
}

// MasterDownInterval returns Master_Down_Interval = 3*Master_Adver_Interval + Skew_Time.
func (m *Machine) MasterDownInterval() time.Duration {
	return 3*m.masterAdverInterval + m.SkewTime()
}

// Configure applies a new configuration (priority is the configured base
// priority; the effective priority is set with EvPriority).
func (m *Machine) Configure(now time.Time, cfg MachineConfig) []Action {
	old := m.cfg
	m.cfg = cfg
	if m.cfg.Version == 2 || m.state != StateBackup {
		m.masterAdverInterval = cfg.AdvertInterval
	}
	var acts []Action
	switch m.state {
	case StateMaster:
		if cfg.AdvertInterval != old.AdvertInterval {
			acts = append(acts, Action{Kind: ActSendAdvert, Priority: m.prio})
			m.deadline = now.Add(cfg.AdvertInterval)
		}
	case StateBackup:
		if !cfg.Preempt {
			m.preemptAt = time.Time{}
		}
	}
	return acts
}

func (m *Machine) change(acts []Action, to State, reason string) []Action {
	from := m.state
	m.state = to
	m.resign = nil
	m.pendingAnnounce = time.Time{}
	return append(acts, Action{Kind: ActStateChange, From: from, To: to, Reason: reason})
}

func (m *Machine) toMaster(now time.Time, acts []Action, reason string) []Action {
	if m.hold {
		return m.stayBackup(now, acts, reason)
	}
	acts = append(acts, Action{Kind: ActSendAdvert, Priority: m.prio}, Action{Kind: ActAcquire})
	m.masterAdverInterval = m.cfg.AdvertInterval
	m.deadline = now.Add(m.cfg.AdvertInterval)
	m.preemptAt = time.Time{}
	m.lastForced = now
	return m.change(acts, StateMaster, reason)
}

func (m *Machine) toBackup(now time.Time, acts []Action, reason string) []Action {
	m.deadline = now.Add(m.MasterDownInterval())
	if m.cfg.Preempt && m.cfg.PreemptDelay > 0 {
		m.preemptAt = now.Add(m.cfg.PreemptDelay)
	} else {
		m.preemptAt = time.Time{}
	}
	return m.change(acts, StateBackup, reason)
}

// Handle processes one event at time now and returns what to do, in order.
func (m *Machine) Handle(now time.Time, ev Event) []Action {
	var acts []Action
	switch ev.Kind {
	case EvStartup:
		if m.started {
			return nil
		}
		m.started = true
		if m.state == StateFault {
			return nil
		}
		return m.startup(now, acts, "startup")

	case EvShutdown:
		m.started = false
		m.deadline = time.Time{}
		switch m.state {
		case StateMaster:
			acts = append(acts, Action{Kind: ActSendAdvert, Priority: 0}, Action{Kind: ActRelease})
			return m.change(acts, StateInit, "shutdown")
		case StateBackup, StateFault:
			return m.change(acts, StateInit, "shutdown")
		}
		return nil

	case EvFault:
		if m.state == StateFault {
			return nil
		}
		m.deadline = time.Time{}
		if m.state == StateMaster {
			// Hand over at once: the backup sets its timer to Skew_Time.
			acts = append(acts, Action{Kind: ActSendAdvert, Priority: 0}, Action{Kind: ActRelease})
		}
		m.masterAddr = netip.Addr{}
		return m.change(acts, StateFault, ev.Reason)

	case EvFaultClear:
		if m.state != StateFault {
			return nil
		}
		if !m.started {
			return m.change(acts, StateInit, "fault cleared")
		}
		return m.startup(now, acts, "fault cleared")

	case EvPriority:
		return m.setPriority(now, ev.Priority)

	case EvResign:
		return m.startResign(now, ev)

	case EvHold:
		return m.setHold(now, ev.Hold)

	case EvTimer:
		if m.state == StateMaster && m.resign != nil {
			return m.resignTimer(now)
		}
		if m.state == StateMaster && !m.pendingAnnounce.IsZero() && !now.Before(m.pendingAnnounce) {
			m.pendingAnnounce = time.Time{}
			m.lastForced = now
			acts = append(acts, Action{Kind: ActSendAdvert, Priority: m.prio}, Action{Kind: ActAnnounce})
			m.deadline = now.Add(m.cfg.AdvertInterval)
			return acts
		}
		if m.deadline.IsZero() || now.Before(m.deadline) {
			return nil
		}
		switch m.state {
		case StateBackup:
			return m.toMaster(now, acts, "master down timer expired")
		case StateMaster:
			m.deadline = now.Add(m.cfg.AdvertInterval)
			return append(acts, Action{Kind: ActSendAdvert, Priority: m.prio})
		}
		m.deadline = time.Time{}
		return nil

	case EvAdvert:
		switch m.state {
		case StateBackup:
			return m.backupAdvert(now, ev, acts)
		case StateMaster:
			if m.resign != nil {
				return m.resignAdvert(now, ev)
			}
			return m.masterAdvert(now, ev, acts)
		}
	}
	return nil
}

func (m *Machine) startup(now time.Time, acts []Action, reason string) []Action {
	m.masterAddr = netip.Addr{}
	m.masterAdverInterval = m.cfg.AdvertInterval
	if m.prio == 255 {
		return m.toMaster(now, acts, reason+": priority 255 (address owner)")
	}
	return m.toBackup(now, acts, reason)
}

func (m *Machine) setPriority(now time.Time, p uint8) []Action {
	if p == 0 {
		p = 1
	}
	if p == m.prio {
		return nil
	}
	m.prio = p
	switch m.state {
	case StateMaster:
		if m.resign != nil {
			return nil // the priority-0 adverts go on
		}
		// Tell the peers at once so a preempting backup takes over now
		// instead of at the next advert.
		m.deadline = now.Add(m.cfg.AdvertInterval)
		return []Action{{Kind: ActSendAdvert, Priority: p}}
	case StateBackup:
		// Skew_Time depends on the priority; keep the running timer
		// (it is reset by the next advert). An owner takes over at once.
		if p == 255 {
			return m.toMaster(now, nil, "priority raised to 255")
		}
	}
	return nil
}

func (m *Machine) backupAdvert(now time.Time, ev Event, acts []Action) []Action {
	if m.hold && ev.Priority > 0 {
		m.acceptMaster(now, ev) // maintenance: any master is our master
		return nil
	}
	if ev.Priority == 0 {
		if m.cfg.SolePeer {
			return m.toMaster(now, acts, "sole peer "+ev.Src.String()+" resigned (priority 0)")
		}
		// The master resigned: take over after ResignWait (Skew_Time on a
		// 100 ms scale).
		m.deadline = now.Add(m.ResignWait())
		m.masterAddr = netip.Addr{}
		return nil
	}
	if !m.cfg.Preempt || ev.Priority >= m.prio {
		m.acceptMaster(now, ev)
		if ev.Priority >= m.prio && m.cfg.Preempt && m.cfg.PreemptDelay > 0 {
			// A new lower-priority master later gets a fresh delay.
			m.preemptAt = time.Time{}
		}
		return nil
	}
	// Preempt mode and a lower-priority master.
	if m.cfg.PreemptDelay > 0 {
		if m.preemptAt.IsZero() {
			m.preemptAt = now.Add(m.cfg.PreemptDelay)
		}
		if now.Before(m.preemptAt) {
			m.acceptMaster(now, ev)
			return nil
		}
	}
	// RFC 5798 discards the advert and lets Master_Down_Timer expire;
	// like Keepalived ("forcing a new election") we take over at once:
	// our higher-priority advert makes the other router back off.
	return m.toMaster(now, acts, "preempting lower-priority master "+ev.Src.String())
}

func (m *Machine) acceptMaster(now time.Time, ev Event) {
	if m.cfg.Version == 3 && ev.Interval > 0 {
		m.masterAdverInterval = ev.Interval
	}
	m.masterAddr = ev.Src
	m.masterPrio = ev.Priority
	m.deadline = now.Add(m.MasterDownInterval())
}

func (m *Machine) masterAdvert(now time.Time, ev Event, acts []Action) []Action {
	if ev.Priority == 0 {
		// Another master resigned: assert ourselves at once.
		m.deadline = now.Add(m.cfg.AdvertInterval)
		return append(acts, Action{Kind: ActSendAdvert, Priority: m.prio})
	}
	if ev.Priority > m.prio || (ev.Priority == m.prio && ev.Src.Compare(m.cfg.PrimaryAddr) > 0) {
		acts = append(acts, Action{Kind: ActRelease})
		if m.cfg.Version == 3 && ev.Interval > 0 {
			m.masterAdverInterval = ev.Interval
		}
		m.masterAddr = ev.Src
		m.masterPrio = ev.Priority
		reason := "higher-priority advert from " + ev.Src.String()
		if ev.Priority == m.prio {
			reason = "equal-priority advert from higher address " + ev.Src.String()
		}
		from := m.state
		m.state = StateBackup
		m.pendingAnnounce = time.Time{}
		m.deadline = now.Add(m.MasterDownInterval())
		m.preemptAt = time.Time{}
		acts = append(acts, Action{Kind: ActStateChange, From: from, To: StateBackup, Reason: reason})
		// Parting advert (vipd extension): we may have been master during
		// a partition the new master never saw, and clients' ARP caches may
		// point at us. Our lower-priority advert makes the new master
		// re-announce the VIP (vipd and Keepalived both do on hearing a
		// lower-priority advert).
		return append(acts, Action{Kind: ActSendAdvert, Priority: m.prio})
	}
	// A lower-priority router thinks it is master (split brain healing,
	// or it just started): assert ourselves and re-announce the VIP, at
	// most once per announceGap; inside the gap the announce is deferred
	// to the gap's end (the other router's GARPs may still be in flight).
	if now.Sub(m.lastForced) >= announceGap {
		m.lastForced = now
		m.pendingAnnounce = time.Time{}
		m.deadline = now.Add(m.cfg.AdvertInterval)
		acts = append(acts, Action{Kind: ActSendAdvert, Priority: m.prio}, Action{Kind: ActAnnounce})
	} else if m.pendingAnnounce.IsZero() {
		m.pendingAnnounce = m.lastForced.Add(announceGap)
	}
	return acts
}
