package config

import (
	"bufio"
	"bytes"
	"strings"
)

// ExampleMarker is the first line of the example configuration that the Debian package
// installs as /etc/vipd/vipd.yaml (deploy/vipd.yaml with this line on top). A file that still
// has it is refused, so the packaged unit, enabled on install, does not start (its
// ExecStartPre `vipd check` fails and says why) until an operator has edited the file for the
// host and deleted the line; the package's postinst starts vipd only once the line is gone.
const ExampleMarker = "# VIPD-EXAMPLE: vipd refuses this file until you edit it for this host and delete this line"

// exampleError reports the marker's line, if the file still has it.
func exampleError(name string, b []byte) *Error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		if strings.TrimSpace(sc.Text()) == ExampleMarker {
			return &Error{File: name, Line: n, Msg: "this is the example configuration installed by the package: " +
				"edit it for this host (vrrp.interface, vrrp.vips, proxy.backends, ...), delete this line, then systemctl start vipd"}
		}
	}
	return nil
}
