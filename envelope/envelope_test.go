package envelope_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/p256"
)

func newKey(t testing.TB) (*ecdh.PrivateKey, *p256.Recipient, *p256.Identity) {
	t.Helper()
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r, err := p256.NewRecipient(priv.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return priv, r, p256.NewIdentityFromKey("k", priv)
}

var secret = []byte(`{"symkey":"c2VjcmV0IGxheWVyIGtleSBmb3IgdGVzdHMgb25seSEhIQ==","digest":"sha256:0000","cipheroptions":{"nonce":"AAAAAAAAAAAAAAAAAAAAAA=="}}`)

func TestSealOpen(t *testing.T) {
	_, r, id := newKey(t)
	blob, err := envelope.Seal(secret, r)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, secret[:20]) {
		t.Fatal("blob contains the secret in clear")
	}
	e, err := envelope.Parse(blob)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatalf("got %q", got)
	}
	// Marshal of a parsed envelope reproduces the blob byte for byte.
	again, _ := e.Marshal()
	if !bytes.Equal(again, blob) {
		t.Fatal("re-marshalled blob differs")
	}
}

func TestMultiRecipient(t *testing.T) {
	var rs []envelope.Recipient
	var ids []*p256.Identity
	for range 4 {
		_, r, id := newKey(t)
		rs = append(rs, r)
		ids = append(ids, id)
	}
	blob, err := envelope.Seal(secret, rs...)
	if err != nil {
		t.Fatal(err)
	}
	e, err := envelope.Parse(blob)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Recipients) != 4 {
		t.Fatalf("%d stanzas", len(e.Recipients))
	}
	for i, id := range ids {
		got, err := e.Open(id)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("identity %d: %v", i, err)
		}
	}
	_, _, stranger := newKey(t)
	_, err = e.Open(stranger)
	var nie *envelope.NoIdentityError
	if !errors.As(err, &nie) {
		t.Fatalf("stranger: %v", err)
	}
	if !strings.Contains(err.Error(), "4 recipients: p256 tag ") {
		t.Fatalf("error does not list the hints: %v", err)
	}
}

func TestSealRefusesNoRecipients(t *testing.T) {
	if _, err := envelope.Seal(secret); err == nil {
		t.Fatal("sealed for nobody")
	}
}

// Every single-bit flip anywhere in the blob must make it fail to open,
// cleanly: an error, never a panic, never the secret.
func TestEveryBitFlipFails(t *testing.T) {
	_, r1, id1 := newKey(t)
	_, r2, _ := newKey(t)
	blob, err := envelope.Seal(secret, r1, r2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range blob {
		for bit := range 8 {
			b := bytes.Clone(blob)
			b[i] ^= 1 << bit
			e, err := envelope.Parse(b)
			if err != nil {
				continue
			}
			if got, err := e.Open(id1); err == nil {
				t.Fatalf("flip of bit %d of byte %d (%q) still opens: %q", bit, i, blob[i], got)
			}
		}
	}
}

func TestRejectsNonCanonical(t *testing.T) {
	_, r, _ := newKey(t)
	blob, _ := envelope.Seal(secret, r)
	var m map[string]any
	json.Unmarshal(blob, &m)
	cases := map[string][]byte{
		"whitespace":   append([]byte(" "), blob...),
		"upper key":    bytes.Replace(blob, []byte(`"payload"`), []byte(`"Payload"`), 1),
		"unknown key":  bytes.Replace(blob, []byte(`{"v":1,`), []byte(`{"v":1,"x":1,`), 1),
		"no mac":       bytes.Replace(blob, []byte(`"mac"`), []byte(`"mak"`), 1),
		"no stanzas":   []byte(`{"v":1,"recipients":[],"payload":"AAAA","mac":"AAAA"}`),
		"v as string":  bytes.Replace(blob, []byte(`"v":1`), []byte(`"v":"1"`), 1),
		"too large":    bytes.Repeat([]byte("x"), envelope.MaxBlobSize+1),
		"stanza extra": bytes.Replace(blob, []byte(`{"type":"p256",`), []byte(`{"type":"p256","zz":"",`), 1),
	}
	for name, b := range cases {
		if _, err := envelope.Parse(b); !errors.Is(err, envelope.ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
	// Not an envelope at all (legacy formats are tried next).
	for _, b := range []string{``, `[]`, `{}`, `{"EphPub":"x"}`, `null`} {
		if _, err := envelope.Parse([]byte(b)); !errors.Is(err, envelope.ErrNotEnvelope) {
			t.Errorf("%q: got %v, want ErrNotEnvelope", b, err)
		}
	}
}

func TestUnsupportedVersion(t *testing.T) {
	_, r, _ := newKey(t)
	blob, _ := envelope.Seal(secret, r)
	b := bytes.Replace(blob, []byte(`{"v":1,`), []byte(`{"v":2,`), 1)
	_, err := envelope.Parse(b)
	if !errors.Is(err, envelope.ErrUnsupportedVersion) || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("got %v", err)
	}
}

func TestRecipientListIsAuthenticated(t *testing.T) {
	_, r1, id1 := newKey(t)
	_, r2, _ := newKey(t)
	blob1, _ := envelope.Seal(secret, r1)
	blob2, _ := envelope.Seal(secret, r2)
	e1, _ := envelope.Parse(blob1)
	e2, _ := envelope.Parse(blob2)
	// Splice a foreign stanza into e1: the MAC no longer matches.
	e1.Recipients = append(e1.Recipients, e2.Recipients[0])
	if _, err := e1.Open(id1); !errors.Is(err, envelope.ErrTampered) {
		t.Fatalf("spliced stanza: got %v, want ErrTampered", err)
	}
}

func TestReseal(t *testing.T) {
	_, r1, id1 := newKey(t)
	_, r2, id2 := newKey(t)
	blob, _ := envelope.Seal(secret, r1)
	e, _ := envelope.Parse(blob)
	fk, err := e.UnwrapFileKey(id1)
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Clone(e.Payload)
	if err := e.Reseal(fk, r2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(payload, e.Payload) {
		t.Fatal("reseal changed the payload")
	}
	out, _ := e.Marshal()
	e2, err := envelope.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e2.Open(id1); err == nil {
		t.Fatal("dropped recipient still opens")
	}
	if got, err := e2.Open(id2); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("new recipient: %v", err)
	}
}

// Seal refuses, with a clear error, what Parse would refuse.
func TestSealRefusesWhatParseRefuses(t *testing.T) {
	_, r, id := newKey(t)
	blob, err := envelope.Seal(make([]byte, envelope.MaxSecretSize), r)
	if err != nil {
		t.Fatalf("the largest secret: %v", err)
	}
	e, err := envelope.Parse(blob)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.Open(id); err != nil || len(got) != envelope.MaxSecretSize {
		t.Fatalf("open: %v", err)
	}
	for _, n := range []int{envelope.MaxSecretSize + 1, 7000} {
		if _, err := envelope.Seal(make([]byte, n), r); err == nil || !strings.Contains(err.Error(), "holds at most") {
			t.Fatalf("%d-byte secret: %v", n, err)
		}
	}
	long := fixed{envelope.Stanza{Type: "x", KID: strings.Repeat("k", 9000), Key: []byte{1}}}
	if _, err := envelope.Seal(secret, long); err == nil || !strings.Contains(err.Error(), "would not be readable") {
		t.Fatalf("9000-byte kid: %v", err)
	}
}
