package stats

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

//go:embed page.html.tmpl
var pageTemplateText string

var pageTemplate = template.Must(template.New("stats").Parse(pageTemplateText))

// pageCSP allows the page's own inline <style> and <script> by hash (they
// contain no template actions, so they are served byte for byte as in the
// template) and nothing else: even a value that escaped escaping could not
// run script.
var pageCSP = "default-src 'none'; style-src " + inlineHash(pageTemplateText, "<style>", "</style>") +
	"; script-src " + inlineHash(pageTemplateText, "<script>", "</script>") +
	"; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// inlineHash returns the CSP source ('sha256-...') of the text between the
// first open and close tags in tmpl; it panics at init if the tags are
// missing or the text holds a template action.
func inlineHash(tmpl, open, close string) string {
	i := strings.Index(tmpl, open)
	j := strings.Index(tmpl, close)
	if i < 0 || j < i {
		panic("stats: page template lacks " + open)
	}
	body := tmpl[i+len(open) : j]
	if strings.Contains(body, "{{") {
		panic("stats: page template's " + open + " holds a template action; its CSP hash would not match")
	}
	sum := sha256.Sum256([]byte(body))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// page is the view model of the HTML page: every string is ready to print,
// and html/template escapes it.
type page struct {
	Node        string
	Version     string
	Generated   string
	RefreshSecs int
	Uptime      string

	State      string
	StateClass string
	StateFor   string
	Priority   string
	PrioLow    bool
	VIPs       string
	HolderText string
	HolderSelf bool
	VRRPInfo   string
	Faults     []string
	VRRPCounts string

	Frontend *feRow
	Backends []beRow
	BEUp     int
	BETotal  int

	Cluster *clusterBlock
	Alarms  []alarmRow

	Transitions []trRow
}

type feRow struct {
	Listen, Status, StatusClass       string
	Cur, Total, Max, Refused, Errors  string
	RefusedSource, TimedOut           string
	BytesIn, BytesOut                 string
	RefusedWarn, ErrorsWarn, NearFull bool
}

type beRow struct {
	Addr, Status, StatusClass, For string
	LastCheck, LastResult, Latency string
	ResultBad                      bool
	Cur, Total                     string
	BytesIn, BytesOut              string
	CheckFails, Transitions        string
	ConnErrors, Retries            string
	ErrWarn, RetryWarn             bool
}

type clusterBlock struct {
	Members  []memberRow
	Backends []string
	// VIPConflict: more than one alive member says it holds the VIP.
	VIPConflict bool
}

type memberRow struct {
	Name, Addr, Self           string
	Alive                      bool
	State, StateClass          string
	Priority                   string
	HoldsVIP                   bool
	Backends                   []memberBackend
	Fingerprint, Version, Seen string
	FingerprintDiffers         bool
}

type memberBackend struct {
	Addr, Status, Class string
}

type alarmRow struct {
	Kind, Message, For string
}

type trRow struct {
	At, Ago, From, FromClass, To, ToClass, Reason string
}

func stateClass(s string) string {
	switch s {
	case StateMaster:
		return "master"
	case StateBackup:
		return "backup"
	case StateFault:
		return "fault"
	default:
		return "init"
	}
}

func backendClass(status string) string {
	switch status {
	case BackendUp:
		return "up"
	case BackendDown:
		return "down"
	case BackendDrain, BackendMaint:
		return "drain"
	default:
		return "unknown"
	}
}

func buildPage(s Snapshot, refresh time.Duration) page {
	now := s.Time
	p := page{
		Node:        orDash(s.Node),
		Version:     s.Version,
		Generated:   now.UTC().Format("2006-01-02 15:04:05 UTC"),
		RefreshSecs: max(1, int(refresh.Round(time.Second)/time.Second)),
	}
	if !s.Started.IsZero() {
		p.Uptime = humanDuration(now.Sub(s.Started))
	}

	v := s.VRRP
	p.State = v.State
	if p.State == "" {
		p.State = "UNKNOWN"
	}
	p.StateClass = stateClass(v.State)
	if !v.Since.IsZero() {
		p.StateFor = "for " + humanDuration(now.Sub(v.Since))
	}
	if v.EffectivePriority != v.Priority {
		p.Priority = fmt.Sprintf("%d (configured %d)", v.EffectivePriority, v.Priority)
		p.PrioLow = v.EffectivePriority < v.Priority
	} else {
		p.Priority = fmt.Sprint(v.Priority)
	}
	p.VIPs = orDash(strings.Join(v.VIPs, ", "))
	switch {
	case v.HoldsVIP:
		p.HolderText = "this host (" + p.Node + ")"
		p.HolderSelf = true
	case v.MasterAddr != "":
		p.HolderText = v.MasterAddr
		if name := memberNameFor(s.Cluster, v.MasterAddr); name != "" {
			p.HolderText = name + " (" + v.MasterAddr + ")"
		}
	default:
		p.HolderText = "unknown (no master heard)"
	}
	var info []string
	if v.Interface != "" {
		info = append(info, v.Interface)
	}
	if v.VRID != 0 {
		info = append(info, fmt.Sprintf("VRID %d", v.VRID))
	}
	if v.ProtoVersion != 0 {
		info = append(info, fmt.Sprintf("VRRPv%d", v.ProtoVersion))
	}
	if v.AdvertInterval > 0 {
		info = append(info, "advert "+v.AdvertInterval.String())
	}
	p.VRRPInfo = strings.Join(info, " · ")
	p.Faults = v.Faults
	drops := sumCounts(v.Drops)
	p.VRRPCounts = fmt.Sprintf("adverts sent %s, received %s, dropped %s · GARPs %s · transitions %s",
		count(v.AdvertsSent), count(v.AdvertsReceived), count(drops), count(v.GARPsSent), count(v.TransitionsTotal))
	if len(v.Drops) > 0 {
		var parts []string
		for _, k := range sortedKeys(v.Drops) {
			parts = append(parts, fmt.Sprintf("%s %d", k, v.Drops[k]))
		}
		p.VRRPCounts += " (dropped: " + strings.Join(parts, ", ") + ")"
	}
	if v.SourcesBound > 0 || sumCounts(v.SourceTable) > 0 {
		p.VRRPCounts += fmt.Sprintf(" · source MAC table: %d bound, refused %s, evicted %s, expired %s", v.SourcesBound,
			count(v.SourceTable["source_table_full"]), count(v.SourceTable["source_evicted"]), count(v.SourceTable["source_expired"]))
	}

	if f := s.Frontend; f != nil {
		r := &feRow{
			Listen:   f.Listen,
			Cur:      count(uint64(max(0, f.CurrentConns))),
			Total:    count(f.TotalConns),
			Refused:  count(f.RefusedByCap),
			TimedOut: count(sumCounts(f.TimedOut)),
			Errors:   count(f.Errors),
			BytesIn:  humanBytes(f.BytesIn),
			BytesOut: humanBytes(f.BytesOut),
			Max:      "no cap",
		}
		if f.MaxConns > 0 {
			r.Max = count(uint64(f.MaxConns))
			r.NearFull = f.CurrentConns*10 >= f.MaxConns*9
		}
		r.RefusedSource = count(f.RefusedPerSource)
		if f.MaxConnsPerSource == 0 {
			r.RefusedSource = "no cap"
		}
		r.RefusedWarn = f.RefusedByCap > 0 || f.RefusedPerSource > 0
		r.ErrorsWarn = f.Errors > 0
		if f.Listening {
			r.Status, r.StatusClass = "OPEN", "up"
		} else {
			r.Status, r.StatusClass = "FAILED", "down"
		}
		p.Frontend = r
	}

	for _, b := range s.Backends {
		st := b.StatusText()
		r := beRow{
			Addr:        b.Addr,
			Status:      st,
			StatusClass: backendClass(st),
			LastResult:  orDash(b.LastResult),
			Latency:     "—",
			Cur:         count(uint64(max(0, b.CurrentConns))),
			Total:       count(b.TotalConns),
			BytesIn:     humanBytes(b.BytesIn),
			BytesOut:    humanBytes(b.BytesOut),
			CheckFails:  count(b.CheckFailures),
			Transitions: count(b.Transitions),
			ConnErrors:  count(b.ConnErrors),
			Retries:     count(b.Retries),
			ErrWarn:     b.ConnErrors > 0,
			RetryWarn:   b.Retries > 0,
		}
		if !b.Since.IsZero() {
			r.For = "for " + humanDuration(now.Sub(b.Since))
		}
		if b.LastCheck.IsZero() {
			r.LastCheck = "never"
		} else {
			r.LastCheck = humanDuration(now.Sub(b.LastCheck)) + " ago"
			r.Latency = humanLatency(b.LastLatency.Std())
		}
		r.ResultBad = !b.Up && b.LastResult != ""
		if b.Up {
			p.BEUp++
		}
		p.Backends = append(p.Backends, r)
	}
	p.BETotal = len(s.Backends)

	if c := s.Cluster; c != nil && c.Enabled {
		p.Cluster = buildCluster(c, now)
		for _, a := range c.Alarms {
			r := alarmRow{Kind: strings.ReplaceAll(a.Kind, "_", " "), Message: a.Message}
			if !a.Since.IsZero() {
				r.For = "for " + humanDuration(now.Sub(a.Since))
			}
			p.Alarms = append(p.Alarms, r)
		}
	}

	// Newest first, at most 20.
	tr := v.Transitions
	for i := len(tr) - 1; i >= 0 && len(p.Transitions) < 20; i-- {
		t := tr[i]
		p.Transitions = append(p.Transitions, trRow{
			At:        t.At.UTC().Format("2006-01-02 15:04:05.000"),
			Ago:       humanDuration(now.Sub(t.At)) + " ago",
			From:      orDash(t.From),
			FromClass: stateClass(t.From),
			To:        orDash(t.To),
			ToClass:   stateClass(t.To),
			Reason:    t.Reason,
		})
	}
	return p
}

func buildCluster(c *ClusterView, now time.Time) *clusterBlock {
	cb := &clusterBlock{}
	set := map[string]bool{}
	fps := map[string]int{}
	holders := 0
	for _, m := range c.Members {
		for a := range m.Backends {
			set[a] = true
		}
		if m.Alive || m.Self {
			fps[m.ConfigFingerprint]++
			if m.HoldsVIP {
				holders++
			}
		}
	}
	cb.Backends = sortedKeys(set)
	cb.VIPConflict = holders > 1
	// The fingerprint most alive members share; the others are drift. With
	// no majority (two nodes that differ) every node is marked.
	common, best, ties := "", 0, 0
	for _, fp := range sortedKeys(fps) {
		switch n := fps[fp]; {
		case n > best:
			common, best, ties = fp, n, 1
		case n == best:
			ties++
		}
	}
	majority := ties == 1
	for _, m := range c.Members {
		r := memberRow{
			Name:        orDash(m.Name),
			Addr:        m.Addr,
			Alive:       m.Alive || m.Self,
			State:       orDash(m.VRRPState),
			StateClass:  stateClass(m.VRRPState),
			Priority:    fmt.Sprint(m.Priority),
			HoldsVIP:    m.HoldsVIP,
			Fingerprint: shortFP(m.ConfigFingerprint),
			Version:     orDash(m.Version),
			Seen:        "—",
		}
		if m.Self {
			r.Self = "this node"
			r.Seen = "now"
		} else if !m.LastSeen.IsZero() {
			r.Seen = humanDuration(now.Sub(m.LastSeen)) + " ago"
		}
		r.FingerprintDiffers = len(fps) > 1 && (!majority || m.ConfigFingerprint != common)
		for _, a := range cb.Backends {
			up, ok := m.Backends[a]
			mb := memberBackend{Addr: a, Status: "?", Class: "unknown"}
			if ok && up {
				mb.Status, mb.Class = "UP", "up"
			} else if ok {
				mb.Status, mb.Class = "DOWN", "down"
			}
			r.Backends = append(r.Backends, mb)
		}
		cb.Members = append(cb.Members, r)
	}
	return cb
}

func memberNameFor(c *ClusterView, addr string) string {
	if c == nil {
		return ""
	}
	for _, m := range c.Members {
		host := m.Addr
		if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
			host = host[:i]
		}
		if host == addr || m.Addr == addr {
			return m.Name
		}
	}
	return ""
}

