package main

import (
	"bytes"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vipd-project/vipd/pkg/config"
)

// setting is one key of vipd.yaml as vipd.yaml(5) lists it.
type setting struct {
	path    string // "vrrp.garp.count"
	typ     string // from the schema: "duration", "integer", ...
	example string // the example file's value; "" for a section or a commented-out key
	doc     []string
	section bool
}

// schemaKeys lists every key of config.Config (the schema vipd decodes strictly) with its
// type, in declaration order.
func schemaKeys() (order []string, types map[string]string) {
	types = map[string]string{}
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			p := prefix + name
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			order = append(order, p)
			types[p] = typeName(ft)
			if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Time{}) {
				walk(p+".", ft)
			}
		}
	}
	walk("", reflect.TypeOf(config.Config{}))
	return order, types
}

func typeName(t reflect.Type) string {
	if t == reflect.TypeOf(time.Duration(0)) || strings.HasSuffix(t.Name(), "Duration") {
		return "duration"
	}
	switch t.Kind() {
	case reflect.Struct:
		return "section"
	case reflect.Slice:
		return "list of " + typeName(t.Elem())
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	}
	return "string"
}

var commentedKey = regexp.MustCompile(`^#( *)([a-z_0-9]+):\s*(.*)$`)

// exampleSettings walks the commented example file (deploy/vipd.yaml): each key's comment
// above it is its documentation; commented-out keys ("# auth_pass_file: /etc/...") that are
// in the schema are settings too, documented by the comment lines before them.
func exampleSettings(example []byte, types map[string]string) (intro []string, out []setting, err error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(example, &doc); err != nil {
		return nil, nil, fmt.Errorf("parse the example: %w", err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("the example is not a mapping")
	}
	intro = commentLines(doc.HeadComment)
	var walk func(prefix string, m *yaml.Node)
	comments := func(prefix, text string) []string {
		var desc, last []string
		var stack []string // commented-out parent keys, by indent
		for _, l := range commentLines(text) {
			sub := commentedKey.FindStringSubmatch("#" + l)
			if sub != nil {
				depth := min(len(sub[1])/2, len(stack))
				cand := append(append([]string(nil), stack[:depth]...), sub[2])
				p := prefix + strings.Join(cand, ".")
				if _, ok := types[p]; ok {
					stack = cand
					if len(desc) > 0 {
						last = desc
					}
					out = append(out, setting{path: p, typ: types[p], doc: last, section: sub[3] == ""})
					desc = nil
					continue
				}
			}
			desc = append(desc, l)
		}
		return desc
	}
	walk = func(prefix string, m *yaml.Node) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			desc := comments(prefix, k.HeadComment)
			s := setting{path: prefix + k.Value, typ: types[prefix+k.Value], doc: desc}
			switch v.Kind {
			case yaml.MappingNode:
				s.section = true
				out = append(out, s)
				walk(s.path+".", v)
			case yaml.SequenceNode:
				var items []string
				for _, it := range v.Content {
					items = append(items, it.Value)
				}
				s.example = "[" + strings.Join(items, ", ") + "]"
				out = append(out, s)
			default:
				s.example = v.Value
				out = append(out, s)
			}
			comments(prefix, v.FootComment+"\n"+k.FootComment)
		}
		comments(prefix, m.FootComment)
	}
	walk("", doc.Content[0])
	return intro, out, nil
}

func commentLines(c string) []string {
	var out []string
	for _, l := range strings.Split(c, "\n") {
		l = strings.TrimPrefix(strings.TrimSpace(l), "#")
		if strings.TrimSpace(l) == "" {
			continue
		}
		// keep the indent after "# " for commented-out nested keys
		out = append(out, strings.TrimPrefix(l, " "))
	}
	return out
}

// yamlManPage renders vipd.yaml(5): every key of the schema with its type, the example's
// value and the example's comment.
func yamlManPage(example []byte, version string, date time.Time) ([]byte, error) {
	order, types := schemaKeys()
	intro, settings, err := exampleSettings(example, types)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var b bytes.Buffer
	fmt.Fprintf(&b, ".TH \"VIPD.YAML\" \"5\" \"%s\" \"vipd %s\" \"vipd manual\"\n", date.Format("Jan 2006"), esc(version))
	b.WriteString(".nh\n.ad l\n.SH NAME\nvipd.yaml \\- vipd configuration file\n.SH SYNOPSIS\n/etc/vipd/vipd.yaml\n.SH DESCRIPTION\n")
	for _, l := range intro {
		b.WriteString(esc(l) + "\n")
	}
	b.WriteString(".PP\nvipd check \\-c FILE validates a file; unknown keys are errors, and every error names file:line: key. " +
		"The package installs an example whose first line makes vipd refuse it until it is edited for the host and that line is deleted.\n")
	b.WriteString(".SH SETTINGS\n")
	for _, s := range settings {
		if s.typ == "" || seen[s.path] {
			continue // not in the schema (a stray comment) or listed already
		}
		seen[s.path] = true
		if s.section {
			fmt.Fprintf(&b, ".SS %s\n", esc(s.path))
			for _, l := range s.doc {
				b.WriteString(esc(l) + "\n")
			}
			continue
		}
		fmt.Fprintf(&b, ".TP\n.B %s\n(%s", esc(s.path), esc(s.typ))
		if s.example != "" {
			fmt.Fprintf(&b, "; example: %s", esc(s.example))
		}
		b.WriteString(")\n")
		for _, l := range s.doc {
			b.WriteString(esc(l) + "\n")
		}
	}
	var rest []string
	for _, p := range order {
		if !seen[p] {
			rest = append(rest, p)
		}
	}
	if len(rest) > 0 {
		b.WriteString(".SS Settings not described in the example\n")
		for _, p := range rest {
			fmt.Fprintf(&b, ".TP\n.B %s\n(%s)\n", esc(p), esc(types[p]))
		}
	}
	b.WriteString(".SH FILES\n/etc/vipd/vipd.yaml\n.SH SEE ALSO\n.BR vipd (8),\n.BR journalctl (1)\n")
	return b.Bytes(), nil
}

// esc keeps text literal in roff.
func esc(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
