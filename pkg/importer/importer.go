// Package importer translates a Keepalived + HAProxy pair's configuration (keepalived.conf
// and haproxy.cfg, as in the reference setup and kubeadm's HA guide) into an equivalent
// vipd.yaml, with a comment on every setting it could not carry over and why (`vipd import`).
package importer

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Sources are the files to translate; HAProxy may be empty (then vipd proxies nothing).
type Sources struct {
	KeepalivedFile string
	Keepalived     []byte
	HAProxyFile    string
	HAProxy        []byte
}

// doc accumulates vipd.yaml text: sections of "key: value" lines, each with the comment
// lines that explain where it came from or what was not carried over.
type doc struct {
	b strings.Builder
}

func (d *doc) comment(indent int, format string, args ...any) {
	for _, l := range strings.Split(fmt.Sprintf(format, args...), "\n") {
		fmt.Fprintf(&d.b, "%s# %s\n", strings.Repeat("  ", indent), l)
	}
}

func (d *doc) kv(indent int, key, value string) {
	if value == "" {
		fmt.Fprintf(&d.b, "%s%s:\n", strings.Repeat("  ", indent), key)
		return
	}
	fmt.Fprintf(&d.b, "%s%s: %s\n", strings.Repeat("  ", indent), key, value)
}

func (d *doc) list(indent int, key string, items []string) {
	if len(items) == 0 {
		d.kv(indent, key, "[]")
		return
	}
	d.kv(indent, key, "")
	for _, it := range items {
		fmt.Fprintf(&d.b, "%s  - %s\n", strings.Repeat("  ", indent), q(it))
	}
}

var plain = regexp.MustCompile(`^[A-Za-z0-9_./-][A-Za-z0-9_./:-]*$`)

// q quotes a YAML scalar unless it is plain.
func q(s string) string {
	if plain.MatchString(s) && !strings.HasSuffix(s, ":") {
		return s
	}
	return strconv.Quote(s)
}

// Import returns the vipd.yaml equivalent to the sources. The result is meant to pass
// `vipd check`; the caller verifies it with config.Parse.
func Import(src Sources) ([]byte, error) {
	ka, err := parseKeepalived(src.KeepalivedFile, src.Keepalived)
	if err != nil {
		return nil, err
	}
	d := &doc{}
	d.comment(0, "vipd configuration translated by `vipd import` from %s%s.", src.KeepalivedFile,
		map[bool]string{true: " and " + src.HAProxyFile, false: ""}[src.HAProxyFile != ""])
	d.comment(0, "Every setting that could not be carried over is said so in a comment. Check it with\n  vipd check -c FILE\nand read deploy/vipd.yaml (or vipd.yaml(5)) for the settings vipd adds.")
	d.b.WriteString("\n")
	track, err := vrrpSection(d, src.KeepalivedFile, ka)
	if err != nil {
		return nil, err
	}
	if len(src.HAProxy) > 0 {
		if err := proxySections(d, src.HAProxyFile, parseHAProxy(src.HAProxy), track); err != nil {
			return nil, err
		}
	} else if track.scripts != "" {
		d.b.WriteString("\n")
		d.comment(0, "%s\nwithout a proxy section vipd has nothing to track them with.", track.scripts)
	}
	return []byte(d.b.String()), nil
}

// tracking is what keepalived's track_script said, for the proxy section to carry over.
type tracking struct {
	scripts string // comment describing them
	weight  *int   // priority reduction (positive), nil when there was no script
}

func seconds(s string) (string, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return "", fmt.Errorf("%q is not a number of seconds", s)
	}
	return strconv.FormatFloat(f, 'f', -1, 64) + "s", nil
}
