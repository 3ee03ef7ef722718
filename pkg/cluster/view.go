package cluster

import (
	"fmt"
	"io"
	"maps"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// View is the whole LB tier as this node sees it, for /stats.json and `vipd status`.
type View struct {
	Node       string       `json:"node"`
	Addr       string       `json:"addr"`
	SplitBrain string       `json:"split_brain_policy"`
	Resigned   bool         `json:"resigned"`
	ConnReset  string       `json:"conn_reset"` // on, off, or why it is unavailable
	Members    []MemberView `json:"members"`    // this node first, then peers by name
	Alarms     []Alarm      `json:"alarms"`
	Counters   Counters     `json:"counters"`
}

// MemberView is one LB node.
type MemberView struct {
	Name              string          `json:"name"`
	Self              bool            `json:"self"`
	Addr              string          `json:"addr"`
	Alive             bool            `json:"alive"`  // alive on gossip with fresh state
	Gossip            string          `json:"gossip"` // memberlist: alive, suspect, dead, left
	LastSeen          time.Time       `json:"last_seen"`
	Version           string          `json:"version"`
	VRRPState         string          `json:"vrrp_state"`
	Priority          int             `json:"priority"`
	EffectivePriority int             `json:"effective_priority"`
	HoldsVIP          bool            `json:"holds_vip"`
	VIPs              []string        `json:"vips"`
	VRID              int             `json:"vrid"`
	Backends          map[string]bool `json:"backends"`
	ConfigFingerprint string          `json:"config_fingerprint"`
	Conns             int             `json:"conns"` // connections in its shared table
	Resigned          bool            `json:"resigned"`
}

// View returns a snapshot.
func (c *Cluster) View() View {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	v := View{
		Node:       c.cfg.NodeName,
		Addr:       c.Addr(),
		SplitBrain: c.cfg.SplitBrain,
		Resigned:   c.resign != nil,
		ConnReset:  c.connResetStatus,
		Alarms:     c.alarmsLocked(),
		Counters:   c.ctr,
	}
	v.Counters.AlarmsRaised = maps.Clone(c.ctr.AlarmsRaised)
	l := c.local
	v.Members = append(v.Members, MemberView{
		Name: c.cfg.NodeName, Self: true, Addr: v.Addr, Alive: true, Gossip: "alive", LastSeen: now,
		Version: l.Version, VRRPState: l.VRRPState, Priority: l.Priority, EffectivePriority: l.EffectivePriority,
		HoldsVIP: l.HoldsVIP, VIPs: l.VIPs, VRID: l.VRID, Backends: maps.Clone(l.Backends),
		ConfigFingerprint: l.ConfigFingerprint, Conns: c.localConns, Resigned: c.resign != nil,
	})
	names := make([]string, 0, len(c.peers))
	for n := range c.peers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := c.peers[n]
		s := p.state
		m := MemberView{Name: n, Addr: p.addr, Alive: c.aliveLocked(p, now), Gossip: p.gossip, LastSeen: p.lastSeen}
		if m.Gossip == "" {
			m.Gossip = "unknown"
		}
		if p.hasState {
			m.Version, m.VRRPState, m.Priority, m.EffectivePriority = s.Version, s.VRRPState, s.Priority, s.EffectivePriority
			m.HoldsVIP, m.VIPs, m.VRID, m.Backends = s.HoldsVIP, s.VIPs, s.VRID, maps.Clone(s.Backends)
			m.ConfigFingerprint, m.Conns, m.Resigned = s.ConfigFingerprint, s.Conns, s.Resigned
		}
		v.Members = append(v.Members, m)
	}
	return v
}

// ActiveByKind counts active alarms per kind (every kind present, zero when clear): gauges.
func (v View) ActiveByKind() map[string]int {
	out := make(map[string]int, len(AlarmKinds))
	for _, k := range AlarmKinds {
		out[k] = 0
	}
	for _, a := range v.Alarms {
		out[a.Kind]++
	}
	return out
}

// WriteText prints the view for `vipd status`.
func (v View) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "NODE\tADDR\tGOSSIP\tVRRP\tPRIO\tVIP\tBACKENDS (UP/total)\tCONNS\tLAST SEEN\n")
	for _, m := range v.Members {
		name := m.Name
		if m.Self {
			name += " (self)"
		}
		if m.Resigned {
			name += " [resigned]"
		}
		vrrp := m.VRRPState
		if vrrp == "" {
			vrrp = "-"
		}
		up := 0
		var down []string
		for b, ok := range m.Backends {
			if ok {
				up++
			} else {
				down = append(down, b)
			}
		}
		sort.Strings(down)
		be := fmt.Sprintf("%d/%d", up, len(m.Backends))
		if len(down) > 0 {
			be += " down: " + strings.Join(down, ",")
		}
		vip := "no"
		if m.HoldsVIP {
			vip = "yes"
		}
		seen := "-"
		if !m.LastSeen.IsZero() {
			seen = time.Since(m.LastSeen).Round(100*time.Millisecond).String() + " ago"
		}
		if m.Self {
			seen = "-"
		}
		gossip := m.Gossip
		if !m.Self && m.Gossip == "alive" && !m.Alive {
			gossip = "alive (state stale)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%d\t%s\n", name, m.Addr, gossip, vrrp,
			m.EffectivePriority, m.Priority, vip, be, m.Conns, seen)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "split brain policy: %s; connection reset after takeover: %s\n", v.SplitBrain, or(v.ConnReset, "off"))
	if len(v.Alarms) == 0 {
		_, err := fmt.Fprintln(w, "alarms: none")
		return err
	}
	fmt.Fprintln(w, "alarms:")
	for _, a := range v.Alarms {
		if _, err := fmt.Fprintf(w, "  %s (since %s): %s\n", a.Kind, a.Since.Format(time.RFC3339), a.Message); err != nil {
			return err
		}
	}
	return nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
