package logx

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// streamFile opens a file and returns a getenv that names it (or another file) as the
// journal stream, as systemd does with the socket it connects to stderr.
func streamFile(t *testing.T) (*os.File, string) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return f, fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func read(t *testing.T, f *os.File) []string {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func logAll(t *testing.T, f *os.File, format, stream string) []string {
	t.Helper()
	l, err := New(f, Options{Format: format, Level: slog.LevelDebug, Getenv: func(k string) string {
		if k == "JOURNAL_STREAM" {
			return stream
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	l = l.With("component", "vrrp")
	l.Debug("d")
	l.Info("i")
	l.Warn("w", "n", 1)
	l.Error("e")
	return read(t, f)
}

func TestJournalLinesCarryPriorityAndNoTime(t *testing.T) {
	f, stream := streamFile(t)
	got := logAll(t, f, "", stream)
	want := []string{"<7>level=DEBUG msg=d component=vrrp", "<6>level=INFO msg=i component=vrrp",
		"<4>level=WARN msg=w component=vrrp n=1", "<3>level=ERROR msg=e component=vrrp"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("journal lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestJSONOnJournal(t *testing.T) {
	f, stream := streamFile(t)
	got := logAll(t, f, FormatJSON, stream)
	if len(got) != 4 || got[2] != `<4>{"level":"WARN","msg":"w","component":"vrrp","n":1}` {
		t.Fatalf("json journal lines: %q", got)
	}
}

func TestNotJournal(t *testing.T) {
	f, _ := streamFile(t)
	_, other := streamFile(t) // JOURNAL_STREAM set, but it names another file: a redirected stderr
	for _, stream := range []string{"", other, "garbage", "1:x"} {
		f.Truncate(0)
		f.Seek(0, 0)
		got := logAll(t, f, FormatText, stream)
		if len(got) != 4 || !strings.HasPrefix(got[2], "time=") || !strings.Contains(got[2], "level=WARN msg=w") {
			t.Errorf("JOURNAL_STREAM=%q: %q, want text lines with a time", stream, got)
		}
	}
	f.Truncate(0)
	f.Seek(0, 0)
	if got := logAll(t, f, FormatJSON, ""); !strings.HasPrefix(got[0], `{"time":"`) {
		t.Errorf("json: %q", got)
	}
	if _, err := New(f, Options{Format: "xml"}); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("format xml: %v", err)
	}
}

func TestPrintf(t *testing.T) {
	f, stream := streamFile(t)
	Printf(f, func(string) string { return stream }, slog.LevelError, "%s: bad\n", "vipd.yaml:3")
	Printf(f, nil, slog.LevelError, "%s: bad", "x")
	if got := read(t, f); len(got) != 2 || got[0] != "<3>vipd.yaml:3: bad" || got[1] != "x: bad" {
		t.Fatalf("%q", got)
	}
}
