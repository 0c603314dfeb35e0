package keyprovider

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/legacytest"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/protocol"
)

var opts = []byte(`{"symkey":"bGF5ZXIga2V5","digest":"sha256:00"}`)

type fixture struct {
	t     testing.TB
	st    *soft.Store
	recip map[string]string
	priv  map[string]*ecdh.PrivateKey
}

func newFixture(t *testing.T, names ...string) *fixture {
	f := &fixture{t: t, st: &soft.Store{Dir: t.TempDir()}, recip: map[string]string{}, priv: map[string]*ecdh.PrivateKey{}}
	for _, n := range names {
		priv, _ := ecdh.P256().GenerateKey(rand.Reader)
		k, err := f.st.Create(n, priv, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.recip[n], f.priv[n] = k.Recipient, priv
	}
	return f
}

func (f *fixture) wrap(p *Provider, params map[string][][]byte) []byte {
	f.t.Helper()
	ann, err := p.Wrap(&protocol.KeyWrapParams{EC: &protocol.EncryptConfig{Parameters: params}, Optsdata: opts})
	if err != nil {
		f.t.Fatal(err)
	}
	return ann
}

func unwrap(p *Provider, ann []byte, params map[string][][]byte) ([]byte, error) {
	return p.Unwrap(&protocol.KeyUnwrapParams{DC: &protocol.DecryptConfig{Parameters: params}, Annotation: ann})
}

func vals(s ...string) [][]byte {
	var out [][]byte
	for _, v := range s {
		out = append(out, []byte(v))
	}
	return out
}

func TestWrapUnwrapSelection(t *testing.T) {
	f := newFixture(t, "alice", "bob", "carol")
	p := &Provider{Name: "ocikp", Store: f.st}
	other := vals("LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t") // another scheme's material
	ann := f.wrap(p, map[string][][]byte{"ocikp": vals(f.recip["alice"], f.recip["bob"]), "pgp": other})

	cases := []struct {
		name   string
		params map[string][][]byte
		ok     bool
	}{
		{"containerd: no entry", nil, true},
		{"skopeo bare: Enabled", map[string][][]byte{"ocikp": vals("Enabled")}, true},
		{"named bob", map[string][][]byte{"ocikp": vals("bob")}, true},
		{"named carol only", map[string][][]byte{"ocikp": vals("carol")}, false},
		{"named carol and alice", map[string][][]byte{"ocikp": vals("carol", "alice")}, true},
		{"unknown name", map[string][][]byte{"ocikp": vals("dave")}, false},
		{"other entries ignored", map[string][][]byte{"pgp": other}, true},
	}
	for _, c := range cases {
		got, err := unwrap(p, ann, c.params)
		if c.ok && (err != nil || !bytes.Equal(got, opts)) {
			t.Errorf("%s: %v", c.name, err)
		}
		if !c.ok && err == nil {
			t.Errorf("%s: decrypted", c.name)
		}
	}
}

func TestWrongKeyMessage(t *testing.T) {
	f := newFixture(t, "alice")
	p := &Provider{Name: "ocikp", Store: f.st}
	ann := f.wrap(p, map[string][][]byte{"ocikp": vals(f.recip["alice"])})
	g := newFixture(t, "zed", "yan")
	_, err := unwrap(&Provider{Name: "ocikp", Store: g.st}, ann, nil)
	if err == nil {
		t.Fatal("decrypted with the wrong keystore")
	}
	msg := err.Error() + "\n" + strings.Join(hint.Of(err), "\n")
	for _, want := range []string{"1 recipient: p256 tag ", g.st.Dir, "yan, zed"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	// A key file that could not be used is named in the error.
	os.Chmod(filepath.Join(g.st.Dir, "yan.key"), 0o644)
	_, err = unwrap(&Provider{Name: "ocikp", Store: g.st}, ann, nil)
	if err == nil || !strings.Contains(err.Error(), "yan.key: private key file is accessible to group or others") {
		t.Fatalf("unreadable key not reported: %v", err)
	}
}

func TestNameDetection(t *testing.T) {
	f := newFixture(t, "alice", "bob")
	p := &Provider{Store: f.st} // no --name
	ann := f.wrap(p, map[string][][]byte{"whatever": vals(f.recip["alice"]), "jwe": vals("eyJhbGciOi")})
	if got, err := unwrap(p, ann, map[string][][]byte{"whatever": vals("alice")}); err != nil || !bytes.Equal(got, opts) {
		t.Fatalf("detected-name unwrap: %v", err)
	}
	// An entry naming a local key selects it, even without --name.
	if _, err := unwrap(p, ann, map[string][][]byte{"whatever": vals("bob")}); err == nil {
		t.Fatal("selection by key name ignored without --name")
	}
	// Another provider's entry holding an apple-se URL that is not a
	// decryption key (an encryption URL) is not ocikp's: the keystore
	// is tried as with no parameters.
	enc := "apple-se://se?mode=encrypt&pub=" + base64.RawURLEncoding.EncodeToString(make([]byte, 65))
	if got, err := unwrap(p, ann, map[string][][]byte{"other": vals(enc)}); err != nil || !bytes.Equal(got, opts) {
		t.Fatalf("an apple-se encryption URL was taken as a decryption key: %v", err)
	}
	// Two entries of ocikp recipients: ambiguous.
	_, err := p.Wrap(&protocol.KeyWrapParams{EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{
		"a": vals(f.recip["alice"]), "b": vals(f.recip["bob"])}}, Optsdata: opts})
	if err == nil || !strings.Contains(err.Error(), "2 provider names") {
		t.Fatalf("ambiguous: %v", err)
	}
	// No recipients at all.
	_, err = p.Wrap(&protocol.KeyWrapParams{EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{"jwe": vals("x")}}, Optsdata: opts})
	if err == nil {
		t.Fatal("wrapped for nobody")
	}
}

