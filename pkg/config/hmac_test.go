package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vrrp.auth_hmac_key_file: the key is read on the host (secret-file rule), decoded as
// Keepalived reads it, and reaches pkg/vrrp's Config with its id; bad keys and bad
// combinations are refused with the field's line.
func TestAuthHMACKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.key", "hex:"+strings.Repeat("0a", 32)+"\n", 0o600)
	short := write("short.key", "hex:0a0b\n", 0o600)
	open := write("open.key", "hex:"+strings.Repeat("0a", 32)+"\n", 0o644)
	cfg := func(extra string) string {
		return "vrrp:\n  interface: lo\n  vips: [10.77.0.100/24]\n" + extra
	}

	c, err := Parse("t.yaml", []byte(cfg("  auth_hmac_key_file: "+good+"\n")))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckHost(); err != nil {
		t.Fatal(err)
	}
	v := c.VRRPConfig()
	if len(v.AuthHMACKey) != 32 || v.AuthHMACKey[0] != 0x0a || v.AuthHMACKeyID != 1 {
		t.Fatalf("key %d bytes, id %d", len(v.AuthHMACKey), v.AuthHMACKeyID)
	}

	for _, tc := range []struct {
		name, yaml string
		host       bool // the error comes from CheckHost (reading the file)
		want       string
	}{
		{"short key", cfg("  auth_hmac_key_file: " + short + "\n"), true, "t.yaml:4: vrrp.auth_hmac_key_file: " + short + ": key is 2 bytes, want 32-64"},
		{"world-readable key", cfg("  auth_hmac_key_file: " + open + "\n"), true, "vrrp.auth_hmac_key_file"},
		{"key id 0", cfg("  auth_hmac_key_file: " + good + "\n  auth_hmac_key_id: 0\n"), false, "t.yaml:5: vrrp.auth_hmac_key_id: must be 1-255, got 0"},
		{"key id 256", cfg("  auth_hmac_key_file: " + good + "\n  auth_hmac_key_id: 256\n"), false, "t.yaml:5: vrrp.auth_hmac_key_id: must be 1-255"},
		{"key id alone", cfg("  auth_hmac_key_id: 2\n"), false, "t.yaml:4: vrrp.auth_hmac_key_id: set only with vrrp.auth_hmac_key_file"},
		{"with auth_pass", cfg("  version: 2\n  auth_pass: x\n  auth_hmac_key_file: " + good + "\n"), false, "t.yaml:6: vrrp.auth_hmac_key_file: set auth_pass"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(tc.yaml))
			if !tc.host {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := c.CheckHost(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckHost: %v, want %q", err, tc.want)
			}
		})
	}
}
