// Package hostport parses the two kinds of address vipd's configuration holds, with one set of
// rules and messages: an address to listen on ("[ip]:port", an empty host meaning every
// address) and an address to dial ("host:port": a backend, a gossip peer).
package hostport

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Listen parses "[ip]:port" as a listener takes it: the host is empty (every address) or an
// IP address, never a name (a listener cannot wait for DNS); the port is 0-65535, 0 asking
// the kernel for one. The returned Addr is invalid for an empty host.
func Listen(s string) (netip.Addr, int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("%q is not [address]:port (e.g. :6443 or 192.168.10.100:6443)", s)
	}
	p, err := parsePort(s, port, 0)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	if host == "" {
		return netip.Addr{}, p, nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("%q: host %q is not an IP address", s, host)
	}
	return a, p, nil
}

// Dial parses "host:port" as a dialer takes it: a non-empty host (an IP address or a name)
// and a port 1-65535.
func Dial(s string) (string, int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port (e.g. 192.168.10.138:6443)", s)
	}
	if host == "" {
		return "", 0, fmt.Errorf("%q has no host", s)
	}
	if strings.ContainsAny(host, " \t/") {
		return "", 0, fmt.Errorf("%q: bad host %q", s, host)
	}
	p, err := parsePort(s, port, 1)
	if err != nil {
		return "", 0, err
	}
	return host, p, nil
}

func parsePort(s, port string, lowest int) (int, error) {
	p, err := strconv.Atoi(port)
	if err != nil {
		return 0, fmt.Errorf("%q: port %q is not a number", s, port)
	}
	if p < lowest || p > 65535 {
		return 0, fmt.Errorf("%q: port %d out of range (port must be %d-65535)", s, p, lowest)
	}
	return p, nil
}
