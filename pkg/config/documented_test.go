package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// Every key of the schema is shown in deploy/vipd.yaml (set, or commented out with its
// default), under its section: adding a setting without documenting it fails here.
func TestEveryKeyDocumentedInExample(t *testing.T) {
	b, err := os.ReadFile("../../deploy/vipd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Section of each line: the last top-level key above it.
	sections := map[string]string{} // "section.leaf" or "leaf" -> present
	section := ""
	keyRE := regexp.MustCompile(`^(\s*)#?\s*([a-z_]+):`)
	for _, line := range strings.Split(string(b), "\n") {
		m := keyRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[1] == "" && !strings.HasPrefix(line, "#") {
			section = m[2]
			sections[m[2]] = "top"
			continue
		}
		sections[section+"."+m[2]] = "in"
	}
	var walk func(prefix string, ty reflect.Type)
	walk = func(prefix string, ty reflect.Type) {
		for ty.Kind() == reflect.Pointer {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || ty == reflect.TypeOf(Duration(0)) {
			return
		}
		for i := range ty.NumField() {
			f := ty.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			key := name
			if prefix != "" {
				top, _, _ := strings.Cut(prefix, ".")
				key = top + "." + name
			}
			if sections[key] == "" {
				t.Errorf("%s is not shown in deploy/vipd.yaml (under %q)", strings.TrimPrefix(prefix+"."+name, "."), strings.SplitN(prefix+".", ".", 2)[0])
			}
			sub := prefix + "." + name
			if prefix == "" {
				sub = name
			}
			walk(sub, f.Type)
		}
	}
	walk("", reflect.TypeOf(Config{}))
}
