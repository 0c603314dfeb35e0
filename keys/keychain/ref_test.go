package keychain_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocikp/ocikp/keys/keychain"
	"github.com/ocikp/ocikp/keys/keychain/keychaintest"
	"github.com/ocikp/ocikp/p256"
)

func newRef(t testing.TB, name string) *keychain.Ref {
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	return &keychain.Ref{Name: name, Tag: "ocikp." + name, Recipient: p256.Format(priv.PublicKey()), Created: time.Unix(1700000000, 0).UTC()}
}

func TestRefs(t *testing.T) {
	rs := keychain.RefsIn(t.TempDir())
	if len(rs.List()) != 0 || rs.Has("a") {
		t.Fatal("empty store lists keys")
	}
	r := newRef(t, "a")
	if err := rs.Put(r); err != nil {
		t.Fatal(err)
	}
	if err := rs.Put(newRef(t, "a")); err == nil {
		t.Fatal("a reference was replaced")
	}
	got, err := rs.Get("a")
	if err != nil || got.Recipient != r.Recipient || got.Tag != r.Tag {
		t.Fatalf("get: %+v %v", got, err)
	}
	fi, _ := os.Stat(filepath.Join(rs.Dir, "a.json"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	os.WriteFile(filepath.Join(rs.Dir, "bad.json"), []byte("{"), 0o600)
	l := rs.List()
	if len(l) != 2 || l[0].Err != nil || l[1].Err == nil {
		t.Fatalf("list: %+v", l)
	}
	if err := rs.Remove("a"); err != nil || rs.Has("a") {
		t.Fatal(err)
	}
}

func TestParseRefRejects(t *testing.T) {
	good, _ := newRef(t, "k").Marshal()
	if _, err := keychain.ParseRef(good); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{
		"unknown field": strings.Replace(string(good), `"name"`, `"extra":1,"name"`, 1),
		"version":       strings.Replace(string(good), `"v": 1`, `"v": 2`, 1),
		"bad name":      strings.Replace(string(good), `"name": "k"`, `"name": "../k"`, 1),
		"empty tag":     strings.Replace(string(good), `"tag": "ocikp.k"`, `"tag": ""`, 1),
		"recipient":     strings.Replace(string(good), `"recipient": "ocikp1p2561q`, `"recipient": "ocikp1p2561p`, 1),
		"trailing":      string(good) + "{}",
		"huge":          string(good) + strings.Repeat(" ", 9000),
	} {
		if _, err := keychain.ParseRef([]byte(s)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseRef(f *testing.F) {
	good, _ := newRef(f, "k").Marshal()
	f.Add(good)
	f.Add([]byte(`{"v":1,"name":"k","tag":"t","recipient":"x"}`))
	f.Add([]byte(`{}`))
	for _, pass := range [][]byte{nil, []byte("pw")} {
		ref, _, err := keychain.New(&keychaintest.Fake{}).CreateHybrid("h", keychain.Spec{Tag: "t"}, pass)
		if err != nil {
			f.Fatal(err)
		}
		b, _ := ref.Marshal()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := keychain.ParseRef(b)
		if err != nil {
			return
		}
		if len(r.Compressed()) != 33 || r.Compressed()[0]&^1 != 2 {
			t.Fatal("accepted a reference without a compressed point")
		}
		again, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := keychain.ParseRef(again); err != nil {
			t.Fatalf("re-encoded reference refused: %v", err)
		}
	})
}

// A records directory that cannot be read is reported, not taken for
// "no Keychain keys".
func TestRefsUnreadableDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keychain")
	if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := (&keychain.Refs{Dir: dir}).List()
	if len(got) != 1 || got[0].Err == nil || !strings.Contains(got[0].Err.Error(), "reading Keychain records") || got[0].Name != "keychain/" {
		t.Fatalf("List of an unreadable directory: %+v", got)
	}
	if got := (&keychain.Refs{Dir: filepath.Join(t.TempDir(), "absent")}).List(); len(got) != 0 {
		t.Fatalf("List of an absent directory: %+v", got)
	}
}
