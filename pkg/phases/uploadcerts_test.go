package phases

import (
	"context"
	"strings"
	"testing"
)

// The certificate key for the master joins is made with init's configuration: the real
// kubeadm, without --config, derives the API server's bind address from the default route
// and fails on a host without one.
func TestUploadCertsUsesInitConfig(t *testing.T) {
	top := refTopology(t)
	w := freshRunWorld(top)
	r, out := newTestRunner(t, top, w, false)
	if err := r.Up(context.Background(), nil); err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	found := false
	for _, c := range w.cmds {
		if strings.Contains(c, "init phase upload-certs") {
			found = true
			if !strings.Contains(c, "kubeadm init phase upload-certs --upload-certs --config "+KubeadmConfig) {
				t.Errorf("upload-certs without init's configuration: %s", c)
			}
		}
	}
	if !found {
		t.Error("no kubeadm init phase upload-certs ran")
	}
}
