package cli

import "testing"

// The fingerprint is what the list's help says: sha256sum's first 12 hex
// digits of the recipient string.
func TestFingerprint(t *testing.T) {
	// printf abc | sha256sum: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
	if got := Fingerprint("abc"); got != "ba7816bf8f01" {
		t.Fatalf("Fingerprint(abc) = %s", got)
	}
}
