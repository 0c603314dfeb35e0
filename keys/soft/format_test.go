package soft

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/pq"
)

// Key files written by earlier releases (testdata/old-*.key, seed 0x42…,
// sealed ones under "pw") still load and open, and open again once
// rewritten.
func TestOldFormatKeyFiles(t *testing.T) {
	seed := bytes.Repeat([]byte{0x42}, 32)
	files, _ := filepath.Glob("testdata/old-*.key")
	if len(files) != 6 {
		t.Fatalf("%d old key files, want 6", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParseKeyFile(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		pass := []byte(nil)
		if strings.Contains(f, "sealed") {
			pass = []byte("pw")
		}
		for gen := range 2 {
			if k.Protected() != (pass != nil) {
				t.Fatalf("%s (generation %d): protected %v", f, gen, k.Protected())
			}
			if kind := pq.KindOf(k.Type); kind != nil {
				priv, err := kind.PrivateKey(seed)
				if err != nil {
					t.Fatal(err)
				}
				pub := priv.PublicKey().Bytes()
				if !bytes.Equal(k.Public, pub) || k.RecipientString() != kind.Format(pub) {
					t.Fatalf("%s (generation %d): wrong public key", f, gen)
				}
				got, err := k.HybridKey(pass)
				if err != nil || !bytes.Equal(got.Key.PublicKey().Bytes(), pub) {
					t.Fatalf("%s (generation %d): %v", f, gen, err)
				}
			} else if _, err := k.PrivateKey(pass); err != nil {
				t.Fatalf("%s (generation %d): %v", f, gen, err)
			}
			again, err := k.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if k, err = ParseKeyFile(again); err != nil {
				t.Fatalf("%s rewritten: %v", f, err)
			}
		}
	}
}

// A new post-quantum key file is read by the releases before the one-pass
// walk (their parser is parseKeyFileOld): it keeps the recipient string
// beside the public key, since key files move between machines that run
// different releases.
func TestHybridKeyFileReadByOlderReleases(t *testing.T) {
	for _, kind := range pq.Kinds() {
		seed, _, _ := kind.GenerateKey()
		for _, pass := range []string{"", "pw"} {
			k, err := NewHybridKeyFile("k", kind, seed, []byte(pass))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := k.Marshal()
			old, err := parseKeyFileOld(b)
			if err != nil {
				t.Fatalf("%s key file (passphrase %q): an older release refuses it: %v", kind.Type, pass, err)
			}
			if !bytes.Equal(old.Public, k.Public) || old.RecipientString() != kind.Format(k.Public) {
				t.Fatalf("%s key file (passphrase %q): an older release reads another key", kind.Type, pass)
			}
			got, err := ParseKeyFile(b)
			if err != nil || got.RecipientString() != kind.Format(k.Public) {
				t.Fatalf("%s: read back: %v", kind.Type, err)
			}
			if pass != "" {
				for _, r := range []*KeyFile{got, old} {
					if _, err := r.HybridKey([]byte(pass)); err != nil {
						t.Fatalf("%s sealed: %v", kind.Type, err)
					}
				}
			}
		}
	}
}

// The walk reads key files as the old parser did: the same key from what
// both accept, and refuses what it refused, but for post-quantum files
// without a recipient string (which it reads from the public key alone).
func FuzzParseKeyFileDifferential(f *testing.F) {
	old, _ := filepath.Glob("testdata/old-*.key")
	for _, name := range old {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
			f.Add(bytes.Replace(b, []byte(`"recipient"`), []byte(`"x"`), 1))
		}
	}
	f.Add([]byte(`{"format":"ocikp-key-v1","name":"a","type":"p256","recipient":null,"encrypted":{"kdf":null},"private":"AA=="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseKeyFile(b)
		ko, oerr := parseKeyFileOld(b)
		switch {
		case err != nil && oerr == nil:
			t.Fatalf("refused what the old parser read: %v", err)
		case err == nil && oerr != nil:
			if pq.KindOf(k.Type) == nil || k.Recipient != "" || !strings.Contains(oerr.Error(), `invalid "public" or "recipient"`) {
				t.Fatalf("read what the old parser refused (%v)", oerr)
			}
		case err == nil:
			if pq.KindOf(k.Type) != nil && !k.Protected() {
				ko.Recipient = "" // not kept: RecipientString is the public key's
			}
			if !reflect.DeepEqual(k, ko) {
				t.Fatalf("read differently:\n got %+v\nwant %+v", k, ko)
			}
		}
	})
}
