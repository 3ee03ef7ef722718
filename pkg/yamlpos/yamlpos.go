// Package yamlpos says where a field of a YAML file is written, so that every problem found
// in vipd.yaml or topology.yaml reads "file:line: field: problem". It is the one owner of the
// field path syntax ("vrrp.vips[1]", "hosts[2].ssh.user") and of that message format.
package yamlpos

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// Lines maps field paths to the line their key (or list item) starts on.
type Lines map[string]int

// Index records the line of every field under root. visit, when not nil, is called for every
// mapping key with its path, key node and value node (the topology loader refuses literal
// passwords this way).
func Index(root *yaml.Node, visit func(path string, key, val *yaml.Node)) Lines {
	m := Lines{}
	m.walk("", root, visit)
	return m
}

func (m Lines) walk(path string, n *yaml.Node, visit func(string, *yaml.Node, *yaml.Node)) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			m.walk(path, c, visit)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			m[p] = k.Line
			if visit != nil {
				visit(p, k, val)
			}
			m.walk(p, val, visit)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			m[p] = c.Line
			m.walk(p, c, visit)
		}
	}
}

// Find returns the line of field, or of its closest parent present in the file, or 0.
func (m Lines) Find(field string) int {
	for f := field; f != ""; {
		if l, ok := m[f]; ok {
			return l
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return 0
}

// Present reports whether field is written in the file (even as 0, "" or null): a default
// replaces only an absent value, so "priority: 0" is refused instead of becoming 100.
func (m Lines) Present(field string) bool {
	_, ok := m[field]
	return ok
}

// FieldAt returns the field whose key starts on line (the deepest mapping key there, else the
// deepest list item), or "" when none does. It names the field of a decoder error that only
// gives a line.
func (m Lines) FieldAt(line int) string {
	if line <= 0 {
		return ""
	}
	best, bestItem := "", ""
	for f, l := range m {
		if l != line {
			continue
		}
		if strings.HasSuffix(f, "]") {
			if len(f) > len(bestItem) || (len(f) == len(bestItem) && f < bestItem) {
				bestItem = f
			}
			continue
		}
		if len(f) > len(best) || (len(f) == len(best) && f < best) {
			best = f
		}
	}
	if best != "" {
		return best
	}
	return bestItem
}

// Format writes one problem as "file:line: field: message", leaving out what is unknown (a
// line of 0 is a field absent from the file). Control characters in the field and message
// (a newline inside a quoted value that a message repeats) are escaped: every problem stays
// one line, and a file cannot write lines of its own into the journal.
func Format(file string, line int, field, message string) string {
	var b strings.Builder
	if file != "" {
		b.WriteString(file)
		b.WriteString(":")
	}
	if line > 0 {
		b.WriteString(strconv.Itoa(line))
		b.WriteString(":")
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if field != "" {
		b.WriteString(oneLine(field))
		b.WriteString(": ")
	}
	b.WriteString(oneLine(message))
	return b.String()
}

func oneLine(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// DecodeError is one problem yaml.v3 reported while decoding, with the line lifted out of
// its "line N: ..." text and the field named when a key starts on that line.
type DecodeError struct {
	Line    int
	Field   string
	Message string
	// UnknownKey is the path of a key a strict decoder did not know ("vrrp.prioritty", from
	// "field prioritty not found in type ..."), else "".
	UnknownKey string
}

// DecodeErrors splits a yaml.v3 Unmarshal or Decode error into one DecodeError per problem.
func (m Lines) DecodeErrors(err error) []DecodeError {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		out := make([]DecodeError, 0, len(te.Errors))
		for _, s := range te.Errors {
			out = append(out, m.decodeError(s))
		}
		return out
	}
	return []DecodeError{m.decodeError(err.Error())}
}

func (m Lines) decodeError(msg string) DecodeError {
	msg = strings.TrimSpace(strings.TrimPrefix(msg, "yaml: "))
	d := DecodeError{}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.IndexByte(rest, ':'); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				d.Line = n
				msg = strings.TrimSpace(rest[i+1:])
			}
		}
	}
	if strings.Contains(msg, "not found in type") {
		if f := strings.Fields(msg); len(f) >= 2 && f[0] == "field" {
			d.UnknownKey = f[1]
		}
	}
	d.Field = m.FieldAt(d.Line)
	if d.UnknownKey != "" && strings.HasSuffix(d.Field, d.UnknownKey) {
		d.UnknownKey, d.Field = d.Field, ""
	}
	d.Message = msg
	return d
}