func TestWrapErrors(t *testing.T) {
	t.Setenv("OCIKP_PLUGIN_DIR", filepath.Join(t.TempDir(), "no-plugins"))
	f := newFixture(t, "alice")
	p := &Provider{Name: "ocikp", Store: f.st}
	for name, w := range map[string]*protocol.KeyWrapParams{
		"empty optsdata":     {EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{"ocikp": vals(f.recip["alice"])}}},
		"no entry":           {EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{"other": vals(f.recip["alice"])}}, Optsdata: opts},
		"bad recipient":      {EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{"ocikp": vals("ocikp-p256:AAAA")}}, Optsdata: opts},
		"kms plugin missing": {EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{"ocikp": vals("gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k")}}, Optsdata: opts},
	} {
		if _, err := p.Wrap(w); err == nil {
			t.Errorf("%s: wrapped", name)
		}
	}
	// A key name works as a recipient when the provider name is known.
	ann := f.wrap(p, map[string][][]byte{"ocikp": vals("alice")})
	if _, err := unwrap(p, ann, nil); err != nil {
		t.Fatal(err)
	}
}

func TestKeyFileParameter(t *testing.T) {
	f := newFixture(t, "alice")
	p := &Provider{Name: "ocikp", Store: f.st}
	ann := f.wrap(p, map[string][][]byte{"ocikp": vals(f.recip["alice"])})
	// The keystore file itself, copied elsewhere, and an empty store.
	data, _ := os.ReadFile(filepath.Join(f.st.Dir, "alice.key"))
	path := filepath.Join(t.TempDir(), "alice.key")
	os.WriteFile(path, data, 0o600)
	empty := &Provider{Name: "ocikp", Store: &soft.Store{Dir: t.TempDir()}}
	if got, err := unwrap(empty, ann, map[string][][]byte{"ocikp": vals(path)}); err != nil || !bytes.Equal(got, opts) {
		t.Fatalf("key file path: %v", err)
	}
	os.Chmod(path, 0o644)
	_, err := unwrap(empty, ann, map[string][][]byte{"ocikp": vals(path)})
	if err == nil || strings.Contains(err.Error(), path) {
		t.Fatalf("world-readable key file: %v", err)
	}
}

func TestPassphraseProtectedKey(t *testing.T) {
	st := &soft.Store{Dir: t.TempDir()}
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	k, err := st.Create("locked", priv, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{Name: "ocikp", Store: st}
	ann, _ := p.Wrap(&protocol.KeyWrapParams{EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{"ocikp": vals(k.Recipient)}}, Optsdata: opts})
	_, err = unwrap(p, ann, nil)
	if err == nil || !errors.Is(err, soft.ErrPassphraseNeeded) {
		t.Fatalf("no passphrase: %v", err)
	}
	p.Passphrase = func(string) ([]byte, error) { return []byte("pw"), nil }
	if got, err := unwrap(p, ann, nil); err != nil || !bytes.Equal(got, opts) {
		t.Fatalf("with passphrase: %v", err)
	}
}

