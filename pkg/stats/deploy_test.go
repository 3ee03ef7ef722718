package stats

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The deploy/ files that use this package's metrics.
const (
	alertsFile    = "../../deploy/prometheus-alerts.yaml"
	dashboardFile = "../../deploy/grafana-dashboard.json"
)

var metricRef = regexp.MustCompile(`\b(vipd|haproxy)_[a-z_]+\b`)

// exportedMetricNames scrapes a full fake snapshot and returns the names of
// the vipd_ families.
func exportedMetricNames(t *testing.T) map[string]string {
	t.Helper()
	srv := newTestServer(t, Config{}, fakeSnapshot)
	names := map[string]string{} // name -> HELP
	for name, f := range scrape(t, srv) {
		if strings.HasPrefix(name, "vipd_") || strings.HasPrefix(name, "haproxy_") {
			names[name] = f.GetHelp()
		}
	}
	return names
}

// checkMetricRefs fails for every vipd_ or haproxy_ name in text that /metrics does not
// export (a typo in a rule or a panel would silently show nothing), or exports as
// deprecated (the rule or panel would break when the name goes).
func checkMetricRefs(t *testing.T, file, text string, exported map[string]string) int {
	t.Helper()
	refs := metricRef.FindAllString(text, -1)
	for _, r := range refs {
		help, ok := exported[r]
		if !ok {
			t.Errorf("%s uses %s, which /metrics does not export", file, r)
		} else if strings.HasPrefix(help, "Deprecated") {
			t.Errorf("%s uses %s, which is deprecated: %s", file, r, help)
		}
	}
	return len(refs)
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func TestPrometheusAlertRules(t *testing.T) {
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	exported := exportedMetricNames(t)
	exprs := map[string]string{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("group %s: rule without alert name or expr: %+v", g.Name, r)
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs labels.severity, annotations.summary and .description", r.Alert)
			}
			if _, dup := exprs[r.Alert]; dup {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			exprs[r.Alert] = r.Expr
			checkMetricRefs(t, alertsFile+" "+r.Alert, r.Expr, exported)
		}
	}
	for alert, mustUse := range map[string]string{
		"VipdVIPOnNoHost":     "vipd_vrrp_holds_vip",
		"VipdVIPOnTwoHosts":   "vipd_vrrp_holds_vip",
		"VipdBackendDown":     `haproxy_server_status{state="UP"}`,
		"VipdAllBackendsDown": "haproxy_backend_active_servers",
		"VipdFailover":        "vipd_vrrp_state",
		"VipdSplitBrain":      `vipd_cluster_alarm{kind="split_brain"}`,
		"VipdBlockedVRRP":     `vipd_cluster_alarm{kind="blocked_vrrp"}`,
		"VipdGossipKey":       `vipd_cluster_alarm{kind="gossip_key"}`,
	} {
		if !strings.Contains(exprs[alert], mustUse) {
			t.Errorf("alert %s: expr %q does not use %s", alert, exprs[alert], mustUse)
		}
	}
}

