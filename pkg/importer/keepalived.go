package importer

import (
	"fmt"
	"strings"
)

// block is one keepalived.conf statement: "name args..." and, if it opened one, its {block}.
type block struct {
	name     string
	args     []string
	line     int
	children []*block
}

// parseKeepalived reads keepalived.conf's syntax: statements one per line, "{" ... "}"
// blocks, comments from "#" or "!" to the end of the line, double-quoted strings.
// include directives are reported, not followed.
func parseKeepalived(file string, src []byte) (*block, error) {
	root := &block{name: "(root)"}
	stack := []*block{root}
	var last *block
	for n, raw := range strings.Split(string(src), "\n") {
		toks, err := tokens(raw)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n+1, err)
		}
		for len(toks) > 0 {
			switch toks[0] {
			case "{":
				if last == nil {
					return nil, fmt.Errorf("%s:%d: \"{\" without a statement before it", file, n+1)
				}
				stack = append(stack, last)
				last = nil
				toks = toks[1:]
				continue
			case "}":
				if len(stack) == 1 {
					return nil, fmt.Errorf("%s:%d: unmatched \"}\"", file, n+1)
				}
				stack = stack[:len(stack)-1]
				last = nil
				toks = toks[1:]
				continue
			}
			// A statement runs to the end of the line or to a brace.
			end := len(toks)
			for i, t := range toks {
				if t == "{" || t == "}" {
					end = i
					break
				}
			}
			b := &block{name: toks[0], args: toks[1:end], line: n + 1}
			parent := stack[len(stack)-1]
			parent.children = append(parent.children, b)
			last = b
			toks = toks[end:]
		}
	}
	if len(stack) != 1 {
		return nil, fmt.Errorf("%s: %d block(s) not closed (the one opened at line %d)", file, len(stack)-1, stack[len(stack)-1].line)
	}
	return root, nil
}

func tokens(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inQuote := false
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, cur.String())
			cur.Reset()
		}
	}
	for _, r := range line {
		switch {
		case inQuote && r == '"':
			inQuote = false
			out = append(out, cur.String())
			cur.Reset()
		case inQuote:
			cur.WriteRune(r)
		case r == '"':
			flush()
			inQuote = true
		case r == '#' || r == '!':
			flush()
			return out, nil
		case r == '{' || r == '}':
			flush()
			out = append(out, string(r))
		case r == ' ' || r == '\t' || r == '\r':
			flush()
		default:
			cur.WriteRune(r)
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quoted string")
	}
	flush()
	return out, nil
}

func (b *block) all(name string) []*block {
	var out []*block
	for _, c := range b.children {
		if c.name == name {
			out = append(out, c)
		}
	}
	return out
}

func (b *block) first(name string) *block {
	if l := b.all(name); len(l) > 0 {
		return l[0]
	}
	return nil
}

// arg returns the first argument of the first child statement name, or "".
func (b *block) arg(name string) string {
	if c := b.first(name); c != nil && len(c.args) > 0 {
		return c.args[0]
	}
	return ""
}
