package main

import (
	"strings"
	"testing"
)

// Day-2 command lines a user gets wrong exit 2 with the field named, before any SSH.
func TestDay2UsageErrors(t *testing.T) {
	top := "../../deploy/topology.yaml"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"upgrade", "-f", top}, "--to VERSION is required"},
		{[]string{"upgrade", "-f", top, "--to", "1.34"}, `--to "1.34": want a Kubernetes version like 1.34.2`},
		{[]string{"remove", "-f", top, "no-such-host"}, "no-such-host is not a host of"},
		{[]string{"remove", "-f", top}, "accepts 1 arg"},
		{[]string{"upgrade-lb", "-f", top, "extra"}, "unknown command"},
	} {
		code, _, stderr := runCLI(t, c.args...)
		if code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
}
