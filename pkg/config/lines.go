package config

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// lineMap maps field paths ("vrrp.vips[1]") to the line they start on.
type lineMap map[string]int

func (m lineMap) walk(path string, n *yaml.Node) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			m.walk(path, c)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			m[p] = k.Line
			m.walk(p, val)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			m[p] = c.Line
			m.walk(p, c)
		}
	}
}

// find returns the line of field, or of its closest present parent, or 0.
func (m lineMap) find(field string) int {
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

// present reports whether field is written in the file (even as 0, "" or null): a default
// replaces only an absent value, so "priority: 0" is refused instead of becoming 100.
func (m lineMap) present(field string) bool {
	_, ok := m[field]
	return ok
}

// fieldAt returns the field whose key starts on line (the deepest mapping key there, else the
// deepest list item), or "" when none does.
func (m lineMap) fieldAt(line int) string {
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
