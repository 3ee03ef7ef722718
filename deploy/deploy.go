// Package deploy holds the files a vipd installation is made of: the systemd unit
// (vipd.service), the commented example configuration (vipd.yaml) and the Debian maintainer
// scripts and copyright (debian/). They are the only copies: Go code reads them from here,
// embedded (pkg/vipdpkg builds the Debian package from them, for `make package` and for
// bootstrap, which installs that package on the lb hosts).
package deploy

import "embed"

//go:embed vipd.service vipd.yaml debian/copyright debian/vipd.postinst debian/vipd.prerm debian/vipd.postrm
var files embed.FS

// File returns one of the embedded files by its path under deploy/ ("vipd.service",
// "debian/vipd.postinst"). It panics on a name that is not embedded: the names are constants
// of the callers, checked by the tests.
func File(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic("deploy: " + err.Error())
	}
	return b
}