// TestPrometheusAlertRulesPromtool checks the rules with promtool (Debian
// package prometheus) and runs unit tests that make the key alerts fire and
// stay quiet on synthetic series.
func TestPrometheusAlertRulesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	abs, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", abs).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}

	// count(ALERTS{...}) avoids repeating each alert's annotations here.
	firing := func(at, alert string, n int) string {
		s := fmt.Sprintf(`      - expr: count(ALERTS{alertname=%q, alertstate="firing"})
        eval_time: %s
`, alert, at)
		if n == 0 {
			return s + "        exp_samples: []\n"
		}
		return s + fmt.Sprintf("        exp_samples:\n          - labels: '{}'\n            value: %d\n", n)
	}
	// Samples every 5s. lb1 holds the VIP 0-50s, nobody 55-105s, lb1 again
	// from 110s; lb2 takes it as well from 155s (two holders).
	test := fmt.Sprintf(`rule_files: [%q]
evaluation_interval: 5s
tests:
  - interval: 5s
    input_series:
      - series: 'vipd_vrrp_holds_vip{job="vipd",instance="lb1:8404"}'
        values: '1x10 0x10 1x20'
      - series: 'vipd_vrrp_holds_vip{job="vipd",instance="lb2:8404"}'
        values: '0x30 1x12'
      - series: 'vipd_vrrp_state{job="vipd",instance="lb1:8404",state="MASTER"}'
        values: '1x10 0x10 1x20'
      - series: 'haproxy_server_status{job="vipd",instance="lb1:8404",proxy="kube-apiserver",server="10.0.0.1:6443",state="UP"}'
        values: '1x10 0x30'
      - series: 'haproxy_server_status{job="vipd",instance="lb1:8404",proxy="kube-apiserver",server="10.0.0.2:6443",state="UP"}'
        values: '1x40'
      - series: 'haproxy_backend_active_servers{job="vipd",instance="lb1:8404",proxy="kube-apiserver"}'
        values: '2x10 1x30'
      - series: 'vipd_backends{job="vipd",instance="lb1:8404"}'
        values: '2x40'
      - series: 'haproxy_backend_active_servers{job="vipd",instance="lb2:8404",proxy="kube-apiserver"}'
        values: '1x5 0x35'
      - series: 'vipd_backends{job="vipd",instance="lb2:8404"}'
        values: '2x40'
      - series: 'vipd_cluster_alarm{job="vipd",instance="lb1:8404",kind="split_brain"}'
        values: '0x10 1x10 0x20'
      - series: 'vipd_cluster_alarm{job="vipd",instance="lb1:8404",kind="blocked_vrrp"}'
        values: '0x40'
      - series: 'vipd_cluster_alarm{job="vipd",instance="lb2:8404",kind="gossip_key"}'
        values: '0x10 1x10 0x20'
    promql_expr_test:
%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s`, abs,
		firing("40s", "VipdVIPOnNoHost", 0),
		firing("80s", "VipdVIPOnNoHost", 1),
		firing("140s", "VipdVIPOnNoHost", 0),
		firing("80s", "VipdVIPOnTwoHosts", 0),
		firing("190s", "VipdVIPOnTwoHosts", 1),
		firing("40s", "VipdFailover", 0),
		firing("80s", "VipdFailover", 1),
		firing("20s", "VipdAllBackendsDown", 0),
		firing("60s", "VipdAllBackendsDown", 1),
		firing("60s", "VipdBackendDown", 0),
		firing("120s", "VipdBackendDown", 1),
		firing("80s", "VipdSplitBrain", 1),
		firing("140s", "VipdSplitBrain", 0),
		firing("80s", "VipdBlockedVRRP", 0),
		firing("60s", "VipdGossipKey", 0),
		firing("90s", "VipdGossipKey", 1),
		firing("140s", "VipdGossipKey", 0),
	)
	path := filepath.Join(t.TempDir(), "alerts_test.yaml")
	if err := os.WriteFile(path, []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(promtool, "test", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s\ntest file:\n%s", err, out, test)
	}
	t.Logf("promtool test rules: %s", strings.TrimSpace(string(out)))
}

type grafanaPanel struct {
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource map[string]any `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []struct {
		Expr       string         `json:"expr"`
		Datasource map[string]any `json:"datasource"`
	} `json:"targets"`
}

func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Inputs     []any `json:"__inputs"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Title  string         `json:"title"`
		UID    string         `json:"uid"`
		Panels []grafanaPanel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	// File provisioning does not fill __inputs: the panels' ${DS_PROMETHEUS} must be a
	// datasource variable of the dashboard (which the UI import also offers to choose).
	if len(d.Inputs) != 0 {
		t.Errorf("__inputs = %v: file provisioning leaves ${DS_PROMETHEUS} unresolved; use the datasource variable", d.Inputs)
	}
	if l := d.Templating.List; len(l) == 0 || l[0].Name != "DS_PROMETHEUS" || l[0].Type != "datasource" || l[0].Query != "prometheus" {
		t.Errorf("templating: want a first variable DS_PROMETHEUS of type datasource, query prometheus; have %+v", l)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q uid %q", d.Title, d.UID)
	}
	exported := exportedMetricNames(t)
	var titles []string
	var exprs []string
	for _, p := range d.Panels {
		titles = append(titles, p.Title)
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource["uid"] != "${DS_PROMETHEUS}" {
			t.Errorf("panel %q: datasource %v, want ${DS_PROMETHEUS}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource["uid"] != "${DS_PROMETHEUS}" {
				t.Errorf("panel %q: target datasource %v", p.Title, tg.Datasource)
			}
			if checkMetricRefs(t, dashboardFile+" panel "+p.Title, tg.Expr, exported) == 0 {
				t.Errorf("panel %q: query %q uses no vipd metric", p.Title, tg.Expr)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, want := range []string{"VRRP state per instance", "Holds VIP", "Backends up", "Current sessions",
		"Bytes per second", "Check failures", "VRRP transitions"} {
		if !slices.Contains(titles, want) {
			t.Errorf("no panel %q (have %q)", want, titles)
		}
	}

	// Every query is valid PromQL: promtool checks them as recording rules,
	// with Grafana's variables replaced by what Grafana would send.
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed: dashboard queries not parsed")
		return
	}
	repl := strings.NewReplacer("$__rate_interval", "1m", "$__range", "3h", "$job", ".*", "$instance", ".*")
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		q, _ := json.Marshal(repl.Replace(e)) // a JSON string is a YAML string
		fmt.Fprintf(&b, "      - record: dashboard_query_%d\n        expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard_rules.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("dashboard queries do not parse: %v\n%s", err, out)
	} else {
		t.Logf("%d dashboard queries parse", len(exprs))
	}
}
