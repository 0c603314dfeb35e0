// Package bech32m encodes and checks ocikp's checksummed recipient
// strings: Bech32m (BIP 350, through btcsuite's bech32) of a public key
// under a human-readable part "ocikp1KIND", lower case, without BIP 173's
// 90-character limit (post-quantum keys are 1.2 KB).
package bech32m

import (
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/btcutil/bech32"
)

// ErrChecksum is a string with a mistyped, missing or extra character.
var ErrChecksum = errors.New("checksum mismatch: a character of the recipient is mistyped, missing or extra")

// Encode returns the string of data under hrp.
func Encode(hrp string, data []byte) string {
	d, err := bech32.ConvertBits(data, 8, 5, true)
	if err != nil {
		panic(err) // 8 to 5 bits with padding cannot fail
	}
	s, err := bech32.EncodeM(hrp, d)
	if err != nil {
		panic(err)
	}
	return s
}

// Len is the length of the string of size bytes of data under hrp: the
// part, the separator, the data characters, 6 of checksum.
func Len(hrp string, size int) int { return len(hrp) + 1 + (size*8+4)/5 + 6 }

// Near reports whether s starts like the strings under hrp, one character
// of "hrp1" mistyped at most, so that a typo anywhere is reported as a
// checksum mismatch rather than as an unknown recipient.
func Near(s, hrp string) bool {
	head := hrp + "1"
	if len(s) < len(head) {
		return false
	}
	diff := 0
	for i := range len(head) {
		if c := s[i] | 0x20; c != head[i] && s[i] != head[i] {
			diff++
		}
	}
	return diff <= 1
}

// Decode checks s as a string under hrp holding size bytes and returns
// them; what names the kind in errors ("P-256 recipient").
func Decode(s, hrp string, size int, what string) ([]byte, error) {
	if n := Len(hrp, size); len(s) != n {
		return nil, fmt.Errorf("%s: %d characters, want %d: %w", what, len(s), n, ErrChecksum)
	}
	got, data, version, err := bech32.DecodeNoLimitWithVersion(s)
	if _, mixed := err.(bech32.ErrMixedCase); mixed {
		return nil, fmt.Errorf("%s: mixes upper and lower case; recipients are lower case", what)
	}
	if err != nil || version != bech32.VersionM || got != hrp {
		return nil, fmt.Errorf("%s: %w", what, ErrChecksum)
	}
	raw, err := bech32.ConvertBits(data, 5, 8, false)
	if err != nil || len(raw) != size {
		return nil, fmt.Errorf("%s: the checksum holds but it does not encode a public key", what)
	}
	return raw, nil
}
