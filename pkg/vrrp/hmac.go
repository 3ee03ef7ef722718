package vrrp

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"net/netip"
	"strings"
	"time"
)

// Authenticated adverts (Config.AuthHMACKey): the authentication trailer of
// Keepalived's auth_hmac (Keepalived HEAD, keepalived/vrrp/vrrp_auth_hmac.c;
// no released Debian package has it), built from its source and tested
// against it (TestKeepalivedHMACInterop), in its enforce mode with
// time-based anti-replay:
//
//	the VRRP message (header, VIPs, v2 auth data), checksum computed over it
//	alone as usual, then 28 bytes:
//	  ext_type 1 (HMAC-SHA256 truncated to 128 bits), key_id, reserved 0 (2),
//	  sec (4: UTC seconds), subsec (2: 1/65536 s), ctr (2), hmac (16)
//	hmac = HMAC-SHA256(key, pseudo || message with its checksum read as 0 ||
//	       the trailer's first 12 bytes || 16 zero bytes)[:16]
//	pseudo (20 bytes) = 4, version, vrid, 0, the IPv4 source address, zeros
//
// The IP header is not covered (TTL and the source-MAC checks apply as
// before); the source address and VRID are, through the pseudo header. The
// 64-bit sequence sec<<32|subsec<<16|ctr must be within the freshness window
// of our clock (max(3 x advert interval, 5 s): the peers need NTP) and grow
// strictly per sender; the high-water mark moves only after the HMAC
// verified. Drops: auth_missing, auth_malformed, auth_unknown_key,
// auth_bad_hmac, auth_stale, auth_replay.

const (
	hmacTrailerLen  = 28
	hmacTypeSHA256  = 1
	hmacLen         = 16
	hmacPseudoLen   = 20
	hmacKeyMin      = 32
	hmacKeyMax      = 64
	hmacWindowFloor = 5 * time.Second
	hmacSenders     = 8 // replay marks kept (unicast: one per peer; multicast: most recently verified senders)
)

// ParseHMACKey decodes the content of a vrrp.auth_hmac_key_file the way
// Keepalived reads its key values: "hex:" followed by hex digits is raw bytes,
// anything else the ASCII string itself; a trailing newline is ignored. The
// key must be 32-64 bytes. (Generate one: printf 'hex:%s\n' "$(openssl rand -hex 32)".)
func ParseHMACKey(content string) ([]byte, error) {
	s := strings.TrimRight(content, "\r\n")
	var key []byte
	if h, ok := strings.CutPrefix(s, "hex:"); ok {
		var err error
		if key, err = hex.DecodeString(h); err != nil {
			return nil, fmt.Errorf("hex: key is not hex digits: %w", err)
		}
	} else {
		key = []byte(s)
	}
	if len(key) < hmacKeyMin || len(key) > hmacKeyMax {
		return nil, fmt.Errorf("key is %d bytes, want %d-%d (e.g. hex: and 64 hex digits)", len(key), hmacKeyMin, hmacKeyMax)
	}
	return key, nil
}

// hmacWindow is the freshness window for an advert interval (Keepalived's
// default time_window: max(3 x advert_int, 5 s)).
func hmacWindow(advert time.Duration) time.Duration {
	return max(3*advert, hmacWindowFloor)
}

// hmacState computes trailer digests; its buffers keep the receive path
// free of allocations. Not safe for concurrent use.
type hmacState struct {
	h      hash.Hash
	sum    [sha256.Size]byte
	pseudo [hmacPseudoLen]byte
	zero   [hmacLen]byte
}

// digest returns the truncated HMAC of msg (the VRRP message) from src with
// the trailer prefix tr (its first 12 bytes).
func (s *hmacState) digest(version int, vrid uint8, src netip.Addr, msg, tr []byte) []byte {
	s.pseudo = [hmacPseudoLen]byte{4, byte(version), vrid}
	a := src.As4()
	copy(s.pseudo[4:8], a[:])
	s.h.Reset()
	s.h.Write(s.pseudo[:])
	s.h.Write(msg[:6])
	s.h.Write(s.zero[:2]) // the checksum, read as zero
	s.h.Write(msg[8:])
	s.h.Write(tr[:hmacTrailerLen-hmacLen])
	s.h.Write(s.zero[:])
	return s.h.Sum(s.sum[:0])[:hmacLen]
}

// hmacSigner appends trailers to outgoing adverts (Run goroutine only).
type hmacSigner struct {
	hmacState
	keyID uint8
	seq   uint64 // last sequence sent
}

func newHMACSigner(key []byte, keyID uint8) *hmacSigner {
	return &hmacSigner{hmacState: hmacState{h: hmac.New(sha256.New, key)}, keyID: keyID}
}

