package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vipd-project/vipd/test/nspawn"
)

// TestJournalPriorities runs vipd under the real systemd and journald of a Debian host
// (test/nspawn) with deploy/vipd.service, and checks what an operator would: that
// `journalctl -p warning -u vipd` shows vipd's warnings and errors and nothing else of vipd's,
// that every line is stored with the priority of its level, and that no line carries a second
// timestamp. Warnings and errors are provoked for real: vrrp.source_mac_check off (a warning
// at start), a SIGHUP with a broken file (the daemon's "reload refused" error), and
// `systemctl reload` with that file (the unit's ExecReload `vipd check` fails with
// file:line). Then log_format: json, the same rules.
func TestJournalPriorities(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, systemd-nspawn)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := vipdBin(t)
	l, err := nspawn.Start(ctx, nspawn.Options{Hosts: []nspawn.HostSpec{{Name: "lb1", Role: "lb"}}, Log: bsLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	exec := func(argv ...string) string {
		t.Helper()
		out, err := l.Exec(ctx, "lb1", argv...)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	vipd, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile("../../deploy/vipd.service")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WriteFile("lb1", "/usr/local/bin/vipd", vipd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := l.WriteFile("lb1", "/etc/systemd/system/vipd.service", unit, 0o644); err != nil {
		t.Fatal(err)
	}
	good := func(format string) []byte {
		if format != "" {
			format = "log_format: " + format + "\n"
		}
		return fmt.Appendf(nil, "node_name: lb1\nlog_level: debug\n%svrrp:\n  interface: host0\n  vrid: 51\n  priority: 150\n  vips: [%s]\n  source_mac_check: false\nstats:\n  listen: 127.0.0.1:8404\n", format, l.VIP)
	}
	writeConf := func(b []byte) {
		t.Helper()
		if err := l.WriteFile("lb1", "/etc/vipd/vipd.yaml", b, 0o640); err != nil {
			t.Fatal(err)
		}
		exec("chgrp", "vipd", "/etc/vipd/vipd.yaml")
	}
	exec("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "vipd")
	writeConf(good(""))
	exec("systemctl", "daemon-reload")
	exec("systemctl", "start", "vipd") // Type=notify: returns once vipd is READY

	// A broken file: the running daemon refuses it on SIGHUP (its own error), and the
	// unit's ExecReload check refuses it before signalling (vipd check's error).
	writeConf(append(good(""), "  prioritty: 5\n"...))
	exec("systemctl", "kill", "-s", "HUP", "--kill-whom=main", "vipd")
	if out, err := l.Exec(ctx, "lb1", "systemctl", "reload", "vipd"); err == nil {
		t.Fatalf("systemctl reload with a broken file succeeded: %s", out)
	}
	// Wait for the daemon's refusal: the SIGHUP is handled asynchronously.
	waitJournal := func(what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			exec("journalctl", "--sync")
			if strings.Contains(exec("journalctl", "-u", "vipd", "-o", "cat", "--no-pager"), what) {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("%q never reached the journal:\n%s", what, exec("journalctl", "-u", "vipd", "--no-pager"))
	}
	waitJournal("reload refused")
	writeConf(good(""))
	exec("systemctl", "stop", "vipd")
	waitJournal("vipd stopped")

	entries := journalEntries(t, exec("journalctl", "-u", "vipd", "-o", "json", "--no-pager"))
	warnView := exec("journalctl", "-p", "warning", "-u", "vipd", "-o", "cat", "--no-pager")
	t.Logf("journalctl -p warning -u vipd:\n%s", warnView)
	seen := map[int]int{}
	var vipdWarnings []string
	for _, e := range entries {
		if e.ident != "vipd" { // systemd's own lines about the unit ("Reload failed", ...)
			continue
		}
		want := -1
		switch {
		case strings.Contains(e.msg, "level=DEBUG"):
			want = 7
		case strings.Contains(e.msg, "level=INFO"), strings.HasSuffix(e.msg, ": configuration is valid"):
			want = 6
		case strings.Contains(e.msg, "level=WARN"), strings.HasPrefix(e.msg, "warning: "):
			want = 4
		case strings.Contains(e.msg, "level=ERROR"), checkError.MatchString(e.msg):
			want = 3
		}
		if want != e.prio {
			t.Errorf("stored with priority %d, want %d: %q", e.prio, want, e.msg)
		}
		if strings.HasPrefix(e.msg, "time=") || strings.HasPrefix(e.msg, "<") {
			t.Errorf("line carries its own timestamp or an unparsed prefix: %q", e.msg)
		}
		seen[e.prio]++
		if e.prio <= 4 {
			vipdWarnings = append(vipdWarnings, e.msg)
		}
	}
	for _, p := range []int{3, 4, 6} { // (vipd logs at debug only for gossip and SSH retries)
		if seen[p] == 0 {
			t.Errorf("no vipd line with priority %d in the journal", p)
		}
	}
	// The operator's view: every warning and error of vipd's, and none of its info or debug.
	for _, w := range vipdWarnings {
		if !strings.Contains(warnView, w) {
			t.Errorf("journalctl -p warning -u vipd lacks %q", w)
		}
	}
	for _, want := range []string{"source MAC check off", "reload refused", `/etc/vipd/vipd.yaml:11: unknown key "stats.prioritty"`} {
		if !strings.Contains(warnView, want) {
			t.Errorf("journalctl -p warning -u vipd lacks %q", want)
		}
	}
	for _, not := range []string{"level=INFO", "level=DEBUG", "vipd started"} {
		if strings.Contains(warnView, not) {
			t.Errorf("journalctl -p warning -u vipd shows %q", not)
		}
	}

	// log_format: json keeps the priorities and drops the time.
	writeConf(good("json"))
	exec("systemctl", "start", "vipd")
	exec("systemctl", "stop", "vipd")
	exec("journalctl", "--sync")
	var jsonLines int
	for _, e := range journalEntries(t, exec("journalctl", "-u", "vipd", "-o", "json", "--no-pager")) {
		if e.ident != "vipd" || !strings.HasPrefix(e.msg, "{") {
			continue
		}
		jsonLines++
		var rec map[string]any
		if err := json.Unmarshal([]byte(e.msg), &rec); err != nil {
			t.Errorf("not JSON: %q: %v", e.msg, err)
			continue
		}
		if _, ok := rec["time"]; ok {
			t.Errorf("JSON line carries a time under journald: %q", e.msg)
		}
		want := map[any]int{"DEBUG": 7, "INFO": 6, "WARN": 4, "ERROR": 3}[rec["level"]]
		if e.prio != want {
			t.Errorf("JSON line stored with priority %d, want %d: %q", e.prio, want, e.msg)
		}
	}
	if jsonLines == 0 {
		t.Errorf("no JSON line in the journal after log_format: json")
	}
}

// checkError is `vipd check`'s "file:line: problem".
var checkError = regexp.MustCompile(`^/etc/vipd/vipd\.yaml:\d+: `)

type journalEntry struct {
	ident, msg string
	prio       int
}

// journalEntries parses `journalctl -o json` (one object per line).
func journalEntries(t *testing.T, out string) []journalEntry {
	t.Helper()
	var es []journalEntry
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("journalctl -o json: %v: %q", err, sc.Text())
		}
		msg, _ := m["MESSAGE"].(string) // binary messages come as arrays: not vipd's
		ident, _ := m["SYSLOG_IDENTIFIER"].(string)
		p, _ := m["PRIORITY"].(string)
		prio, _ := strconv.Atoi(p)
		es = append(es, journalEntry{ident: ident, msg: msg, prio: prio})
	}
	return es
}
