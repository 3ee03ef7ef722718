package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/vipd-project/vipd/pkg/phases"
)

// parseFormat checks --output (text or json); an unknown value is a usage error.
func (g *globalOpts) parseFormat() error {
	f, err := phases.ParseFormat(g.format)
	if err != nil {
		return usageErr(err)
	}
	g.format = f
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// up runs the phases and reports the end: "Cluster ready" (event "ready") or, in a dry run,
// "Plan done" (event "planned").
func (g *globalOpts) up(ctx context.Context, r *phases.Runner, only []string, dryRun bool) error {
	start := time.Now()
	if err := r.Up(ctx, only); err != nil {
		return err
	}
	if dryRun {
		r.Report(phases.Event{Type: "planned", Message: "Plan done: run without --dry-run to apply it."})
	} else {
		d := time.Since(start)
		r.Report(phases.Event{Type: "ready", Elapsed: d.Seconds(),
			Message: fmt.Sprintf("Cluster ready in %s. API: %s", d.Round(100*time.Millisecond), r.Topology().APIServerURL())})
	}
	return nil
}

// statusJSON is one host of `status --output json` (one object per line, type "host"),
// followed by one line of type "diff": the file against the cluster.
type statusJSON struct {
	Type       string   `json:"type"`
	Host       string   `json:"host"`
	Role       string   `json:"role"`
	Address    string   `json:"address"`
	Reachable  bool     `json:"reachable"`
	Done       []string `json:"done"`
	Todo       []string `json:"todo"`
	HalfDone   string   `json:"half_done,omitempty"`
	Error      string   `json:"error,omitempty"`
	Node       string   `json:"node,omitempty"`        // masters and workers: the node's status
	VipdActive string   `json:"vipd_active,omitempty"` // lbs: systemctl is-active vipd
	HoldsVIP   bool     `json:"holds_vip"`
}

// diffJSON is the last line of `status --output json`.
type diffJSON struct {
	Type      string   `json:"type"` // "diff"
	Cluster   bool     `json:"cluster"`
	ToJoin    []string `json:"to_join"`
	NotInFile []string `json:"not_in_file"`
	Error     string   `json:"error,omitempty"`
}

func (g *globalOpts) printStatus(r *phases.Runner, sts []phases.HostStatus, d phases.ClusterDiff) error {
	if g.format != phases.FormatJSON {
		_, err := fmt.Fprint(g.stdout, phases.FormatStatus(sts, r.Topology().VIPPrefix().String())+phases.FormatDiff(d, g.file))
		return err
	}
	enc := json.NewEncoder(g.stdout)
	for _, s := range sts {
		if err := enc.Encode(statusJSON{Type: "host", Host: s.Name, Role: s.Role, Address: s.Address, Reachable: s.Reachable,
			Done: nonNil(s.Done), Todo: nonNil(s.Todo), HalfDone: s.HalfDone, Error: s.Error,
			Node: s.Node, VipdActive: s.VipdActive, HoldsVIP: s.HoldsVIP}); err != nil {
			return err
		}
	}
	return enc.Encode(diffJSON{Type: "diff", Cluster: d.Cluster, ToJoin: nonNil(d.ToJoin), NotInFile: nonNil(d.NotInFile), Error: d.Error})
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
