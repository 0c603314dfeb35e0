package envelope

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"testing"
)

// StanzaTag is HKDF-Extract(SHA-256, salt = "ocikp/v1 TYPE tag", enc ‖ pub)[:4],
// as docs/format.md defines it.
func TestStanzaTagIsHKDFExtract(t *testing.T) {
	for _, n := range [][2]int{{0, 0}, {65, 33}, {1120, 1216}, {1153, 1249}} {
		enc, pub := bytes.Repeat([]byte{1}, n[0]), bytes.Repeat([]byte{2}, n[1])
		want, _ := hkdf.Extract(sha256.New, append(bytes.Clone(enc), pub...), []byte("ocikp/v1 mlkem768x25519 tag"))
		if got := StanzaTag("mlkem768x25519", enc, pub); !bytes.Equal(got, want[:4]) {
			t.Fatalf("%v: %x, want %x", n, got, want[:4])
		}
	}
}
