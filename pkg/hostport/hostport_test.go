package hostport

import (
	"strings"
	"testing"
)

func TestListen(t *testing.T) {
	for _, c := range []struct {
		in, host string
		port     int
		err      string
	}{
		{":6443", "", 6443, ""},
		{"192.168.10.100:6443", "192.168.10.100", 6443, ""},
		{"[::1]:8404", "::1", 8404, ""},
		{"127.0.0.1:0", "127.0.0.1", 0, ""},
		{"6443", "", 0, "is not [address]:port"},
		{"lb.example:6443", "", 0, `host "lb.example" is not an IP address`},
		{":65536", "", 0, "port 65536 out of range (port must be 0-65535)"},
		{":http", "", 0, `port "http" is not a number`},
	} {
		a, p, err := Listen(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), c.in) {
				t.Errorf("Listen(%q) error %v, want one naming the input and %q", c.in, err, c.err)
			}
			continue
		}
		host := ""
		if a.IsValid() {
			host = a.String()
		}
		if err != nil || host != c.host || p != c.port {
			t.Errorf("Listen(%q) = %q, %d, %v; want %q, %d", c.in, host, p, err, c.host, c.port)
		}
	}
}

func TestDial(t *testing.T) {
	for _, c := range []struct {
		in, host string
		port     int
		err      string
	}{
		{"192.168.10.138:6443", "192.168.10.138", 6443, ""},
		{"m1.lab:6443", "m1.lab", 6443, ""},
		{"[fd00::1]:7946", "fd00::1", 7946, ""},
		{":6443", "", 0, "has no host"},
		{"10.0.0.1:0", "", 0, "port must be 1-65535"},
		{"10.0.0.1", "", 0, "is not host:port"},
		{"a b:1", "", 0, `bad host "a b"`},
	} {
		h, p, err := Dial(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Dial(%q) error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || h != c.host || p != c.port {
			t.Errorf("Dial(%q) = %q, %d, %v; want %q, %d", c.in, h, p, err, c.host, c.port)
		}
	}
}
