package importer

import (
	"strings"
)

// hsection is one haproxy.cfg section: "frontend fe", "backend be", "listen x", "defaults".
type hsection struct {
	kind, name string
	line       int
	lines      []hline
}

type hline struct {
	n    int
	args []string
}

var haSections = map[string]bool{"global": true, "defaults": true, "frontend": true, "backend": true, "listen": true,
	"userlist": true, "peers": true, "resolvers": true, "mailers": true, "program": true, "http-errors": true, "ring": true, "cache": true}

// parseHAProxy splits haproxy.cfg into sections of keyword lines ("#" comments dropped).
func parseHAProxy(src []byte) []*hsection {
	var out []*hsection
	var cur *hsection
	for n, raw := range strings.Split(string(src), "\n") {
		if i := strings.Index(raw, "#"); i >= 0 {
			raw = raw[:i]
		}
		f := strings.Fields(raw)
		if len(f) == 0 {
			continue
		}
		if haSections[f[0]] {
			cur = &hsection{kind: f[0], line: n + 1}
			if len(f) > 1 {
				cur.name = f[1]
			}
			out = append(out, cur)
			continue
		}
		if cur != nil {
			cur.lines = append(cur.lines, hline{n: n + 1, args: f})
		}
	}
	return out
}

func (s *hsection) get(kw ...string) []hline {
	var out []hline
next:
	for _, l := range s.lines {
		if len(l.args) < len(kw) {
			continue
		}
		for i, k := range kw {
			if l.args[i] != k {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

func (s *hsection) last(kw ...string) (hline, bool) {
	l := s.get(kw...)
	if len(l) == 0 {
		return hline{}, false
	}
	return l[len(l)-1], true
}

// option returns the value after "name" in a server or default-server line ("inter 2s").
func option(args []string, name string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == name {
			return args[i+1]
		}
	}
	return ""
}

func has(args []string, name string) bool {
	for _, a := range args {
		if a == name {
			return true
		}
	}
	return false
}
