// Package logx sets up vipd's log/slog logger for where its stderr goes.
//
// Under systemd, stderr is a stream to journald and systemd says so in $JOURNAL_STREAM
// ("DEV:INODE" of that stream). There every line starts with its syslog priority, "<3>" for
// errors, "<4>" warnings, "<6>" info, "<7>" debug (sd-daemon(3)), which journald strips and
// stores as PRIORITY, so `journalctl -p warning -u vipd` shows exactly the warnings and
// errors; the line carries no timestamp (journald stamps every entry). Anywhere else
// (a terminal, a file, a pipe) lines are slog's text format with a timestamp. The JSON format
// (log_format: json) follows the same rules.
package logx

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Formats accepted by New (the config's log_format).
const (
	FormatText = "text"
	FormatJSON = "json"
)

// Options configure New.
type Options struct {
	// Format is FormatText (the default when empty) or FormatJSON.
	Format string
	// Level filters records; a *slog.LevelVar lets a reload change it.
	Level slog.Leveler
	// Getenv reads the environment (os.Getenv); nil means "not under journald".
	Getenv func(string) string
}

// CheckFormat accepts FormatText, FormatJSON and "" (text).
func CheckFormat(f string) error {
	switch f {
	case "", FormatText, FormatJSON:
		return nil
	}
	return fmt.Errorf("%q is not one of %s, %s", f, FormatText, FormatJSON)
}

// New returns a logger writing one line per record to w, with syslog priority prefixes and
// no timestamp when w is the journal stream systemd connected (see IsJournal).
func New(w io.Writer, o Options) (*slog.Logger, error) {
	journal := IsJournal(w, o.Getenv)
	ho := &slog.HandlerOptions{Level: o.Level}
	var out io.Writer = w
	var pw *prefixWriter
	if journal {
		ho.ReplaceAttr = dropTime
		pw = &prefixWriter{out: w}
		out = pw
	}
	if err := CheckFormat(o.Format); err != nil {
		return nil, err
	}
	var h slog.Handler = slog.NewTextHandler(out, ho)
	if o.Format == FormatJSON {
		h = slog.NewJSONHandler(out, ho)
	}
	if journal {
		h = &journalHandler{inner: h, w: pw}
	}
	return slog.New(h), nil
}

// IsJournal reports whether w is the stream systemd connected to journald: an *os.File whose
// device and inode are the ones in $JOURNAL_STREAM. Comparing them (not only the variable's
// presence) keeps a child whose stderr was redirected, e.g. `vipd check 2>file` run from a
// unit's shell, from writing priority prefixes into a file.
func IsJournal(w io.Writer, getenv func(string) string) bool {
	if getenv == nil {
		return false
	}
	f, ok := w.(*os.File)
	if !ok || f == nil {
		return false
	}
	devS, inoS, ok := strings.Cut(getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	dev, err1 := strconv.ParseUint(devS, 10, 64)
	ino, err2 := strconv.ParseUint(inoS, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}

// Priority is the syslog priority prefix of a level: "<3>" error, "<4>" warning, "<6>" info,
// "<7>" debug (levels between take the one below them: slog.LevelWarn+1 is a warning).
func Priority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	default:
		return "<7>"
	}
}

// Printf writes one formatted line to w, with the priority prefix of level when w is the
// journal stream: for the messages the command line prints without a logger (`vipd check`'s
// warnings, a fatal error before the logger exists).
func Printf(w io.Writer, getenv func(string) string, level slog.Level, format string, args ...any) {
	prefix := ""
	if IsJournal(w, getenv) {
		prefix = Priority(level)
	}
	fmt.Fprintf(w, prefix+strings.TrimSuffix(format, "\n")+"\n", args...)
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// journalHandler sets the priority prefix of the record being written; prefixWriter adds it
// to the handler's single Write of that record. The mutex spans both, so concurrent records
// cannot swap prefixes; loggers derived with With share the writer and so the mutex.
type journalHandler struct {
	inner slog.Handler
	w     *prefixWriter
}

type prefixWriter struct {
	mu     sync.Mutex
	out    io.Writer
	prefix string
	buf    []byte
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.buf = append(append(w.buf[:0], w.prefix...), p...)
	if _, err := w.out.Write(w.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	h.w.prefix = Priority(r.Level)
	return h.inner.Handle(ctx, r)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{inner: h.inner.WithAttrs(as), w: h.w}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{inner: h.inner.WithGroup(name), w: h.w}
}
