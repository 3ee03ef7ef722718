package importer

import (
	"fmt"
	"strconv"
	"strings"
)

// haDuration converts HAProxy's time format (a number of milliseconds, or with a unit:
// us, ms, s, m, h, d) to Go's.
func haDuration(s string) (string, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	num, unit := s, "ms"
	if i >= 0 {
		num, unit = s[:i], s[i:]
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return "", fmt.Errorf("%q is not an HAProxy time", s)
	}
	switch unit {
	case "us", "ms", "s", "m", "h":
		return strconv.Itoa(n) + unit, nil
	case "d":
		return strconv.Itoa(n*24) + "h", nil
	}
	return "", fmt.Errorf("%q: unknown time unit %q", s, unit)
}

// listenAddr turns a bind address ("*:6443", "0.0.0.0:6443", ":::6443", "10.0.0.5:6443")
// into vipd's proxy.listen.
func listenAddr(a string) string {
	i := strings.LastIndex(a, ":")
	if i < 0 {
		return a
	}
	host, port := a[:i], a[i+1:]
	switch host {
	case "", "*", "0.0.0.0", "::", "[::]":
		return ":" + port
	}
	return a
}

// proxySections writes the proxy, health and stats sections from the frontend (or listen
// section) that serves the Kubernetes API and its backend.
func proxySections(d *doc, file string, secs []*hsection, tr tracking) error {
	at := func(n int) string { return fmt.Sprintf("%s:%d", file, n) }
	byName := map[string]*hsection{}
	var defaults, global *hsection
	var fe, be *hsection
	var stats []*hsection
	for _, s := range secs {
		switch s.kind {
		case "backend", "listen":
			byName[s.name] = s
		case "defaults":
			defaults = s
		case "global":
			global = s
		}
	}
	for _, s := range secs {
		if s.kind != "frontend" && s.kind != "listen" {
			continue
		}
		if len(s.get("stats", "enable")) > 0 || len(s.get("stats", "uri")) > 0 || len(s.get("http-request", "use-service", "prometheus-exporter")) > 0 {
			stats = append(stats, s)
			continue
		}
		if fe != nil {
			d.comment(0, "not carried over: %s %s (%s): vipd proxies one frontend; translated %s %s.", s.kind, s.name, at(s.line), fe.kind, fe.name)
			continue
		}
		if s.kind == "listen" && len(s.get("server")) > 0 {
			fe, be = s, s
			continue
		}
		if l, ok := s.last("default_backend"); ok && len(l.args) > 1 {
			fe, be = s, byName[l.args[1]]
			if be == nil {
				return fmt.Errorf("%s: default_backend %s: no such backend", at(l.n), l.args[1])
			}
		}
	}
	if fe == nil {
		return fmt.Errorf("%s: no frontend with a default_backend (or listen section with servers) to translate", file)
	}
	// Settings come from the section, else from defaults.
	setting := func(kw ...string) (hline, *hsection, bool) {
		for _, s := range []*hsection{be, fe, defaults} {
			if s == nil {
				continue
			}
			if l, ok := s.last(kw...); ok {
				return l, s, true
			}
		}
		return hline{}, nil, false
	}
	d.b.WriteString("\n")
	d.comment(0, "From %s %s (%s) and backend %s (%s).", fe.kind, fe.name, at(fe.line), be.name, at(be.line))
	d.kv(0, "proxy", "")
	if l, ok := fe.last("bind"); ok && len(l.args) > 1 {
		if has(l.args, "ssl") {
			d.comment(1, "bind ... ssl (%s): vipd proxies TCP; TLS stays end to end with the apiservers.", at(l.n))
		}
		d.kv(1, "listen", q(listenAddr(l.args[1])))
	}
	if l, _, ok := setting("mode"); ok && len(l.args) > 1 && l.args[1] != "tcp" {
		d.comment(1, "mode %s (%s): vipd is a TCP proxy (the kube-apiserver needs TCP mode: TLS passes through).", l.args[1], at(l.n))
	}
	var servers []string
	var inter, fall, rise string
	checkSSL, verifyNone, caFile := false, false, ""
	defServer, _, _ := setting("default-server")
	for _, l := range be.get("server") {
		if len(l.args) < 3 {
			continue
		}
		addr := l.args[2]
		if !strings.Contains(addr, ":") {
			d.comment(1, "server %s %s (%s) has no port: the frontend's port is HAProxy's default; give one.", l.args[1], addr, at(l.n))
		}
		servers = append(servers, addr)
		opts := append(append([]string{}, defServer.args...), l.args[3:]...)
		for _, o := range []struct {
			name string
			v    *string
		}{{"inter", &inter}, {"fall", &fall}, {"rise", &rise}} {
			if v := option(opts, o.name); v != "" {
				if *o.v != "" && *o.v != v {
					d.comment(1, "server %s (%s): %s %s differs from the other servers; vipd uses one value for all.", l.args[1], at(l.n), o.name, v)
				}
				*o.v = v
			}
		}
		checkSSL = checkSSL || has(opts, "check-ssl") || has(opts, "ssl")
		verifyNone = verifyNone || option(opts, "verify") == "none"
		if ca := option(opts, "ca-file"); ca != "" {
			caFile = ca
		}
		if has(opts, "backup") {
			d.comment(1, "server %s (%s) is a backup server: vipd has none; it is a normal backend here.", l.args[1], at(l.n))
		}
		if has(opts, "disabled") {
			d.comment(1, "server %s (%s) was disabled in HAProxy; it is listed here.", l.args[1], at(l.n))
		}
		if !has(opts, "check") {
			d.comment(1, "server %s (%s) had no check: vipd checks every backend.", l.args[1], at(l.n))
		}
	}
	if l, _, ok := setting("http-check", "connect"); ok && has(l.args, "ssl") {
		checkSSL = true
	}
	if len(servers) == 0 {
		return fmt.Errorf("%s: backend %s has no server lines", at(be.line), be.name)
	}
	d.list(1, "backends", servers)
	if l, _, ok := setting("balance"); ok && len(l.args) > 1 {
		switch l.args[1] {
		case "roundrobin", "leastconn":
			d.kv(1, "balance", l.args[1])
		default:
			d.comment(1, "balance %s (%s): vipd balances roundrobin or leastconn; roundrobin here.", l.args[1], at(l.n))
			d.kv(1, "balance", "roundrobin")
		}
	}
	if l, _, ok := setting("timeout", "connect"); ok && len(l.args) > 2 {
		v, err := haDuration(l.args[2])
		if err != nil {
			return fmt.Errorf("%s: timeout connect: %w", at(l.n), err)
		}
		d.kv(1, "connect_timeout", v)
	}
	for _, side := range []string{"client", "server", "tunnel"} {
		if l, _, ok := setting("timeout", side); ok && len(l.args) > 2 {
			d.comment(1, "timeout %s %s (%s): not carried over: vipd closes no idle connection by default\n(idle_timeout: 0s) so watches, logs -f and exec live for hours; TCP keepalive finds dead peers.", side, l.args[2], at(l.n))
		}
	}
	if l, _, ok := setting("retries"); ok && len(l.args) > 1 {
		d.kv(1, "retries", q(l.args[1]))
	}
	if l, _, ok := setting("option", "redispatch"); ok {
		d.comment(1, "option redispatch (%s): vipd always tries the next UP backend after a failed dial.", at(l.n))
	}
	maxconn := ""
	for _, s := range []*hsection{fe, defaults, global} {
		if s == nil || maxconn != "" {
			continue
		}
		if l, ok := s.last("maxconn"); ok && len(l.args) > 1 {
			maxconn = l.args[1]
			d.comment(1, "maxconn %s (%s).", maxconn, at(l.n))
			d.kv(1, "max_conns", q(maxconn))
		}
	}
	if tr.weight != nil {
		d.comment(1, "%s", tr.scripts)
		d.kv(1, "track_weight", strconv.Itoa(*tr.weight))
	}

	// Health checks.
	d.b.WriteString("\n")
	d.kv(0, "health", "")
	l, _, httpchk := setting("option", "httpchk")
	switch {
	case httpchk:
		path := "/"
		if len(l.args) >= 4 {
			path = l.args[3]
		} else if len(l.args) == 3 && strings.HasPrefix(l.args[2], "/") {
			path = l.args[2]
		}
		if s, _, ok := setting("http-check", "send"); ok {
			if u := option(s.args, "uri"); u != "" {
				path = u
			}
		}
		if !checkSSL {
			d.comment(1, "option httpchk (%s) without check-ssl: the kube-apiserver answers HTTPS only; vipd checks over HTTPS.", at(l.n))
		}
		d.kv(1, "type", "https")
		d.kv(1, "path", q(path))
		if e, _, ok := setting("http-check", "expect", "status"); ok && len(e.args) > 3 {
			d.kv(1, "expect_status", q(e.args[3]))
		}
	case hasSetting(setting, "option", "ssl-hello-chk"):
		sl, _, _ := setting("option", "ssl-hello-chk")
		d.comment(1, "option ssl-hello-chk (%s): an SSLv3 hello; vipd's tcp check connects only. type: https with\npath: /readyz checks the apiserver itself.", at(sl.n))
		d.kv(1, "type", "tcp")
	default:
		d.comment(1, "No HTTP check in %s: a TCP connect, as HAProxy's check did.", file)
		d.kv(1, "type", "tcp")
	}
	if inter != "" {
		v, err := haDuration(inter)
		if err != nil {
			return fmt.Errorf("backend %s: inter: %w", be.name, err)
		}
		d.kv(1, "interval", v)
	}
	if l, _, ok := setting("timeout", "check"); ok && len(l.args) > 2 {
		v, err := haDuration(l.args[2])
		if err != nil {
			return fmt.Errorf("%s: timeout check: %w", at(l.n), err)
		}
		d.kv(1, "timeout", v)
	}
	if fall != "" {
		d.kv(1, "fall", q(fall))
	}
	if rise != "" {
		d.kv(1, "rise", q(rise))
	}
	if httpchk && (verifyNone || caFile != "") {
		d.kv(1, "tls", "")
		if caFile != "" {
			d.kv(2, "ca_file", q(caFile))
		} else {
			d.kv(2, "insecure_skip_verify", "true")
		}
	}

	// Stats.
	for i, s := range stats {
		if i > 0 {
			d.comment(0, "not carried over: %s %s (%s): vipd serves one stats port.", s.kind, s.name, at(s.line))
			continue
		}
		if l, ok := s.last("bind"); ok && len(l.args) > 1 {
			d.b.WriteString("\n")
			d.comment(0, "From %s %s (%s): /stats, /stats.json, /metrics (HAProxy's exporter names) and /healthz.", s.kind, s.name, at(s.line))
			d.kv(0, "stats", "")
			d.kv(1, "listen", q(listenAddr(l.args[1])))
			if a, ok := s.last("stats", "auth"); ok {
				d.comment(1, "stats auth (%s): vipd reads the password from a file, not copied here: see\nstats.basic_auth in deploy/vipd.yaml.", at(a.n))
			}
		}
	}
	return nil
}

func hasSetting(setting func(...string) (hline, *hsection, bool), kw ...string) bool {
	_, _, ok := setting(kw...)
	return ok
}
