package yamlpos

import (
	"bytes"
	"testing"

	"gopkg.in/yaml.v3"
)

const doc = `vrrp:
  vrid: 51
  vips:
    - 10.0.0.1/24
    - 10.0.0.2/24
  priority: 0
proxy:
  backends: [a, b]
`

func index(t *testing.T, src string) Lines {
	t.Helper()
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(src), &root); err != nil {
		t.Fatal(err)
	}
	return Index(&root, nil)
}

func TestFindPresentFieldAt(t *testing.T) {
	m := index(t, doc)
	for field, want := range map[string]int{
		"vrrp": 1, "vrrp.vrid": 2, "vrrp.vips[1]": 5, "vrrp.priority": 6,
		"vrrp.advert_interval": 1, // absent: its parent's line
		"proxy.backends[1]":    8, "nothing.at.all": 0,
	} {
		if got := m.Find(field); got != want {
			t.Errorf("Find(%q) = %d, want %d", field, got, want)
		}
	}
	if !m.Present("vrrp.priority") {
		t.Error("priority: 0 is written in the file but Present says it is not (a default would replace it)")
	}
	if m.Present("vrrp.advert_interval") {
		t.Error("an absent field is reported present")
	}
	for line, want := range map[int]string{2: "vrrp.vrid", 4: "vrrp.vips[0]", 8: "proxy.backends", 0: "", 99: ""} {
		if got := m.FieldAt(line); got != want {
			t.Errorf("FieldAt(%d) = %q, want %q", line, got, want)
		}
	}
}

func TestVisitSeesEveryKey(t *testing.T) {
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
		t.Fatal(err)
	}
	var paths []string
	Index(&root, func(p string, _, _ *yaml.Node) { paths = append(paths, p) })
	want := []string{"vrrp", "vrrp.vrid", "vrrp.vips", "vrrp.priority", "proxy", "proxy.backends"}
	if len(paths) != len(want) {
		t.Fatalf("visited %v, want %v", paths, want)
	}
	for i := range want {
		if paths[i] != want[i] {
			t.Fatalf("visited %v, want %v", paths, want)
		}
	}
}

func TestDecodeErrorsNameLineAndKeyPath(t *testing.T) {
	src := doc + "  balanse: roundrobin\n"
	m := index(t, src)
	var v struct {
		VRRP  map[string]any `yaml:"vrrp"`
		Proxy struct {
			Backends []string `yaml:"backends"`
		} `yaml:"proxy"`
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(src)))
	dec.KnownFields(true)
	err := dec.Decode(&v)
	if err == nil {
		t.Fatal("strict decode accepted an unknown key")
	}
	ds := m.DecodeErrors(err)
	if len(ds) != 1 || ds[0].Line != 9 || ds[0].UnknownKey != "proxy.balanse" {
		t.Fatalf("DecodeErrors = %+v, want line 9, unknown key proxy.balanse", ds)
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		file       string
		line       int
		field, msg string
		want       string
	}{
		{"v.yaml", 5, "vrrp.vrid", "must be 1-255", "v.yaml:5: vrrp.vrid: must be 1-255"},
		{"v.yaml", 0, "vrrp.vrid", "must be set", "v.yaml: vrrp.vrid: must be set"},
		{"", 0, "", "the file is empty", "the file is empty"},
		// A value with a newline cannot add a line of its own to the journal.
		{"v.yaml", 3, "node_name", "bad \"a\n<3>forged\"", `v.yaml:3: node_name: bad "a\n<3>forged"`},
	} {
		if got := Format(c.file, c.line, c.field, c.msg); got != c.want {
			t.Errorf("Format = %q, want %q", got, c.want)
		}
	}
}
