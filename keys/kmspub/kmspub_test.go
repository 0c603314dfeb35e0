package kmspub

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"testing"
	"time"
)

func TestCacheAndWrap(t *testing.T) {
	priv, _ := rsa.GenerateKey(rand.Reader, 2048)
	c := &Cache{Dir: t.TempDir() + "/kms"}
	url := "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1"
	if _, err := c.Get(url); err != ErrNotCached {
		t.Fatalf("empty cache: %v", err)
	}
	e := &Entry{URL: url, StanzaType: "gcpkms-rsa", KID: url, N: priv.N.Bytes(), E: priv.E, Fetched: time.Now()}
	if err := c.Put(e); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(url)
	if err != nil || got.Bits() != 2048 {
		t.Fatalf("get: %v", err)
	}
	r, err := got.Recipient()
	if err != nil {
		t.Fatal(err)
	}
	fk := bytes.Repeat([]byte{4}, 32)
	s, err := r.Wrap(fk)
	if err != nil || s.Type != "gcpkms-rsa" || s.KID != url {
		t.Fatalf("wrap: %v %+v", err, s)
	}
	pt, err := priv.Decrypt(rand.Reader, s.Key, &rsa.OAEPOptions{Hash: crypto.SHA256})
	if err != nil || !bytes.Equal(pt, fk) {
		t.Fatalf("decrypt: %v", err)
	}
	if l := c.List(); len(l) != 1 || l[0].URL != url {
		t.Fatalf("list %v", l)
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	if err := c.Put(&Entry{URL: "x", StanzaType: "t", KID: "x", N: small.N.Bytes(), E: 65537}); err == nil {
		t.Fatal("cached a 1024-bit key")
	}
}

func FuzzParse(f *testing.F) {
	priv, _ := rsa.GenerateKey(rand.Reader, 2048)
	good, _ := json.Marshal(&Entry{URL: "u", StanzaType: "t", KID: "k", N: priv.N.Bytes(), E: priv.E})
	f.Add(good)
	f.Add([]byte(`{"url":"u","stanza_type":"t","kid":"k","n":"AQ==","e":3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Parse(b)
		if err != nil {
			return
		}
		if _, err := e.Recipient(); err != nil {
			t.Fatalf("parsed but unusable: %v", err)
		}
	})
}
