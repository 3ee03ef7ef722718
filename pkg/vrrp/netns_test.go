package vrrp

import (
	"net/netip"
	"testing"

	"github.com/vipd-project/vipd/test/lab"
)

// This package's root-only tests run in the project's one netns harness (test/lab): hosts
// are namespaces "<prefix>-<name>" whose eth0 is a veth to a bridge in a namespace of its
// own, with no route out.
type (
	tlab  = lab.Lab
	thost = lab.Host
)

// newTLab starts a lab on subnet (a 10.x /24) with the named hosts at .11, .12, ...; it is
// closed when the test ends.
func newTLab(t *testing.T, subnet string, names ...string) *tlab {
	t.Helper()
	return lab.New(t, lab.Options{Hosts: names, Subnet: netip.MustParsePrefix(subnet)})
}
