// Package secretfile holds the one permission rule for files that hold a secret (VRRP password,
// gossip key, stats password, TLS client key, bearer token): the unit runs vipd as user vipd,
// so a secret is root:vipd 0640 or vipd's own 0600, never readable by every user. It is a
// leaf package so that pkg/config and the packages it configures can all call it.
package secretfile

import (
	"fmt"
	"os"
	"strings"
)

// Check refuses a secret file that is missing, not a regular file, readable by every user, or
// writable by its group. field names the setting in messages ("cluster.key_file"); the content
// is never read here, so it never reaches a message.
func Check(field, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: %s is not a regular file", field, path)
	}
	if perm := st.Mode().Perm(); perm&0o027 != 0 {
		return fmt.Errorf("%s: %s is open to every user or writable by its group (mode %04o); refusing to use it: run chmod 640 %s (owner root, group vipd)", field, path, perm, path)
	}
	return nil
}

// Read checks path with Check and returns its content without trailing newlines. An empty
// file is refused.
func Read(field, path string) (string, error) {
	if err := Check(field, path); err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", field, path)
	}
	return s, nil
}
