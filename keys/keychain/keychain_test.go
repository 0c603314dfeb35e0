package keychain_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/keys/keychain"
	"github.com/ocikp/ocikp/keys/keychain/keychaintest"
)

func TestCreateFindECDH(t *testing.T) {
	f := &keychaintest.Fake{}
	kc := keychain.New(f)
	k, err := kc.Create(keychain.Spec{Tag: "ocikp.alice", Label: "ocikp: alice"})
	if err != nil {
		t.Fatal(err)
	}
	found, err := kc.Find("ocikp.alice")
	if err != nil || len(found) != 1 || !found[0].Public.Equal(k.Public) {
		t.Fatalf("find: %v %v", found, err)
	}
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	got, err := k.ECDH(peer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := peer.ECDH(k.Public)
	if !bytes.Equal(got, want) {
		t.Fatal("ECDH through the Keychain differs from the software ECDH")
	}
	if f.Outstanding() != 0 {
		t.Errorf("%d handles not released", f.Outstanding())
	}
	// A taken tag is refused, with advice.
	_, err = kc.Create(keychain.Spec{Tag: "ocikp.alice"})
	if err == nil || !strings.Contains(err.Error(), "already exists") || len(hint.Of(err)) == 0 {
		t.Fatalf("duplicate tag: %v", err)
	}
	if f.Len() != 1 {
		t.Fatalf("%d keys after a refused create", f.Len())
	}
}

func TestSelectAmongSharedTag(t *testing.T) {
	f := &keychaintest.Fake{}
	kc := keychain.New(f)
	a := f.Add(keychain.DefaultTag)
	b := f.Add(keychain.DefaultTag)
	f.Add("other")
	keys, err := kc.Find(keychain.DefaultTag)
	if err != nil || len(keys) != 2 {
		t.Fatalf("find: %d %v", len(keys), err)
	}
	k, err := kc.Select(keychain.DefaultTag, b.PublicKey())
	if err != nil || !k.Public.Equal(b.PublicKey()) {
		t.Fatalf("select: %v", err)
	}
	// Deleting removes that key only.
	if err := k.Delete(); err != nil {
		t.Fatal(err)
	}
	if keys, _ := kc.Find(keychain.DefaultTag); len(keys) != 1 || !keys[0].Public.Equal(a.PublicKey()) {
		t.Fatal("the wrong key was deleted")
	}
	if _, err := kc.Select(keychain.DefaultTag, b.PublicKey()); !errors.Is(err, keychain.ErrNotFound) {
		t.Fatalf("select deleted: %v", err)
	}
	if _, err := kc.Find("nothing"); !errors.Is(err, keychain.ErrNotFound) {
		t.Fatalf("find nothing: %v", err)
	}
	// A key deleted behind ocikp's back fails the ECDH cleanly.
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	if _, err := k.ECDH(peer.PublicKey()); !errors.Is(err, keychain.ErrNotFound) {
		t.Fatalf("ECDH with a deleted key: %v", err)
	}
	if f.Outstanding() != 0 {
		t.Errorf("%d handles not released", f.Outstanding())
	}
}

func TestSecureEnclaveNeedsEntitlement(t *testing.T) {
	f := &keychaintest.Fake{}
	kc := keychain.New(f)
	for _, spec := range []keychain.Spec{{Tag: "se", SecureEnclave: true}, {Tag: "p", RequirePresence: true}} {
		_, err := kc.Create(spec)
		if err == nil {
			t.Fatal("an unsigned binary created an access-controlled key")
		}
		if !strings.Contains(err.Error(), "not code-signed") || strings.Contains(err.Error(), "OSStatus -34018") == false {
			t.Errorf("%+v: %v", spec, err)
		}
		hs := strings.Join(hint.Of(err), "\n")
		if !strings.Contains(hs, "Developer ID") || !strings.Contains(hs, "--backend keychain NAME") {
			t.Errorf("%+v: hints %q", spec, hs)
		}
	}
	f.Entitled = true
	k, err := kc.Create(keychain.Spec{Tag: "se", SecureEnclave: true, RequirePresence: true})
	if err != nil {
		t.Fatalf("entitled: %v", err)
	}
	// Found in the data-protection keychain, and usable.
	if got, err := kc.Select("se", k.Public); err != nil || !got.Public.Equal(k.Public) {
		t.Fatalf("select in the data-protection keychain: %v", err)
	}
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	if _, err := k.ECDH(peer.PublicKey()); err != nil {
		t.Fatal(err)
	}
}

func TestFailuresMapped(t *testing.T) {
	f := &keychaintest.Fake{}
	kc := keychain.New(f)
	k, err := kc.Create(keychain.Spec{Tag: "t"})
	if err != nil {
		t.Fatal(err)
	}
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	f.Fail = map[string]int32{"SecKeyCopyKeyExchangeResult": -128}
	if _, err := k.ECDH(peer.PublicKey()); err == nil || !strings.Contains(err.Error(), "did not approve") {
		t.Fatalf("cancelled prompt: %v", err)
	}
	f.Fail = map[string]int32{"SecItemCopyMatching": -25308}
	if _, err := kc.Find("t"); err == nil || !strings.Contains(err.Error(), "cannot show a prompt") {
		t.Fatalf("no interaction: %v", err)
	}
	if f.Outstanding() != 0 {
		t.Errorf("%d handles not released", f.Outstanding())
	}
}

func TestParseDecryptURL(t *testing.T) {
	for in, want := range map[string]string{
		"apple-se://se?mode=decrypt":              keychain.DefaultTag,
		"apple-se://se?mode=decrypt&tag=my.tag":   "my.tag",
		"apple-se://se?tag=a%20b&mode=decrypt":    "a b",
		"apple-se://se?mode=encrypt&pub=AAAA":     "",
		"apple-se://se?mode=decrypt&tag=":         "",
		"apple-se://se?mode=decrypt&mode=decrypt": "",
		"apple-se://se?mode=decrypt&pub=x":        "",
		"apple-se://host?mode=decrypt":            "",
		"apple-se://se?mode=decrypt&tag=%zz":      "",
		"apple-se://se?mode=decrypt&tag=a%0Ab":    "",
		"apple-se://se?mode=decrypt#x":            "",
		"ocikp-p256:AAAA":                         "",
		"":                                        "",
	} {
		got, err := keychain.ParseDecryptURL(in)
		if (err == nil) != (want != "") || got != want {
			t.Errorf("%q: %q, %v", in, got, err)
		}
	}
}

func FuzzParseDecryptURL(f *testing.F) {
	f.Add("apple-se://se?mode=decrypt")
	f.Add("apple-se://se?mode=decrypt&tag=se.ocicrypt.default.tag")
	f.Add("apple-se://se?mode=decrypt&tag=%41%")
	f.Fuzz(func(t *testing.T, s string) {
		tag, err := keychain.ParseDecryptURL(s)
		if err == nil && !keychain.ValidTag(tag) {
			t.Fatalf("invalid tag %q accepted", tag)
		}
		// Errors are fixed texts: the value came in a request and is
		// never echoed.
		if err != nil && !strings.HasPrefix(err.Error(), "apple-se decryption key: want ") && !strings.HasPrefix(err.Error(), "apple-se decryption key: the tag must be") {
			t.Fatalf("unexpected error text: %v", err)
		}
		if err != nil && len(err.Error()) > 100 {
			t.Fatalf("error longer than its fixed text: %v", err)
		}
	})
}
