package phases

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// Event is one thing bootstrap reports while it works: in text, one line (or a block for a
// failure); with --output json, one JSON object per line, for CI pipelines.
type Event struct {
	Time time.Time `json:"time"`
	// Type: "plan" (the dry run's header), "start" (a step begins on a host), "done" (it
	// ended), "detail" and "todo" (a dry run's findings and what it would do), "warning",
	// "failed", and the command's last event: "ready" (up) or "planned" (up --dry-run).
	Type    string  `json:"type"`
	Host    string  `json:"host,omitempty"`
	Phase   string  `json:"phase,omitempty"`
	Message string  `json:"message,omitempty"`
	Elapsed float64 `json:"elapsed_seconds,omitempty"` // since the step started on the host
	// failed only:
	Error    string `json:"error,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"` // of the command that failed on the host
	Fix      string `json:"fix,omitempty"`
	Rerun    string `json:"rerun,omitempty"`
}

// Output formats of Options.Format.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// ParseFormat checks an --output value.
func ParseFormat(s string) (string, error) {
	switch s {
	case FormatText, FormatJSON:
		return s, nil
	}
	return "", fmt.Errorf("--output: %q is not text or json", s)
}

// printer writes events in one format. Text on a terminal also keeps a status line under
// the output naming the steps still running and for how long, redrawn every second.
type printer struct {
	mu      sync.Mutex
	w       io.Writer
	json    bool
	tty     bool
	running map[string]time.Time // "[host] phase" -> start, for the status line
	status  bool                 // a status line is on the screen
	now     func() time.Time
}

func newPrinter(w io.Writer, format string, tty bool) *printer {
	return &printer{w: w, json: format == FormatJSON, tty: tty && format != FormatJSON, running: map[string]time.Time{}, now: time.Now}
}

func (p *printer) event(e Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.Time.IsZero() {
		e.Time = p.now()
	}
	if p.json {
		b, _ := json.Marshal(e) // an Event always marshals
		p.w.Write(append(b, '\n'))
		return
	}
	key := "[" + e.Host + "] " + e.Phase
	switch e.Type {
	case "start":
		p.running[key] = e.Time
	case "done", "failed":
		delete(p.running, key)
	}
	p.clearStatus()
	io.WriteString(p.w, formatText(e))
	p.drawStatus()
}

func formatText(e Event) string {
	head := "[" + e.Host + "] " + e.Phase + ": "
	switch e.Type {
	case "plan", "ready", "planned":
		return e.Message + "\n"
	case "start":
		return head + "started: " + e.Message + "\n"
	case "todo":
		return head + "would " + e.Message + "\n"
	case "warning":
		return head + "WARNING: " + e.Message + "\n"
	case "failed":
		var b strings.Builder
		fmt.Fprintf(&b, "%sFAILED (%s)\n", head, fmtDur(secs(e.Elapsed)))
		lines := strings.Split(e.Error, "\n")
		fmt.Fprintf(&b, "    error: %s\n", lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(&b, "           %s\n", l)
		}
		if e.ExitCode != nil {
			fmt.Fprintf(&b, "    exit code: %d\n", *e.ExitCode)
		}
		if e.Fix != "" {
			fmt.Fprintf(&b, "    fix: %s\n", e.Fix)
		}
		if e.Rerun != "" {
			fmt.Fprintf(&b, "    rerun: %s\n", e.Rerun)
		}
		return b.String()
	}
	if e.Type == "done" && e.Elapsed >= 0 {
		return fmt.Sprintf("%s%s (%s)\n", head, e.Message, fmtDur(secs(e.Elapsed)))
	}
	return head + e.Message + "\n"
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// clearStatus erases the status line (p.mu held).
func (p *printer) clearStatus() {
	if p.status {
		io.WriteString(p.w, "\r\033[K")
		p.status = false
	}
}

// drawStatus writes the status line, without a newline: "running: [master2] join-masters
// 12s, ..." (p.mu held).
func (p *printer) drawStatus() {
	if !p.tty || len(p.running) == 0 {
		return
	}
	keys := make([]string, 0, len(p.running))
	for k := range p.running {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	now := p.now()
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %s", k, now.Sub(p.running[k]).Round(time.Second)))
	}
	io.WriteString(p.w, "running: "+strings.Join(parts, ", "))
	p.status = true
}

// tick redraws the status line every second until done is called (a terminal only).
func (p *printer) tick() (done func()) {
	if !p.tty {
		return func() {}
	}
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				p.mu.Lock()
				p.clearStatus()
				p.drawStatus()
				p.mu.Unlock()
			}
		}
	}()
	return func() {
		close(stop)
		<-finished
		p.mu.Lock()
		p.clearStatus()
		p.mu.Unlock()
	}
}
