package topology

import (
	"errors"
	"os"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the topology loader: it never panics or hangs, a refusal
// is an *Error listing at least one problem, and an accepted topology has the hosts its
// accessors promise.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../../deploy/topology.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("cluster: {name: x}\n"))
	f.Add([]byte("hosts:\n  - {name: a, address: 10.0.0.1, role: lb}\n  - {name: a, address: 10.0.0.1, role: master}\n"))
	f.Add([]byte("loadBalancer:\n  vip: 10.0.0.100/24\n  vrid: 0\n  authPassEnv: \"$(rm -rf /)\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		top, _, err := Parse(b, "f.yaml")
		if err != nil {
			var te *Error
			if !errors.As(err, &te) || len(te.Problems) == 0 {
				t.Fatalf("error %T %v is not an *Error with problems", err, err)
			}
			return
		}
		if top == nil {
			t.Fatal("nil topology without an error")
		}
		if len(top.Masters()) == 0 {
			t.Fatalf("accepted a topology without masters")
		}
		_ = top.LBs()
	})
}
