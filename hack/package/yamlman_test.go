package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestYAMLManPage: vipd.yaml(5) lists every key of the schema, documented ones with the
// example's comment (also keys only present commented out, nested ones too), and no roff
// request starts a text line by accident.
func TestYAMLManPage(t *testing.T) {
	example, err := os.ReadFile("../../deploy/vipd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	page, err := yamlManPage(example, "1.0.0", time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	order, _ := schemaKeys()
	for _, k := range order {
		if !strings.Contains(s, "\n.B "+esc(k)+"\n") && !strings.Contains(s, "\n.SS "+esc(k)+"\n") {
			t.Errorf("schema key %s is not in the page", k)
		}
	}
	for _, want := range []string{
		".B vrrp.interface\n(string; example: ens33)\nInterface that carries the VIP and the VRRP adverts.\n",
		".B vrrp.auth_pass_file\n(string)\nVRRPv2 only: auth_type PASS password",
		".B stats.basic_auth.password_file\n(string)\n",
		".SS proxy\nThe TCP load balancer for kube\\-apiserver.",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(s, "Settings not described in the example") {
		t.Logf("keys without a comment in deploy/vipd.yaml:\n%s", s[strings.Index(s, "Settings not described"):])
	}
}
