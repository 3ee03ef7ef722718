package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/vipd-project/vipd/test/nspawn"
)

// TestBootstrapSSHConfig: bootstrap connects like OpenSSH, against the real sshd of the
// nspawn hosts. The topology names no key: the lab key is the operator's default identity
// (~/.ssh/id_ed25519); ~/.ssh/config sends lb1 and master1 through lb2 (ProxyJump, the jump
// host itself an alias with HostName). `bootstrap status` reaches every host, lb1's sshd sees
// the connection come from lb2, and a changed host key of either hop is refused (exit 3).
func TestBootstrapSSHConfig(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, systemd-nspawn)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := t.TempDir()
	bootstrap := filepath.Join(bin, "bootstrap")
	for _, p := range []string{"vipd", "bootstrap"} { // status probes the lb phase: vipd next to bootstrap
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, p), "../../cmd/"+p).CombinedOutput(); err != nil {
			t.Fatalf("go build cmd/%s: %v\n%s", p, err, out)
		}
	}
	c, err := nspawn.StartCluster(ctx, nspawn.ClusterOptions{LBs: 2, Masters: 1, Workers: 0, Log: bsLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	lb1, lb2 := c.Host("lb1"), c.Host("lb2")

	// The operator's home: the lab key as the default identity, and the ssh config.
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(c.SSHKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := "Host bastion\n  HostName " + lb2.Addr.String() + "\n  User root\n\nHost lb1 master1\n  ProxyJump bastion\n"
	if err := os.WriteFile(filepath.Join(home, ".ssh", "config"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	topoBytes, err := os.ReadFile(c.Topology)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, l := range strings.Split(string(topoBytes), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "identityFile:") {
			kept = append(kept, l)
		}
	}
	topo := filepath.Join(t.TempDir(), "topology.yaml")
	if err := os.WriteFile(topo, []byte(strings.Join(kept, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}

	run := func(topo string, args ...string) (string, int) {
		cmd := c.OperatorCommand(ctx, bootstrap, append(args, "-f", topo)...)
		cmd.Env = append(cmd.Env, "HOME="+home, "SSH_AUTH_SOCK=")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatalf("run bootstrap: %v", err)
		}
		return out.String(), 0
	}

	out, code := run(topo, "status", "--output", "json")
	reached := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var s struct {
			Host      string `json:"host"`
			Reachable bool   `json:"reachable"`
			Error     string `json:"error"`
		}
		if json.Unmarshal([]byte(l), &s) == nil && s.Host != "" {
			reached[s.Host] = s.Reachable
			if !s.Reachable {
				t.Errorf("%s unreachable: %s", s.Host, s.Error)
			}
		}
	}
	if code != 0 || len(reached) != 3 {
		t.Fatalf("status through ~/.ssh/config: exit %d, hosts %v:\n%s", code, reached, out)
	}
	// lb1 and master1 were reached through lb2; lb2 directly from the operator.
	for host, user := range map[string]string{"lb1": "publickey for root", "master1": "password for ops"} {
		log, _ := c.Exec(ctx, host, "bash", "-c", "journalctl --no-pager -o cat _COMM=sshd | grep '^Accepted'")
		if !strings.Contains(string(log), "Accepted "+user+" from "+lb2.Addr.String()+" ") || strings.Contains(string(log), "from "+c.OperatorAddr.String()+" ") {
			t.Errorf("%s: sshd did not see the connection come from the jump host %s only:\n%s", host, lb2.Addr, log)
		}
	}
	if log, _ := c.Exec(ctx, "lb2", "bash", "-c", "journalctl --no-pager -o cat _COMM=sshd | grep '^Accepted'"); !strings.Contains(string(log), "Accepted publickey for root from "+c.OperatorAddr.String()+" ") {
		t.Errorf("lb2: no key login from the operator:\n%s", log)
	}

	// A changed host key on either hop is refused, naming that hop and the key offered.
	for _, hop := range []*nspawn.Host{lb2, lb1} {
		kh, err := os.ReadFile(c.KnownHosts)
		if err != nil {
			t.Fatal(err)
		}
		other := filepath.Join(t.TempDir(), "other")
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
		otherPub, _ := os.ReadFile(other + ".pub")
		f := strings.Fields(string(otherPub))
		badKH := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(badKH, []byte(strings.Replace(string(kh), hop.HostKeyPub, f[0]+" "+f[1], 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		badTopo := filepath.Join(t.TempDir(), "topology.yaml")
		if err := os.WriteFile(badTopo, []byte(strings.Replace(strings.Join(kept, "\n"), c.KnownHosts, badKH, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hop.HostKeyPub))
		if err != nil {
			t.Fatal(err)
		}
		out, code := run(badTopo, "up", "--dry-run", "--only", "facts")
		if code != 3 || !strings.Contains(out, "HOST KEY CHANGED") || !strings.Contains(out, ssh.FingerprintSHA256(pk)) || !strings.Contains(out, "[lb1] facts: FAILED") {
			t.Errorf("changed key of %s: exit %d, want 3 and lb1 refused naming the key:\n%s", hop.Name, code, out)
		}
		if hop == lb2 && !strings.Contains(out, "jump host") {
			t.Errorf("changed key of the jump host: the message does not say it is the jump host:\n%s", out)
		}
	}
}
