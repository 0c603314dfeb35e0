package backend_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/p256"
	"github.com/ocikp/ocikp/pq"

	_ "github.com/ocikp/ocikp/keys/keychain"
	_ "github.com/ocikp/ocikp/kms"
)

// Each backend registered its forms, in the directions it serves.
func TestRegistry(t *testing.T) {
	env := backend.Background{}
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	_, pub, _ := pq.KindOf(pq.XWing).GenerateKey()
	for s, typ := range map[string]string{p256.Format(priv.PublicKey()): "p256", pq.KindOf(pq.XWing).Format(pub): pq.XWing} {
		r, err := backend.Recipient(env, s)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.(interface{ Type() string }).Type(); got != typ {
			t.Errorf("%.20s… is a %s recipient, want %s", s, got, typ)
		}
		if backend.IsDecrypt(s) {
			t.Errorf("%.20s… is a decryption-key form", s)
		}
	}
	for _, s := range []string{"", "alice", "ssh-ed25519 AAAA", "http://x", "/etc/passwd"} {
		if _, err := backend.Recipient(env, s); !errors.Is(err, backend.ErrUnknown) {
			t.Errorf("%q: %v, want ErrUnknown", s, err)
		}
		if _, ok, _ := backend.Decrypt(env, s); ok || backend.IsRecipient(s) || backend.IsDecrypt(s) {
			t.Errorf("%q claimed", s)
		}
	}
	// KMS URLs: both directions; without the provider's plugins a
	// recipient cannot be made, and a decryption key names the key.
	if _, err := backend.Recipient(env, "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k"); err == nil || errors.Is(err, backend.ErrUnknown) {
		t.Fatalf("KMS recipient without plugins: %v", err)
	}
	sel, ok, err := backend.Decrypt(env, "hashivault://k")
	if !ok || err != nil || len(sel.KMS) != 1 || sel.KMS[0] != "hashivault://k" {
		t.Fatalf("KMS decryption key: %+v %v %v", sel, ok, err)
	}
	if _, _, err := backend.Decrypt(env, "awskms://a b"); err == nil {
		t.Fatal("a KMS URL with a space accepted")
	}
	// apple-se: a recipient (encrypt URL) and a decryption key (decrypt URL).
	if !backend.IsRecipient("apple-se://se?mode=encrypt&pub=x") || !backend.IsDecrypt("apple-se://se?mode=decrypt") {
		t.Fatal("apple-se")
	}
	// An encryption URL is not a decryption key, though its scheme has both.
	if backend.IsDecrypt("apple-se://se?mode=encrypt&pub=x") || backend.IsDecrypt("apple-se://se?mode=decrypt&pub=x") {
		t.Fatal("an apple-se URL that is no decryption key is claimed as one")
	}
	// Typos in a checksummed recipient's prefix go to its parser.
	xw := pq.KindOf(pq.XWing).Format(pub)
	if _, err := backend.Recipient(env, "ocikp1mlkem768x25518"+xw[20:]); !errors.Is(err, pq.ErrChecksum) {
		t.Fatalf("prefix typo: %v", err)
	}
	if !strings.Contains(strings.Join(backend.Schemes(), ","), "ocikp1mlkem768p256") {
		t.Fatalf("schemes: %v", backend.Schemes())
	}
}

func TestStrength(t *testing.T) {
	for typ, want := range map[string]backend.Strength{
		"p256": backend.Classical, "mlkem768x25519": backend.PostQuantum, "mlkem768p256": backend.PostQuantum,
		"gcpkms": backend.PostQuantum, "awskms": backend.PostQuantum, "hashivault": backend.PostQuantum,
		"gcpkms-rsa": backend.Classical, "awskms-rsa": backend.Classical, "azurekms": backend.Classical,
		"x-unknown": backend.Unknown,
	} {
		if got := backend.StanzaStrength(typ); got != want {
			t.Errorf("%s: %v, want %v", typ, got, want)
		}
	}
}
