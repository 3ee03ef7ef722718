package phases

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/vipd-project/vipd/pkg/config"
	"github.com/vipd-project/vipd/pkg/topology"
)

// gossipKey is the shared key of vipd's gossip cluster, decided once per run for all the lb
// hosts: the key an lb already holds (the first in file order), so a rerun changes nothing,
// or 32 random bytes made in memory when none has one. It is never printed or logged; it
// leaves this process only in uploads to the lb hosts.
type gossipKey struct {
	data   []byte            // file content to install: base64 of the key and a newline
	source string            // lb the key was read from; "" when made by this run
	have   map[string][]byte // lb -> its current file, when it holds the same key (kept as is)
	differ map[string]string // lb -> why its key is replaced (another key, unusable content)
}

// gossipKeyScript prints the key file of an lb host; exit 1 when it has none (or it is empty).
const gossipKeyScript = "test -s " + VipdGossipKey + " && cat " + VipdGossipKey

// gossipKey returns the run's gossip key, reading the lb hosts' key files on first use.
func (r *Runner) gossipKey(ctx context.Context) (*gossipKey, error) {
	r.keyMu.Lock()
	defer r.keyMu.Unlock()
	if r.gkey != nil {
		return r.gkey, nil
	}
	lbs := r.t.LBs()
	files := make([][]byte, len(lbs))
	err := forEach(lbs, func(h topology.Host) error {
		out, ok, err := r.probe(ctx, h, "lb/gossip-key", gossipKeyScript)
		if err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		if ok {
			files[indexOf(lbs, h)] = []byte(out)
		}
		return nil
	})
	if err != nil {
		return nil, &StepError{Step: "read the gossip key (" + VipdGossipKey + ") of the lb hosts", Err: err,
			Fix: "every lb host must be reachable: bootstrap makes a new key only when none of them has one"}
	}
	k := &gossipKey{have: map[string][]byte{}, differ: map[string]string{}}
	var key []byte
	for i, h := range lbs {
		if files[i] == nil {
			continue
		}
		dk, ok := decodeGossipKey(files[i])
		switch {
		case !ok:
			k.differ[h.Name] = "it holds no usable key (base64 of 16, 24 or 32 bytes)"
		case key == nil:
			key, k.source, k.data = dk, h.Name, files[i]
			k.have[h.Name] = files[i]
		case bytes.Equal(dk, key):
			k.have[h.Name] = files[i]
		default:
			k.differ[h.Name] = "it holds a different key than " + k.source
		}
	}
	if key == nil {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, fmt.Errorf("make a gossip key: %w", err)
		}
		k.data = []byte(base64.StdEncoding.EncodeToString(raw) + "\n")
	}
	for _, h := range lbs {
		if why, ok := k.differ[h.Name]; ok {
			repl := "a new key"
			if k.source != "" {
				repl = k.source + "'s key"
			}
			r.warn(h.Name, PhaseLB, fmt.Sprintf("%s: %s, so vipd's gossip between the lb hosts fails (gossip_key alarm); bootstrap replaces it with %s and restarts vipd there", VipdGossipKey, why, repl))
		}
	}
	r.gkey = k
	return k, nil
}

// forHost returns the key file content for h and what the upload is, for the plan.
func (k *gossipKey) forHost(h topology.Host) (data []byte, what string) {
	if b, ok := k.have[h.Name]; ok {
		return b, "gossip key"
	}
	switch {
	case k.source == "":
		what = "gossip key: new, 32 random bytes"
	default:
		what = "gossip key of " + k.source
	}
	if why, ok := k.differ[h.Name]; ok {
		what += "; replaces this host's: " + why
	}
	return k.data, what
}

// note says what installing the key file on h does, for the summary line.
func (k *gossipKey) note(h topology.Host) string {
	switch {
	case k.have[h.Name] != nil:
		return "gossip key mode/owner set to 0640 root:vipd"
	case k.source == "":
		return "new gossip key installed"
	case k.differ[h.Name] != "":
		return "gossip key of " + k.source + " installed in place of a different one"
	default:
		return "gossip key of " + k.source + " installed"
	}
}

// decodeGossipKey reads a key file as vipd does: base64 of 16, 24 or 32 bytes, or that many
// raw bytes.
func decodeGossipKey(b []byte) ([]byte, bool) {
	valid := func(n int) bool { return n == 16 || n == 24 || n == 32 }
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b))); err == nil && valid(len(k)) {
		return k, true
	}
	if valid(len(b)) {
		return b, true
	}
	return nil, false
}

// restartOnlyChanges lists the settings that differ between the running vipd configuration
// and the new one and that vipd applies only on a restart (its reload refuses them and keeps
// the running configuration). vipd's own list decides: config.RestartRequired.
func restartOnlyChanges(running, want []byte) []string {
	a, err := config.Decode("running "+VipdConfigPath, running)
	if err != nil {
		return []string{"the running configuration (unreadable)"}
	}
	b, err := config.Decode(VipdConfigPath, want)
	if err != nil {
		return []string{"the configuration (unreadable)"}
	}
	return config.RestartRequired(a, b)
}
