package p256

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
)

func TestFormatParseRoundTrip(t *testing.T) {
	for range 50 {
		priv, _ := ecdh.P256().GenerateKey(rand.Reader)
		s := Format(priv.PublicKey())
		if !strings.HasPrefix(s, "ocikp-p256:") || len(s) != len("ocikp-p256:")+44 {
			t.Fatalf("bad format %q", s)
		}
		r, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		if !r.PublicKey().Equal(priv.PublicKey()) {
			t.Fatal("round trip changed the key")
		}
		if r.String() != s {
			t.Fatal("String differs")
		}
	}
}

func TestParseAppleSE(t *testing.T) {
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	pub := base64.RawURLEncoding.EncodeToString(priv.PublicKey().Bytes())
	for _, s := range []string{
		"apple-se://se?mode=encrypt&pub=" + pub,
		"apple-se://se?pub=" + pub + "&mode=encrypt",
		"apple-se://se?mode=encrypt&pub=" + base64.URLEncoding.EncodeToString(priv.PublicKey().Bytes()),
	} {
		r, err := Parse(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if !r.PublicKey().Equal(priv.PublicKey()) {
			t.Fatal("wrong key")
		}
	}
	for _, s := range []string{
		"apple-se://se?mode=decrypt&pub=" + pub,
		"apple-se://se?mode=encrypt",
		"apple-se://se?mode=encrypt&pub=AAAA",
		"apple-se://other?mode=encrypt&pub=" + pub,
	} {
		if _, err := Parse(s); err == nil {
			t.Errorf("%s: accepted", s)
		}
	}
}

func TestParseRejects(t *testing.T) {
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	good := Format(priv.PublicKey())
	bad := []string{
		"", "ocikp-p256:", "ocikp-p256:AAAA", good + "A", good[:len(good)-1],
		"ocikp-p256:" + base64.RawURLEncoding.EncodeToString(append([]byte{2}, bytes.Repeat([]byte{0xff}, 32)...)),
		strings.Replace(good, "ocikp-p256:", "ocikp-p256:=", 1),
	}
	for _, s := range bad {
		if _, err := Parse(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	if _, err := Parse("gcpkms://x"); err != ErrNotP256 {
		t.Errorf("foreign scheme: %v", err)
	}
}

func TestWrapUnwrap(t *testing.T) {
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	other, _ := ecdh.P256().GenerateKey(rand.Reader)
	r, _ := NewRecipient(priv.PublicKey())
	fk := bytes.Repeat([]byte{7}, 32)
	s, err := r.Wrap(fk)
	if err != nil {
		t.Fatal(err)
	}
	loads := 0
	id := NewIdentity("lazy", Compress(priv.PublicKey()), func() (ecdh.KeyExchanger, error) { loads++; return priv, nil })
	got, err := id.Unwrap(s)
	if err != nil || !bytes.Equal(got, fk) {
		t.Fatalf("unwrap: %v", err)
	}
	// A foreign identity rejects by tag without loading its private key.
	idOther := NewIdentity("other", Compress(other.PublicKey()), func() (ecdh.KeyExchanger, error) {
		t.Fatal("private key loaded for a stanza whose tag does not match")
		return nil, nil
	})
	if _, err := idOther.Unwrap(s); err == nil {
		t.Fatal("foreign identity unwrapped")
	}
	if loads != 1 {
		t.Fatalf("loaded %d times", loads)
	}
	// A load returning a different key is caught.
	mismatch := NewIdentity("bad", Compress(priv.PublicKey()), func() (ecdh.KeyExchanger, error) { return other, nil })
	if _, err := mismatch.Unwrap(s); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched load: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	f.Add(Format(priv.PublicKey()))
	f.Add("apple-se://se?mode=encrypt&pub=" + base64.RawURLEncoding.EncodeToString(priv.PublicKey().Bytes()))
	f.Add("ocikp-p256:")
	f.Add("apple-se://se?mode=encrypt&pub=&pub=")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		// Anything accepted formats back to a string that parses to the same key.
		r2, err := Parse(r.String())
		if err != nil || !r2.PublicKey().Equal(r.PublicKey()) {
			t.Fatalf("re-parse of %q failed: %v", r.String(), err)
		}
	})
}
