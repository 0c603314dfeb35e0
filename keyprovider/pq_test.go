package keyprovider

import (
	"bytes"
	"crypto/ecdh"
	"crypto/mlkem"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/keys/keychain"
	"github.com/ocikp/ocikp/keys/keychain/keychaintest"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/pq"
	"github.com/ocikp/ocikp/protocol"
)

// addPQ stores a post-quantum key and returns its recipient string.
func (f *fixture) addPQ(name, typ string, pass []byte) string {
	f.t.Helper()
	kind := pq.KindOf(typ)
	seed, _, err := kind.GenerateKey()
	if err != nil {
		f.t.Fatal(err)
	}
	k, err := soft.NewHybridKeyFile(name, kind, seed, pass)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.st.Put(name, k); err != nil {
		f.t.Fatal(err)
	}
	f.recip[name] = k.RecipientString()
	return f.recip[name]
}

// Post-quantum keystore keys: by recipient string and by name, opened
// with no decryption parameters, by name, and by key file path; each
// stanza says its type.
func TestPostQuantumKeys(t *testing.T) {
	f := newFixture(t)
	xw := f.addPQ("xwing", pq.XWing, nil)
	mp := f.addPQ("hybrid", pq.MLKEMP256, []byte("pw"))
	p := &Provider{Name: "ocikp", Store: f.st, Passphrase: func(string) ([]byte, error) { return []byte("pw"), nil }}
	for _, enc := range [][]string{{xw}, {mp}, {"xwing", "hybrid"}, {xw, mp}} {
		ann := f.wrap(p, map[string][][]byte{"ocikp": vals(enc...)})
		env, err := envelope.Parse(ann)
		if err != nil {
			t.Fatal(err)
		}
		if len(env.Recipients) != len(enc) {
			t.Fatalf("%d stanzas for %d recipients", len(env.Recipients), len(enc))
		}
		for _, s := range env.Recipients {
			if pq.KindOf(s.Type) == nil || len(s.Tag) != 4 {
				t.Fatalf("stanza %s", s.Hint())
			}
		}
		for name, dc := range map[string]map[string][][]byte{
			"no parameters": nil, "Enabled": {"ocikp": vals(Enabled)},
			"by name": {"ocikp": vals("xwing", "hybrid")},
			"by file": {"ocikp": vals(f.st.Dir+"/xwing.key", f.st.Dir+"/hybrid.key")},
		} {
			if got, err := unwrap(p, ann, dc); err != nil || !bytes.Equal(got, opts) {
				t.Fatalf("%v, %s: %v", enc, name, err)
			}
		}
	}
	// Without the passphrase the sealed key says so.
	ann := f.wrap(p, map[string][][]byte{"ocikp": vals(mp)})
	locked := &Provider{Name: "ocikp", Store: f.st}
	_, err := unwrap(locked, ann, nil)
	if !errors.Is(err, soft.ErrPassphraseNeeded) {
		t.Fatalf("sealed: %v", err)
	}
}

// The mixing rule: post-quantum with classical-only recipients (P-256;
// RSA and Azure through KMS) is refused, naming both kinds, unless the
// provider allows it; symmetric KMS keys count as post-quantum.
func TestMixingRule(t *testing.T) {
	f := newFixture(t, "classic")
	xw := f.addPQ("xwing", pq.XWing, nil)
	p := &Provider{Name: "ocikp", Store: f.st}
	defer p.Close(true)
	mixed := map[string][][]byte{"ocikp": vals(xw, f.recip["classic"])}
	_, err := p.Wrap(wrapParams(mixed))
	if !errors.Is(err, ErrMixedStrength) || !strings.Contains(err.Error(), "post-quantum: mlkem768x25519") ||
		!strings.Contains(err.Error(), "classical-only: p256") {
		t.Fatalf("mixed: %v", err)
	}
	if h := strings.Join(hint.Of(err), "\n"); !strings.Contains(h, "--allow-classical") {
		t.Fatalf("hints: %s", h)
	}
	// Azure Key Vault wraps with RSA: classical, refused beside X-Wing
	// before any plugin runs.
	_, err = p.Wrap(wrapParams(map[string][][]byte{"ocikp": vals(xw, "azurekms://v.vault.azure.net/keys/k")}))
	if !errors.Is(err, ErrMixedStrength) || !strings.Contains(err.Error(), "classical-only: azurekms") {
		t.Fatalf("azure: %v", err)
	}
	if n := p.plugins().Running(); n != 0 {
		t.Fatalf("%d plugins started for a refused wrap", n)
	}
	// Each kind alone is fine; so is the mix when allowed.
	for _, enc := range [][]string{{xw}, {f.recip["classic"]}} {
		f.wrap(p, map[string][][]byte{"ocikp": vals(enc...)})
	}
	allow := &Provider{Name: "ocikp", Store: f.st, AllowClassical: true}
	ann := f.wrap(allow, mixed)
	if got, err := unwrap(allow, ann, map[string][][]byte{"ocikp": vals("classic")}); err != nil || !bytes.Equal(got, opts) {
		t.Fatalf("allowed mix: %v", err)
	}
}