// clockSeq packs now as Keepalived does: seconds in the high 32 bits, a
// 1/65536 s fraction in the next 16, the counter 0.
func clockSeq(now time.Time) uint64 {
	sub := uint64(now.Nanosecond()) << 16 / 1e9
	return uint64(uint32(now.Unix()))<<32 | sub<<16
}

// next returns the sequence for one advert: the clock, or the last one plus
// one if the clock has not moved past it (serial arithmetic).
func (s *hmacSigner) next(now time.Time) uint64 {
	if c := clockSeq(now); int64(c-s.seq) > 0 {
		s.seq = c
	} else {
		s.seq++
	}
	return s.seq
}

// appendTrailer appends the trailer for msg (a marshalled VRRP message at
// the end of b, checksum computed) with sequence seq.
func (s *hmacSigner) appendTrailer(b []byte, msgStart int, version int, vrid uint8, src netip.Addr, seq uint64) []byte {
	t := len(b)
	b = append(b, hmacTypeSHA256, s.keyID, 0, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(seq>>32))
	b = binary.BigEndian.AppendUint16(b, uint16(seq>>16))
	b = binary.BigEndian.AppendUint16(b, uint16(seq))
	return append(b, s.digest(version, vrid, src, b[msgStart:t], b[t:])...)
}

// hmacVerifier checks trailers of received adverts (receive goroutine only).
type hmacVerifier struct {
	hmacState
	keyID  uint8
	window time.Duration
	marks  [hmacSenders]replayMark
	clock  uint64 // LRU rank source
}

type replayMark struct {
	src  netip.Addr
	seq  uint64
	used uint64 // LRU rank; 0: empty
}

func newHMACVerifier(key []byte, keyID uint8, window time.Duration) *hmacVerifier {
	return &hmacVerifier{hmacState: hmacState{h: hmac.New(sha256.New, key)}, keyID: keyID, window: window}
}

// verify checks the trailer tr of msg from src at now. It returns "" or the
// drop reason. The replay mark of src moves only when everything verified.
func (v *hmacVerifier) verify(now time.Time, version int, vrid uint8, src netip.Addr, msg, tr []byte) (string, error) {
	if tr == nil {
		return "auth_missing", perr("auth_missing", "advert from "+src.String()+" has no authentication trailer (vrrp.auth_hmac_key_file is set: the peer needs the same key)")
	}
	if tr[0] != hmacTypeSHA256 || tr[2] != 0 || tr[3] != 0 {
		return "auth_malformed", perrN("auth_malformed", "authentication trailer type (or reserved field) not HMAC-SHA256", int64(tr[0]), hmacTypeSHA256)
	}
	sec := binary.BigEndian.Uint32(tr[4:8])
	seq := uint64(sec)<<32 | uint64(binary.BigEndian.Uint16(tr[8:10]))<<16 | uint64(binary.BigEndian.Uint16(tr[10:12]))
	// Stale before the HMAC, so a flood of old captures costs no digest;
	// this only rejects, it never trusts.
	skew := time.Duration(int32(uint32(now.Unix())-sec)) * time.Second
	if skew > v.window || skew < -v.window {
		return "auth_stale", perrN("auth_stale", "authentication timestamp outside the freshness window (clock skew, s; are the clocks synchronised?)", int64(skew/time.Second), int64(v.window/time.Second))
	}
	if tr[1] != v.keyID {
		return "auth_unknown_key", perrN("auth_unknown_key", "authentication key id differs from vrrp.auth_hmac_key_id", int64(tr[1]), int64(v.keyID))
	}
	d := v.digest(version, vrid, src, msg, tr)
	if subtle.ConstantTimeCompare(d, tr[hmacTrailerLen-hmacLen:]) != 1 {
		return "auth_bad_hmac", perr("auth_bad_hmac", "advert from "+src.String()+" fails HMAC verification (wrong key, or forged)")
	}
	m := v.mark(src)
	if m.used != 0 && int64(seq-m.seq) <= 0 {
		return "auth_replay", perr("auth_replay", "advert from "+src.String()+" repeats an authentication sequence already seen (replayed)")
	}
	v.clock++
	m.src, m.seq, m.used = src, seq, v.clock
	return "", nil
}

// mark returns src's replay mark, or the least recently used slot (emptied)
// for a new sender. Only called after the HMAC verified: only key holders
// take slots.
func (v *hmacVerifier) mark(src netip.Addr) *replayMark {
	victim := &v.marks[0]
	for i := range v.marks {
		m := &v.marks[i]
		if m.used != 0 && m.src == src {
			return m
		}
		if m.used < victim.used {
			victim = m
		}
	}
	*victim = replayMark{}
	return victim
}