func shortFP(fp string) string {
	if fp == "" {
		return "—"
	}
	if len(fp) > 12 {
		return fp[:12]
	}
	return fp
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func renderPage(w io.Writer, p page) error {
	return pageTemplate.Execute(w, p)
}

// humanDuration formats d compactly: 850ms, 12s, 3m12s, 2h03m, 3d04h.
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	}
}

// humanLatency formats a check latency: 0.4 ms, 12.3 ms, 1.20 s.
func humanLatency(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

// humanBytes formats n in binary units: 512 B, 1.5 KiB, 23.4 MiB.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(n) / unit
	i := 0
	for f >= unit && i < len(units)-1 {
		f /= unit
		i++
	}
	if f < 10 {
		return fmt.Sprintf("%.2f %s", f, units[i])
	}
	if f < 100 {
		return fmt.Sprintf("%.1f %s", f, units[i])
	}
	return fmt.Sprintf("%.0f %s", f, units[i])
}

// count formats n with thin separators: 1 234 567.
func count(n uint64) string {
	s := fmt.Sprint(n)
	if len(s) <= 4 {
		return s
	}
	var b strings.Builder
	pre := len(s) % 3
	if pre > 0 {
		b.WriteString(s[:pre])
	}
	for i := pre; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteString("\u202f")
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

// sumCounts adds up a map of counters.
func sumCounts(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
