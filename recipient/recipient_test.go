package recipient

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/p256"
	"github.com/ocikp/ocikp/plugin"
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
	// KMS URLs become plugin recipients; the plugin checks them in detail.
	r, err := Parse("gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k")
	if err != nil {
		t.Fatal(err)
	}
	if pr, ok := r.(*plugin.Recipient); !ok || pr.Client.Name != "ocikp-plugin-gcpkms" {
		t.Fatalf("gcpkms recipient is %T", r)
	}
	for _, s := range []string{"gcpkms://", "awskms://a b"} {
		if _, err := Parse(s); err == nil || errors.Is(err, ErrUnknown) {
			t.Errorf("%q: %v", s, err)
		}
	}
	if !IsKMS("hashivault://k") || IsKMS("ocikp-p256:x") {
		t.Fatal("IsKMS")
	}
	if !strings.Contains(strings.Join(Schemes(), ","), "ocikp-p256") {
		t.Fatal("ocikp-p256 not registered")
	}
}
