package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// The memberlist seams: delegate and event callbacks, the state bundle, and memberlist's log.

// delegate implements memberlist.Delegate: state travels in user messages (NotifyMsg) and in
// the TCP push/pull (LocalState/MergeRemoteState), which also carries the connection table.
type delegate struct{ c *Cluster }

func (d *delegate) NodeMeta(int) []byte               { return nil }
func (d *delegate) GetBroadcasts(int, int) [][]byte   { return nil }
func (d *delegate) NotifyMsg(b []byte)                { d.c.handleMsg(b) }
func (d *delegate) MergeRemoteState(b []byte, _ bool) { d.c.handleMsg(b) }
func (d *delegate) LocalState(bool) []byte            { return d.c.bundle() }

// events implements memberlist.EventDelegate.
type events struct{ c *Cluster }

func (e *events) NotifyJoin(n *memberlist.Node)   { e.c.member(n, true) }
func (e *events) NotifyUpdate(n *memberlist.Node) { e.c.member(n, true) }
func (e *events) NotifyLeave(n *memberlist.Node)  { e.c.member(n, false) }

// bundle is this node's push/pull state: its NodeState and its connection table.
func (c *Cluster) bundle() []byte {
	st, err := encodeState(c.wireLocal(c.deps.Local.LocalState()))
	if err != nil {
		return nil
	}
	conns := encodeConns(connTable{Name: c.cfg.NodeName, Boot: c.boot, Seq: c.connSeq.Add(1), Conns: c.snapshotConns()})
	return encodeBundle(st, conns)
}

func (c *Cluster) handleMsg(b []byte) {
	if len(b) == 0 {
		return
	}
	b = bytes.Clone(b) // memberlist may reuse the buffer
	switch b[0] {
	case msgState:
		w, err := decodeState(b)
		if err != nil {
			c.logger.Warn("bad gossip message", "err", err)
			return
		}
		c.handleState(w)
	case msgConns:
		t, err := decodeConns(b, c.cfg.ConnTableMax)
		if err != nil {
			c.logger.Warn("bad gossip message", "err", err)
			return
		}
		c.handleConns(t)
	case msgBundle:
		st, cn, err := splitBundle(b)
		if err != nil {
			c.logger.Warn("bad gossip message", "err", err)
			return
		}
		c.handleMsg(st)
		if len(cn) > 0 {
			c.handleMsg(cn)
		}
	default:
		c.logger.Warn("bad gossip message", "type", b[0])
	}
}

func (c *Cluster) member(n *memberlist.Node, alive bool) {
	if n.Name == c.cfg.NodeName {
		return
	}
	c.mu.Lock()
	p := c.peerLocked(n.Name)
	p.member = alive
	p.addr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	p.gossip = stateName(n.State)
	p.lastChanged = time.Now()
	if n.State == memberlist.StateLeft {
		// A graceful leave (vipd stopped): it handed its clients over itself. A member that
		// failed keeps its table for the takeover's resets (ConnTableTTL).
		delete(c.tables, n.Name)
	}
	c.mu.Unlock()
	if alive {
		c.logger.Info("gossip peer joined", "peer", n.Name, "addr", p.addr)
		c.Notify() // send our state to the newcomer at once
	} else {
		c.logger.Info("gossip peer left or failed", "peer", n.Name, "addr", p.addr, "state", stateName(n.State))
	}
	c.kickEval()
}

func stateName(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	case memberlist.StateLeft:
		return "left"
	}
	return "unknown"
}

// mlLog adapts memberlist's log.Logger output to slog, and spots undecryptable gossip.
type mlLog struct{ c *Cluster }

func (l *mlLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	lvl := slog.LevelDebug
	switch {
	case strings.HasPrefix(msg, "[ERR]"):
		lvl = slog.LevelError
	case strings.HasPrefix(msg, "[WARN]"):
		lvl = slog.LevelWarn
	case strings.HasPrefix(msg, "[INFO]"):
		lvl = slog.LevelInfo
	}
	low := strings.ToLower(msg)
	if strings.Contains(low, "decrypt") || strings.Contains(low, "not encrypted") ||
		strings.Contains(low, "message authentication failed") {
		from := ""
		if i := strings.Index(msg, "from="); i >= 0 {
			from = strings.Fields(msg[i+len("from="):])[0]
		} else if i := strings.Index(msg, "failed to join "); i >= 0 {
			from = strings.TrimSuffix(strings.Fields(msg[i+len("failed to join "):])[0], ":")
		}
		if h, _, err := net.SplitHostPort(from); err == nil && strings.Contains(msg, "from=") {
			from = h // the source port of an inbound stream is ephemeral
		}
		if l.c.noteKeyMismatch(from) {
			l.c.logger.Warn("undecryptable gossip: gossip key mismatch? (cluster.key_file must hold the same key on all LB hosts)",
				"peer", from, "detail", msg)
		}
		return len(p), nil
	}
	// memberlist is chatty at DEBUG/INFO; keep those at debug.
	if lvl < slog.LevelWarn {
		lvl = slog.LevelDebug
	}
	l.c.logger.Log(context.Background(), lvl, "memberlist", "msg", msg)
	return len(p), nil
}

// noteKeyMismatch records undecryptable gossip; it reports whether to log it (at most once per
// 10 s per peer).
func (c *Cluster) noteKeyMismatch(from string) bool {
	c.mu.Lock()
	now := time.Now()
	c.keyMismatch = now
	c.keyFrom = from
	if c.keyLogged == nil {
		c.keyLogged = make(map[string]time.Time)
	}
	logIt := now.Sub(c.keyLogged[from]) >= 10*time.Second
	if logIt {
		c.keyLogged[from] = now
	}
	c.mu.Unlock()
	c.kickEval()
	return logIt
}
