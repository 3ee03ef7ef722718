package phases

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// A dry run goes on past hosts that fail: every phase asks all its hosts, each failure is
// reported with its host, the other hosts are still planned, and the error names them all.
// (It stopped at the first host that failed.)
func TestDryRunReportsEveryFailingHost(t *testing.T) {
	top := refTopology(t)
	w := freshWorld(top)
	w.set("lb1", "probe facts", answer{code: 255, err: "connection lost"})
	w.set("k8s-master-2", "probe facts", answer{code: 1, err: "facts broke"})
	w.delay = 20 * time.Millisecond
	r, out := newTestRunner(t, top, w, true)
	err := r.Up(context.Background(), nil)
	var pe *PlanError
	if !errors.As(err, &pe) || len(pe.Failures) != 2 || pe.Failures[0].Host != "k8s-master-2" || pe.Failures[1].Host != "lb1" {
		t.Fatalf("dry run error %v, want a PlanError naming k8s-master-2 and lb1\n%s", err, out)
	}
	if got := err.Error(); got != "dry run: facts failed on k8s-master-2, facts failed on lb1" {
		t.Errorf("error %q", got)
	}
	s := out.String()
	for _, want := range []string{"[k8s-master-2] facts: FAILED", "[lb1] facts: FAILED",
		"[lb2] lb: would install the vipd package", "[k8s-master-3] common: would", "[k8s-worker-1] join-workers: would"} {
		if !strings.Contains(s, want) {
			t.Errorf("plan lacks %q:\n%s", want, s)
		}
	}
	for _, none := range []string{"[lb1] lb:", "[k8s-master-2] common:"} {
		if strings.Contains(s, none) {
			t.Errorf("plan goes on with a host that failed: %q\n%s", none, s)
		}
	}
	// Each host's lines stay together and in host order, though the hosts are probed at once.
	if i, j := strings.Index(s, "[k8s-master-3] common: would turn swap off"), strings.Index(s, "[k8s-worker-1] common: would turn swap off"); i < 0 || j < i {
		t.Errorf("common plan out of host order:\n%s", s)
	}
	// With the first master failed, the phases that ask the cluster through it are not planned.
	w = freshWorld(top)
	w.set("k8s-master-1", "probe facts", answer{code: 1})
	r, out = newTestRunner(t, top, w, true)
	if err := r.Up(context.Background(), nil); !errors.As(err, &pe) || len(pe.Failures) != 1 {
		t.Errorf("first master failed: %v, want one failure\n%s", err, out)
	}
	if !strings.Contains(out.String(), "[k8s-worker-1] join-workers: not planned: it needs the first master k8s-master-1, which failed above") || !strings.Contains(out.String(), "[k8s-worker-1] common: would") {
		t.Errorf("first master failed: plan\n%s", out)
	}
}

// --output json: every line is one event; a step's start comes before its end; a failure
// carries its error, exit code and rerun command.
func TestJSONEvents(t *testing.T) {
	top := refTopology(t)
	w := freshRunWorld(top)
	w.set("k8s-worker-1", "change kubeadm join", answer{code: 1, err: "join broke"})
	var out bytes.Buffer
	r, _ := newTestRunner(t, top, w, false)
	r.o.Format = FormatJSON
	r.out = newPrinter(&out, FormatJSON, true)
	if err := r.Up(context.Background(), nil); err == nil {
		t.Fatal("up succeeded, want the worker's join to fail")
	}
	var events []Event
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var e Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("not a JSON event: %q: %v", l, err)
		}
		if e.Time.IsZero() || e.Type == "" {
			t.Errorf("event without time or type: %q", l)
		}
		events = append(events, e)
	}
	find := func(typ, host, phase string) int {
		for i, e := range events {
			if e.Type == typ && e.Host == host && e.Phase == phase {
				return i
			}
		}
		return -1
	}
	start, done := find("start", "k8s-master-1", "init"), find("done", "k8s-master-1", "init")
	if start < 0 || done < start || !strings.Contains(events[start].Message, "kubeadm-config.yaml") || events[done].Elapsed <= 0 {
		t.Errorf("init on k8s-master-1: start %d, done %d, want a start naming the first step before a done with its time:\n%s", start, done, out.String())
	}
	f := find("failed", "k8s-worker-1", "join-workers")
	if f < 0 {
		t.Fatalf("no failed event for k8s-worker-1:\n%s", out.String())
	}
	if e := events[f]; !strings.Contains(e.Error, "join broke") || e.ExitCode == nil || *e.ExitCode != 1 || !strings.HasSuffix(e.Rerun, "--only join-workers") {
		t.Errorf("failed event %+v", e)
	}
	if strings.Contains(out.String(), "\033") || strings.Contains(out.String(), "running:") {
		t.Error("JSON output carries the terminal status line")
	}
}

// Text on a terminal: a line when a step starts, and under the output a status line with the
// running steps and their elapsed time, erased before the next line is written.
func TestTerminalStatusLine(t *testing.T) {
	var out bytes.Buffer
	p := newPrinter(&out, FormatText, true)
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	p.event(Event{Type: "start", Host: "m1", Phase: "init", Message: "kubeadm init (+1 more)"})
	now = now.Add(42 * time.Second)
	p.mu.Lock()
	p.clearStatus()
	p.drawStatus()
	p.mu.Unlock()
	p.event(Event{Type: "done", Host: "m1", Phase: "init", Message: "cluster initialised", Elapsed: 42})
	want := "[m1] init: started: kubeadm init (+1 more)\nrunning: [m1] init 0s" +
		"\r\033[Krunning: [m1] init 42s" +
		"\r\033[K[m1] init: cluster initialised (42s)\n"
	if out.String() != want {
		t.Errorf("terminal output\n%q\nwant\n%q", out.String(), want)
	}
	// Not a terminal: the same lines, no status line.
	out.Reset()
	p = newPrinter(&out, FormatText, false)
	p.event(Event{Type: "start", Host: "m1", Phase: "init", Message: "kubeadm init"})
	p.event(Event{Type: "done", Host: "m1", Phase: "init", Message: "cluster initialised", Elapsed: 42})
	if out.String() != "[m1] init: started: kubeadm init\n[m1] init: cluster initialised (42s)\n" {
		t.Errorf("pipe output %q", out.String())
	}
}
