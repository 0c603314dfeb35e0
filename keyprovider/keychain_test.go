package keyprovider

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ocikp/ocikp/protocol"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/legacytest"
	"github.com/ocikp/ocikp/keys/keychain"
	"github.com/ocikp/ocikp/keys/keychain/keychaintest"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/p256"
)

// The Apple key provider's images: a legacy blob for the key its starter
// made under the default tag opens through its decryption URL, as the
// seed's users configure it (provider name apple-se).
func TestKeychainSeedImages(t *testing.T) {
	fake := &keychaintest.Fake{}
	seedKey := fake.Add(keychain.DefaultTag)
	otherKey := fake.Add("custom.tag")
	p := &Provider{Name: "apple-se", Store: &soft.Store{Dir: t.TempDir()}, Keychain: keychain.New(fake)}
	blob, _ := legacytest.AppleBlob(t, seedKey.PublicKey(), opts, true)
	dc := map[string][][]byte{"apple-se": vals("apple-se://se?mode=decrypt")}
	if got, err := unwrap(p, blob, dc); err != nil || !bytes.Equal(got, opts) {
		t.Fatalf("seed blob, default tag: %v", err)
	}
	blob2, _ := legacytest.AppleBlob(t, otherKey.PublicKey(), opts, false)
	if got, err := unwrap(p, blob2, map[string][][]byte{"apple-se": vals("apple-se://se?mode=decrypt&tag=custom.tag")}); err != nil || !bytes.Equal(got, opts) {
		t.Fatalf("seed blob, tag given: %v", err)
	}
	// The default-tag key does not open a blob for the other key.
	_, err := unwrap(p, blob2, dc)
	if err == nil || !strings.Contains(err.Error(), "apple-keychain") {
		t.Fatalf("wrong key: %v", err)
	}
	if !strings.Contains(strings.Join(hint.Of(err), "\n"), `keychain tag "se.ocicrypt.default.tag"`) {
		t.Errorf("the error does not name the key tried: %v", hint.Of(err))
	}
	// Wrapping for the seed's recipient string and unwrapping with its
	// decryption URL: a new-format layer for the same Keychain key.
	recip := "apple-se://se?mode=encrypt&pub=" + base64.RawURLEncoding.EncodeToString(seedKey.PublicKey().Bytes())
	ann, err := p.Wrap(&protocol.KeyWrapParams{EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{"apple-se": vals(recip)}}, Optsdata: opts})
	if err != nil {
		t.Fatal(err)
	}
	before := fake.ECDHs
	if got, err := unwrap(p, ann, dc); err != nil || !bytes.Equal(got, opts) {
		t.Fatalf("envelope through the decryption URL: %v", err)
	}
	if fake.ECDHs != before+1 {
		t.Errorf("%d Keychain ECDHs for one stanza", fake.ECDHs-before)
	}
	// A tag with no key says so.
	if _, err := unwrap(p, ann, map[string][][]byte{"apple-se": vals("apple-se://se?mode=decrypt&tag=nope")}); err == nil || !strings.Contains(err.Error(), "no Keychain key with that tag") {
		t.Fatalf("unknown tag: %v", err)
	}
	if fake.Outstanding() != 0 {
		t.Errorf("%d Keychain handles not released", fake.Outstanding())
	}
}

// Keys ocikp made in the Keychain are in the keystore's references: they
// open layers with no decryption parameters (containerd) and by name, and
// a stanza for another key never asks the Keychain.
func TestKeychainRefs(t *testing.T) {
	fake := &keychaintest.Fake{}
	kc := keychain.New(fake)
	f := newFixture(t, "soft")
	p := &Provider{Name: "ocikp", Store: f.st, Keychain: kc, CacheKeys: true}
	key, err := kc.Create(keychain.Spec{Tag: "ocikp.mac"})
	if err != nil {
		t.Fatal(err)
	}
	// Cache the keystore before the reference exists: adding one must be seen.
	if _, err := unwrap(p, f.wrap(p, map[string][][]byte{"ocikp": vals(f.recip["soft"])}), nil); err != nil {
		t.Fatal(err)
	}
	ref := &keychain.Ref{Name: "mac", Tag: "ocikp.mac", Recipient: p256.Format(key.Public), Created: time.Now()}
	if err := p.Refs().Put(ref); err != nil {
		t.Fatal(err)
	}
	ann := f.wrap(p, map[string][][]byte{"ocikp": vals("mac")}) // by name
	for name, dc := range map[string]map[string][][]byte{"no parameters": nil, "by name": {"ocikp": vals("mac")}} {
		if got, err := unwrap(p, ann, dc); err != nil || !bytes.Equal(got, opts) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	before := fake.ECDHs
	softOnly := f.wrap(p, map[string][][]byte{"ocikp": vals(f.recip["soft"])})
	if _, err := unwrap(p, softOnly, nil); err != nil || fake.ECDHs != before {
		t.Fatalf("a soft-key layer used the Keychain (%d ECDHs): %v", fake.ECDHs-before, err)
	}
	// The Keychain key was deleted outside ocikp: the error says which key.
	k, _ := kc.Select("ocikp.mac", key.Public)
	k.Delete()
	_, err = unwrap(p, ann, nil)
	if err == nil || !strings.Contains(err.Error(), `key "mac": ECDH with the Keychain key`) || !strings.Contains(err.Error(), "no Keychain key with that tag") {
		t.Fatalf("deleted key: %v", err)
	}
}

// Without a Keychain (any OS but macOS) the seed's decryption URL fails
// with the reason.
func TestKeychainUnavailable(t *testing.T) {
	if runtime.GOOS == "darwin" {
		t.Skip("this machine has a Keychain")
	}
	f := newFixture(t, "soft")
	p := &Provider{Name: "apple-se", Store: f.st}
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	blob, _ := legacytest.AppleBlob(t, priv.PublicKey(), opts, false)
	_, err := unwrap(p, blob, map[string][][]byte{"apple-se": vals("apple-se://se?mode=decrypt")})
	if err == nil || !strings.Contains(err.Error(), "the keychain backend is only available on macOS") {
		t.Fatalf("%v", err)
	}
}