func TestLegacyApple(t *testing.T) {
	f := newFixture(t, "old", "new")
	p := &Provider{Name: "ocikp", Store: f.st}
	blob, _ := legacytest.AppleBlob(t, f.priv["old"].PublicKey(), opts, false)
	if got, err := unwrap(p, blob, nil); err != nil || !bytes.Equal(got, opts) {
		t.Fatalf("legacy: %v", err)
	}
	if _, err := unwrap(p, blob, map[string][][]byte{"ocikp": vals("new")}); err == nil {
		t.Fatal("legacy blob opened by the wrong key")
	}
}

func TestUnwrapOtherFormats(t *testing.T) {
	f := newFixture(t, "alice")
	p := &Provider{Name: "ocikp", Store: f.st}
	for name, blob := range map[string]string{
		"gcp seed": `{"key_url":"gcpkms://projects/p","wrapped_key":"AAAA","wrap_type":"AES"}`,
		"garbage":  `hello`,
		"v2":       `{"v":2}`,
	} {
		if _, err := unwrap(p, []byte(blob), nil); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
	// An empty keystore is not an error in itself (a node may hold only KMS
	// credentials); failing to open a layer with it says so.
	ann := f.wrap(p, map[string][][]byte{"ocikp": vals(f.recip["alice"])})
	empty := &Provider{Name: "ocikp", Store: &soft.Store{Dir: t.TempDir()}}
	_, err := unwrap(empty, ann, nil)
	if err == nil || !strings.Contains(strings.Join(hint.Of(err), "\n"), "has no usable keys") {
		t.Fatalf("empty keystore: %v %v", err, hint.Of(err))
	}
	var _ = envelope.Version
}

// For a remote client (the service), errors name no keystore path and no
// key names, and a file path as decryption key is refused without being
// opened; a local caller gets the full message.
func TestRemoteErrorsRedacted(t *testing.T) {
	f := newFixture(t, "alice-private-name", "bob-private-name", "carol-private-name")
	local := &Provider{Name: "ocikp", Store: f.st}
	remote := &Provider{Name: "ocikp", Store: f.st, Remote: true}
	stranger := newFixture(t, "stranger")
	ann := stranger.wrap(&Provider{Name: "ocikp", Store: stranger.st}, map[string][][]byte{"ocikp": vals(stranger.recip["stranger"])})
	forCarol := f.wrap(local, map[string][][]byte{"ocikp": vals(f.recip["carol-private-name"])})
	os.Chmod(filepath.Join(f.st.Dir, "bob-private-name.key"), 0o644)
	// carol's key sealed under a passphrase nobody gives: its tag matches, its load fails.
	os.Remove(filepath.Join(f.st.Dir, "carol-private-name.key"))
	if _, err := f.st.Create("carol-private-name", f.priv["carol-private-name"], []byte("pw")); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(stranger.st.Dir, "stranger.key")
	cases := []struct {
		name   string
		ann    []byte
		params map[string][][]byte
		says   string
	}{
		{"no key opens it", ann, nil, "tried 2 key(s) of the service's keystore"},
		{"a key fails", forCarol, nil, "keystore key(s) could not be used; the service's log says why"},
		{"unknown key name", ann, map[string][][]byte{"ocikp": vals("nobody")}, "no key of that name in the service's keystore"},
		{"a file path", ann, map[string][][]byte{"ocikp": vals(keyFile)}, "not file paths"},
	}
	for _, c := range cases {
		_, err := unwrap(remote, c.ann, c.params)
		if err == nil {
			t.Fatalf("%s: opened", c.name)
		}
		msg := err.Error() + " | " + strings.Join(hint.Of(err), " | ")
		if !strings.Contains(msg, c.says) {
			t.Errorf("%s: %s", c.name, msg)
		}
		for _, secret := range []string{f.st.Dir, "alice-private-name", "bob-private-name", "carol-private-name", stranger.st.Dir} {
			if strings.Contains(msg, secret) {
				t.Errorf("%s: the remote error names %q: %s", c.name, secret, msg)
			}
		}
		// The local caller's message names what helps the person at the terminal.
		if _, lerr := unwrap(local, c.ann, c.params); c.name == "no key opens it" && (lerr == nil || !strings.Contains(strings.Join(hint.Of(lerr), " "), f.st.Dir)) {
			t.Errorf("local message lost the keystore: %v", lerr)
		}
	}
	os.Chmod(f.st.Dir, 0o777)
	_, err := unwrap(remote, ann, nil)
	if err == nil || strings.Contains(err.Error(), f.st.Dir) || !strings.Contains(err.Error(), "the service's keystore could not be read") {
		t.Fatalf("untrusted keystore: %v", err)
	}
}
