package p256

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/internal/bech32m"
)

var update = flag.Bool("update", false, "rewrite testdata/recipients.json")

func TestFormatParseRoundTrip(t *testing.T) {
	for range 50 {
		priv, _ := ecdh.P256().GenerateKey(rand.Reader)
		s := Format(priv.PublicKey())
		if !strings.HasPrefix(s, "ocikp1p2561") || len(s) != bech32m.Len(HRP, compSize) || strings.ToLower(s) != s {
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
		// The legacy form of the same key still parses, to the same key.
		legacy := LegacyScheme + ":" + base64.RawURLEncoding.EncodeToString(Compress(priv.PublicKey()))
		if r, err := Parse(legacy); err != nil || !r.PublicKey().Equal(priv.PublicKey()) || !IsLegacy(legacy) {
			t.Fatalf("legacy form: %v", err)
		}
		// Upper case is the same string to Bech32.
		if r, err := Parse(strings.ToUpper(s)); err != nil || !r.PublicKey().Equal(priv.PublicKey()) {
			t.Fatalf("upper case: %v", err)
		}
	}
}

// Every single-character error, at every position, is a checksum mismatch:
// never a different key, never "not on the curve".
func TestEverySingleCharacterErrorIsCaught(t *testing.T) {
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	good := Format(priv.PublicKey())
	for _, bad := range singleCharErrors(good) {
		_, err := Parse(bad)
		if !errors.Is(err, ErrChecksum) {
			t.Fatalf("%q (one character changed): %v", bad, err)
		}
	}
	// A dropped or doubled character too.
	for i := range good {
		for _, bad := range []string{good[:i] + good[i+1:], good[:i] + good[i:i+1] + good[i:]} {
			if _, err := Parse(bad); !errors.Is(err, ErrChecksum) && !errors.Is(err, ErrNotP256) {
				t.Fatalf("%q: %v", bad, err)
			}
		}
	}
}

// singleCharErrors returns s with each position changed to another
// character a typist could produce there: the Bech32 alphabet in the data,
// letters and digits in the prefix.
func singleCharErrors(s string) []string {
	const charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
	var out []string
	for i := range s {
		alphabet := charset
		if i <= len(HRP) {
			alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
		}
		for _, c := range []byte(alphabet) {
			if c != s[i] {
				out = append(out, s[:i]+string(c)+s[i+1:])
			}
		}
	}
	return out
}

func TestRecipientVectors(t *testing.T) {
	data, err := os.ReadFile("testdata/recipients.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Valid []struct {
			Recipient, Legacy, Compressed string
		}
		Invalid []struct {
			Recipient, Error string
		}
	}
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	for _, c := range v.Valid {
		want, _ := hex.DecodeString(c.Compressed)
		for _, s := range []string{c.Recipient, c.Legacy} {
			got, err := ParseCompressed(s)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: %x, %v", s, got, err)
			}
		}
		if FormatCompressed(want) != c.Recipient {
			t.Errorf("%x formats as %s, want %s", want, FormatCompressed(want), c.Recipient)
		}
	}
	positions := map[int]bool{}
	for _, c := range v.Invalid {
		_, err := Parse(c.Recipient)
		if err == nil || !strings.Contains(err.Error(), c.Error) {
			t.Errorf("%s: %v, want %q", c.Recipient, err, c.Error)
		}
		for i := range c.Recipient {
			if i < len(v.Valid[0].Recipient) && c.Recipient[i] != v.Valid[0].Recipient[i] {
				positions[i] = true
			}
		}
	}
	if len(positions) != bech32m.Len(HRP, compSize) {
		t.Errorf("the vectors change %d positions of the first recipient, want all %d", len(positions), bech32m.Len(HRP, compSize))
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
	legacy := LegacyScheme + ":" + base64.RawURLEncoding.EncodeToString(Compress(priv.PublicKey()))
	notOnCurve := append([]byte{2}, bytes.Repeat([]byte{0xff}, 32)...)
	bad := []string{
		"", "ocikp-p256:", "ocikp-p256:AAAA", legacy + "A", legacy[:len(legacy)-1],
		"ocikp-p256:" + base64.RawURLEncoding.EncodeToString(notOnCurve),
		strings.Replace(legacy, "ocikp-p256:", "ocikp-p256:=", 1),
		good + "q", good[:len(good)-1], strings.ToUpper(good[:20]) + good[20:],
		FormatCompressed(notOnCurve),
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

// TestUpdateRecipientVectors writes testdata/recipients.json with -update:
// recipients of fixed keys in both forms, and the first one with one
// character changed at every position (each a checksum mismatch).
func TestUpdateRecipientVectors(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/recipients.json")
	}
	type valid struct{ Recipient, Legacy, Compressed string }
	type invalid struct{ Recipient, Error string }
	var v struct {
		Comment string
		Valid   []valid
		Invalid []invalid
	}
	v.Comment = "ocikp P-256 recipient strings (docs/format.md): valid ones in both forms, and the first with one character changed at each position"
	for _, d := range []byte{1, 2, 0xfe} {
		scalar := bytes.Repeat([]byte{d}, 32)
		priv, err := ecdh.P256().NewPrivateKey(scalar)
		if err != nil {
			t.Fatal(err)
		}
		comp := Compress(priv.PublicKey())
		v.Valid = append(v.Valid, valid{Format(priv.PublicKey()), LegacyScheme + ":" + base64.RawURLEncoding.EncodeToString(comp), hex.EncodeToString(comp)})
	}
	good := v.Valid[0].Recipient
	seen := map[int]bool{}
	for _, bad := range singleCharErrors(good) {
		i := 0
		for bad[i] == good[i] {
			i++
		}
		if !seen[i] {
			seen[i] = true
			v.Invalid = append(v.Invalid, invalid{bad, "checksum mismatch"})
		}
	}
	v.Invalid = append(v.Invalid,
		invalid{good[:len(good)-1], "checksum mismatch"},
		invalid{good + "q", "checksum mismatch"},
		invalid{strings.ToUpper(good[:11]) + good[11:], "mixes upper and lower case"},
		invalid{FormatCompressed(append([]byte{2}, bytes.Repeat([]byte{0xff}, 32)...)), "not a point on the curve"})
	out, _ := json.MarshalIndent(v, "", "  ")
	if err := os.WriteFile("testdata/recipients.json", append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
