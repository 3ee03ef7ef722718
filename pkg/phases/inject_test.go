package phases

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vipd-project/vipd/pkg/topology"
)

// Every string field of the topology, set to a value carrying shell metacharacters, either
// is refused by the topology's validation with `file:line: field: problem`, or reaches the
// hosts as data: it never appears unquoted in a command (the value holds a single quote,
// which sshx.Quote rewrites, so finding it verbatim means it went into a command unquoted).
func TestTopologyValuesNeverReachAShellUnquoted(t *testing.T) {
	base, err := os.ReadFile("../../deploy/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const evil = `x';touch /tmp/pwned;'$(id)` + "`id`"
	fields := map[string]string{
		"cluster.name": evil, "cluster.kubernetesVersion": evil, "cluster.podCIDR": evil, "cluster.serviceCIDR": evil,
		"cluster.cni.version": evil, "cluster.cni.manifest": "https://example.com/" + evil, "cluster.cni.name": evil,
		"loadBalancer.vip": evil, "loadBalancer.interface": evil, "loadBalancer.healthCheck": evil, "loadBalancer.balance": evil,
		"loadBalancer.authPassEnv": evil, "loadBalancer.gossip.splitBrain": evil,
		"packages.kubernetesRepo": "https://example.com/" + evil, "packages.kubernetesKey": "https://example.com/" + evil,
		"packages.containerd.package": evil, "packages.containerd.repo": "deb [signed-by=/etc/apt/keyrings/containerd-apt-keyring.gpg] https://example.com/" + evil + " stable main",
		"packages.containerd.key": "https://example.com/" + evil,
		"hosts.0.name":            evil, "hosts.0.address": evil, "hosts.0.role": evil, "hosts.5.name": evil, "hosts.5.address": evil,
		"ssh.passwordEnv": evil, "ssh.sudoPasswordEnv": evil,
	}
	for field, val := range fields {
		t.Run(field, func(t *testing.T) {
			doc := setField(t, base, field, val)
			top, _, err := topology.Parse(doc, "topology.yaml")
			if err != nil {
				yamlField := regexp.MustCompile(`\.(\d+)\.`).ReplaceAllString(field, "[$1].")
				if !regexp.MustCompile(`topology\.yaml:\d+: ` + regexp.QuoteMeta(yamlField) + `: `).MatchString(err.Error()) {
					t.Errorf("refused without naming file:line: %s: %v", yamlField, err)
				}
				return
			}
			top.File = "topology.yaml"
			w := freshRunWorld(top)
			r, out := newTestRunner(t, top, w, false)
			_ = r.Up(context.Background(), nil)
			rd, _ := newTestRunner(t, top, freshRunWorld(top), true)
			_ = rd.Up(context.Background(), nil)
			_ = r.Reset(context.Background())
			r.Status(context.Background())
			found := false
			for _, c := range w.cmds {
				if strings.Contains(c, "x';touch") || strings.Contains(c, "`id`") && !strings.Contains(c, "'$(id)`id`") {
					t.Errorf("%s reached a command unquoted: %s", field, c)
				}
				if strings.Contains(c, `x'\''`) {
					found = true
				}
			}
			for _, u := range w.uploads {
				if bytes.Contains(u.data, []byte("x';touch")) {
					found = true
				}
			}
			if !found && !strings.Contains(out.String(), "x';touch") {
				t.Logf("%s: accepted, not seen by any host (used only locally)", field)
			}
		})
	}
}

// setField sets a dotted path (numbers index lists) in a YAML document.
func setField(t *testing.T, doc []byte, path, val string) []byte {
	t.Helper()
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		t.Fatal(err)
	}
	n := root.Content[0]
	parts := strings.Split(path, ".")
	for i, p := range parts {
		last := i == len(parts)-1
		switch n.Kind {
		case yaml.SequenceNode:
			idx := 0
			for _, c := range p {
				idx = idx*10 + int(c-'0')
			}
			n = n.Content[idx]
		case yaml.MappingNode:
			var next *yaml.Node
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == p {
					next = n.Content[j+1]
				}
			}
			if next == nil {
				next = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
				if last {
					next = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str"}
				}
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: p}, next)
			}
			n = next
		}
		if last {
			n.Kind, n.Tag, n.Value, n.Style, n.Content = yaml.ScalarNode, "!!str", val, yaml.DoubleQuotedStyle, nil
		}
	}
	out, err := yaml.Marshal(&root)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