// A hardware-bound hybrid: P-256 half in the (fake) Keychain, ML-KEM half
// in the keystore record, sealed under a passphrase. It opens its layers
// with no parameters and by name; a record whose ML-KEM half is another
// key's, or whose Keychain key is another one, opens nothing, with the
// wrong-key error.
func TestKeychainHybrid(t *testing.T) {
	fake := &keychaintest.Fake{Entitled: true}
	kc := keychain.New(fake)
	f := newFixture(t)
	p := &Provider{Name: "ocikp", Store: f.st, Keychain: kc, Passphrase: func(string) ([]byte, error) { return []byte("pw"), nil }}
	ref, _, err := kc.CreateHybrid("mac", keychain.Spec{Tag: "ocikp.mac", SecureEnclave: true}, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Refs().Put(ref); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ref.RecipientString(), "ocikp1mlkem768p2561") || !ref.Protected() {
		t.Fatalf("record: %s…, protected %v", ref.RecipientString()[:24], ref.Protected())
	}
	for _, enc := range []string{"mac", ref.RecipientString()} {
		ann := f.wrap(p, map[string][][]byte{"ocikp": vals(enc)})
		for name, dc := range map[string]map[string][][]byte{"no parameters": nil, "by name": {"ocikp": vals("mac")}} {
			before := fake.ECDHs
			if got, err := unwrap(p, ann, dc); err != nil || !bytes.Equal(got, opts) {
				t.Fatalf("%s: %v", name, err)
			}
			if fake.ECDHs != before+1 {
				t.Fatalf("%d Keychain ECDHs for one stanza", fake.ECDHs-before)
			}
		}
	}
	ann := f.wrap(p, map[string][][]byte{"ocikp": vals("mac")})

	// Wrong halves: the Keychain key with another ML-KEM key, the ML-KEM
	// key with another Keychain key. Neither opens the layer, tagged
	// (not even tried) or untagged (tried, refused), and the envelope
	// says no key opens it rather than that it was tampered with.
	other, _, err := kc.CreateHybrid("other", keychain.Spec{Tag: "ocikp.other"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := ref.Private(kc, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := other.Private(kc, nil)
	if err != nil {
		t.Fatal(err)
	}
	env, _ := envelope.Parse(ann)
	for name, halves := range map[string]pq.Private{
		"wrong ML-KEM half":    {MLKEM: theirs.MLKEM, Classical: mine.Classical},
		"wrong classical half": {MLKEM: mine.MLKEM, Classical: theirs.Classical},
	} {
		id, err := pq.NewIdentityFromKey(name, halves)
		if err != nil {
			t.Fatal(err)
		}
		_, err = env.Open(id)
		var nie *envelope.NoIdentityError
		if !errors.As(err, &nie) || errors.Is(err, envelope.ErrTampered) {
			t.Fatalf("%s: %v", name, err)
		}
		untagged := *env.Recipients[0]
		untagged.Tag = nil
		if _, err := id.Unwrap(&untagged); !errors.Is(err, envelope.ErrIncorrectIdentity) {
			t.Fatalf("%s, untagged: %v", name, err)
		}
	}
	// A record whose classical half is not its recipient's is refused
	// when read; one whose ML-KEM half is another key's fails when used,
	// saying so.
	data, _ := ref.Marshal()
	swapped := strings.Replace(string(data), ref.Classical, other.Classical, 1)
	if _, err := keychain.ParseRef([]byte(swapped)); err == nil {
		t.Fatal("a record whose classical half is not its recipient's was accepted")
	}
	otherData, _ := other.Marshal()
	var mixed map[string]any
	json.Unmarshal(data, &mixed)
	var o map[string]any
	json.Unmarshal(otherData, &o)
	mixed["mlkem"] = o["mlkem"]
	md, _ := json.Marshal(mixed)
	bad, err := keychain.ParseRef(md)
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.Open(bad.Identity(kc, nil))
	if err == nil || !strings.Contains(err.Error(), "does not match its public key") {
		t.Fatalf("record with another ML-KEM half: %v", err)
	}
	if fake.Outstanding() != 0 {
		t.Errorf("%d Keychain handles not released", fake.Outstanding())
	}
}

func wrapParams(params map[string][][]byte) *protocol.KeyWrapParams {
	return &protocol.KeyWrapParams{EC: &protocol.EncryptConfig{Parameters: params}, Optsdata: opts}
}

// The wrong-key error through the provider for keys that share one half
// with the layer's recipient: a keystore whose Keychain-bound hybrid pairs
// the right Keychain key with another ML-KEM key, or the right ML-KEM key
// with another Keychain key. Each is a well-formed record of a different
// hybrid key; neither opens the layer, and the error is the wrong-key one.
func TestHybridWrongHalfThroughProvider(t *testing.T) {
	fake := &keychaintest.Fake{}
	kc := keychain.New(fake)
	right, _, err := kc.CreateHybrid("mac", keychain.Spec{Tag: "ocikp.mac"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := kc.CreateHybrid("other", keychain.Spec{Tag: "ocikp.other"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	p := &Provider{Name: "ocikp", Store: f.st, Keychain: kc}
	ann := f.wrap(p, map[string][][]byte{"ocikp": vals(right.RecipientString())})
	rightPriv, _ := right.Private(kc, nil)
	otherPriv, _ := other.Private(kc, nil)
	p256Of := func(r *keychain.Ref) *ecdh.PublicKey { k, _ := r.PublicKey(); return k }
	for name, c := range map[string]struct {
		mlkem *keychain.Ref // whose ML-KEM half
		ec    *keychain.Ref // whose Keychain key
	}{
		"wrong ML-KEM half":    {other, right},
		"wrong classical half": {right, other},
	} {
		t.Run(name, func(t *testing.T) {
			dk := rightPriv.MLKEM.(*mlkem.DecapsulationKey768)
			if c.mlkem == other {
				dk = otherPriv.MLKEM.(*mlkem.DecapsulationKey768)
			}
			rec, err := pq.NewHybridRecipient(dk.EncapsulationKey(), p256Of(c.ec))
			if err != nil {
				t.Fatal(err)
			}
			ref := &keychain.Ref{Name: "half", Type: pq.MLKEMP256, Tag: c.ec.Tag, Classical: c.ec.Classical,
				Recipient: rec.String(), MLKEM: &keychain.MLKEMHalf{Private: c.mlkem.MLKEM.Private}}
			data, _ := ref.Marshal()
			if ref, err = keychain.ParseRef(data); err != nil {
				t.Fatal(err)
			}
			q := &Provider{Name: "ocikp", Store: &soft.Store{Dir: t.TempDir()}, Keychain: kc}
			if err := q.Refs().Put(ref); err != nil {
				t.Fatal(err)
			}
			for _, dc := range []map[string][][]byte{nil, {"ocikp": vals("half")}} {
				_, err := unwrap(q, ann, dc)
				if err == nil || !strings.Contains(err.Error(), "no key can decrypt this layer") ||
					!strings.Contains(err.Error(), "mlkem768p256 tag ") || errors.Is(err, envelope.ErrTampered) {
					t.Fatalf("%v", err)
				}
				t.Logf("%v\n%s", err, strings.Join(hint.Of(err), "\n"))
				if h := strings.Join(hint.Of(err), "\n"); !strings.Contains(h, "half") {
					t.Fatalf("the hints do not name the key tried: %s", h)
				}
			}
		})
	}
}
