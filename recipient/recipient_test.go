package recipient

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/p256"
)

func TestParse(t *testing.T) {
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	if _, err := Parse(p256.Format(priv.PublicKey())); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"", "alice", "ssh-ed25519 AAAA", "http://x"} {
		if _, err := Parse(s); !errors.Is(err, ErrUnknown) {
			t.Errorf("%q: %v, want ErrUnknown", s, err)
		}
		if Known(s) {
			t.Errorf("%q known", s)
		}
	}
	// Reserved schemes of backends this build lacks say so.
	_, err := Parse("gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k")
	if err == nil || errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "ocikp-plugin-kms") {
		t.Fatalf("gcpkms: %v", err)
	}
	if !strings.Contains(strings.Join(Schemes(), ","), "ocikp-p256") {
		t.Fatal("ocikp-p256 not registered")
	}
}
