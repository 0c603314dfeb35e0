package pkcs11

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"strings"
	"testing"

	pkcs11uri "github.com/stefanberger/go-pkcs11uri"
)

func TestParse(t *testing.T) {
	u, err := Parse("pkcs11:token=node%20token;object=ocikp;id=%01%02;slot-id=3?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234")
	if err != nil {
		t.Fatal(err)
	}
	if u.Token != "node token" || u.Object != "ocikp" || !bytes.Equal(u.ID, []byte{1, 2}) || u.SlotID != 3 ||
		u.ModulePath != "/usr/lib/softhsm/libsofthsm2.so" || u.PINValue != "1234" {
		t.Fatalf("parsed %+v", u)
	}
	s := u.String()
	if strings.Contains(s, "1234") || strings.Contains(s, "pin-value") {
		t.Fatalf("String keeps the PIN: %s", s)
	}
	if s != "pkcs11:token=node%20token;slot-id=3;object=ocikp;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so" {
		t.Fatalf("String = %s", s)
	}
	for _, bad := range []string{
		"token=x",
		"pkcs11:token",
		"pkcs11:token=a;token=b",
		"pkcs11:bogus=1",
		"pkcs11:token=a?module-path=relative.so",
		"pkcs11:token=a?pin-source=/f&pin-value=1",
		"pkcs11:token=%zz",
		"pkcs11:token=%4",
		"pkcs11:slot-id=-1",
		"pkcs11:type=cert",
		"pkcs11:token=a?pin-source=relative",
		"pkcs11:" + strings.Repeat("a", maxURI),
	} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	// Errors never quote a pin-value.
	if _, err := Parse("pkcs11:token=a?pin-value=s3cret&pin-value=s3cret"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error: %v", err)
	}
}

// TestOcicryptURIs: URIs ocicrypt's PKCS#11 scheme accepts (its docs and
// tests) mean the same to ocikp as to go-pkcs11uri, the parser ocicrypt
// uses.
func TestOcicryptURIs(t *testing.T) {
	for _, s := range []string{
		"pkcs11:token=test;object=rsa?module-path=/usr/lib64/pkcs11/libsofthsm2.so&pin-value=1234",
		"pkcs11:token=my%20token;object=key;id=%66%6F%6F?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pin",
		"pkcs11:slot-id=0;object=k?pin-source=/run/pin&module-path=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
	} {
		compare(t, s)
	}
}

func compare(t *testing.T, s string) {
	t.Helper()
	u, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	ref := pkcs11uri.New()
	if err := ref.Parse(s); err != nil {
		t.Fatalf("go-pkcs11uri refuses what ocikp accepts, %q: %v", s, err)
	}
	get := func(name string, path bool) string {
		var v string
		if path {
			v, _ = ref.GetPathAttribute(name, false)
		} else {
			v, _ = ref.GetQueryAttribute(name, false)
		}
		return v
	}
	ps, _ := strings.CutPrefix(get("pin-source", false), "file:")
	if get("token", true) != u.Token || get("object", true) != u.Object || get("id", true) != string(u.ID) ||
		get("module-path", false) != u.ModulePath || get("pin-value", false) != u.PINValue || ps != u.PINSource {
		t.Fatalf("%q: ocikp and go-pkcs11uri differ: %+v", s, u)
	}
}

// FuzzParse: no panic; what Parse accepts, String writes back without the
// PIN and Parse reads again as the same URI.
func FuzzParse(f *testing.F) {
	f.Add("pkcs11:token=a;object=b;id=%01?module-path=/usr/lib/x.so&pin-value=1")
	f.Add("pkcs11:token=a%20b;slot-id=1?pin-source=file:/p")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := Parse(s)
		if err != nil {
			return
		}
		out := u.String()
		v, err := Parse(out)
		if err != nil {
			t.Fatalf("String %q does not parse: %v", out, err)
		}
		u.PINValue = ""
		if v.String() != out || v.Token != u.Token || v.Object != u.Object || !bytes.Equal(v.ID, u.ID) ||
			v.ModulePath != u.ModulePath || v.PINSource != u.PINSource || v.SlotID != u.SlotID {
			t.Fatalf("round trip of %q changed it: %q", s, out)
		}
		if v.PINValue != "" {
			t.Fatal("String kept a pin-value")
		}
	})
}

// FuzzParseRecord: no panic; an accepted record holds no PIN and
// re-encodes to a record that parses the same.
func FuzzParseRecord(f *testing.F) {
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	u, _ := Parse("pkcs11:token=a;object=b?module-path=/usr/lib/x.so")
	r, err := NewRecord("node", u, priv.PublicKey())
	if err != nil {
		f.Fatal(err)
	}
	seed, _ := r.Marshal()
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRecord(data)
		if err != nil {
			return
		}
		if r.uri.PINValue != "" {
			t.Fatal("a record with a pin-value was accepted")
		}
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		r2, err := ParseRecord(b)
		if err != nil || r2.URI != r.URI || r2.Recipient != r.Recipient {
			t.Fatalf("re-encoded record differs: %v", err)
		}
	})
}

// FuzzOpenOcicrypt: an annotation from an image never panics the parser
// and, with a URI that names no module, never reaches a token.
func FuzzOpenOcicrypt(f *testing.F) {
	f.Add([]byte(`{"version":0,"recipients":[{"version":0,"blob":"AAAA","hash":"sha1"}]}`))
	f.Add([]byte(`{"version":0,"recipients":[]}`))
	u := &URI{Object: "rsa", SlotID: -1}
	f.Fuzz(func(t *testing.T, blob []byte) {
		if _, err := OpenOcicrypt(u, nil, blob); err == nil {
			t.Fatal("opened without a module")
		}
	})
}
