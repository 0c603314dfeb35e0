package legacy

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/ocikp/ocikp/internal/legacytest"
)

func writeAppleBlob(t testing.TB, to *ecdh.PublicKey, optsdata []byte, stripZeros bool) ([]byte, bool) {
	return legacytest.AppleBlob(t, to, optsdata, stripZeros)
}

func TestAppleOpen(t *testing.T) {
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	other, _ := ecdh.P256().GenerateKey(rand.Reader)
	opts := []byte(`{"symkey":"legacy"}`)
	blob, _ := writeAppleBlob(t, priv.PublicKey(), opts, false)
	if !IsApple(blob) {
		t.Fatal("not detected")
	}
	a, err := ParseApple(blob)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Open(priv)
	if err != nil || !bytes.Equal(got, opts) {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := a.Open(other); !errors.Is(err, ErrNotMine) {
		t.Fatalf("other key: %v", err)
	}
}

// One shared secret in 256 starts with a zero byte; the seed dropped it.
// Both encodings of such a secret must open.
func TestAppleLeadingZeroSecret(t *testing.T) {
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	opts := []byte(`{"symkey":"zero"}`)
	for _, strip := range []bool{true, false} {
		found := false
		for i := 0; i < 8192 && !found; i++ {
			blob, zero := writeAppleBlob(t, priv.PublicKey(), opts, strip)
			if !zero {
				continue
			}
			found = true
			a, err := ParseApple(blob)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := a.Open(priv); err != nil || !bytes.Equal(got, opts) {
				t.Fatalf("strip=%v: %q, %v", strip, got, err)
			}
		}
		if !found {
			t.Fatal("no leading-zero secret in 8192 tries")
		}
	}
}

func TestParseAppleRejects(t *testing.T) {
	for name, b := range map[string]string{
		"not json":   `{`,
		"wrap type":  `{"KeyUrl":"","EphPub":"","WrappedKey":"","WrapType":"RSA"}`,
		"bad point":  `{"KeyUrl":"","EphPub":"AAAA","WrappedKey":"","WrapType":"AES-GCM"}`,
		"short wrap": `{"KeyUrl":"","EphPub":"BGsX0fLhLEJH+Lzm5WOkQPJ3A32BLeszoPShOUXYmMKWT+NC4v4af5uO5+tKfA+eFivOM1drMV7Oy7ZAaDe/UfU=","WrappedKey":"AAAA","WrapType":"AES-GCM"}`,
	} {
		if _, err := ParseApple([]byte(b)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseApple(f *testing.F) {
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	blob, _ := writeAppleBlob(f, priv.PublicKey(), []byte("x"), false)
	f.Add(blob)
	f.Add([]byte(`{"EphPub":"","WrapType":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if a, err := ParseApple(b); err == nil {
			a.Open(priv)
		}
	})
}
