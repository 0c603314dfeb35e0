package pkcs11_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/internal/testprovider"
	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/pkcs11"
	"github.com/ocikp/ocikp/keys/pkcs11/softhsmtest"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/pq"
)

// newHybrid makes a token key and records it as an mlkem768p256 key.
func newHybrid(t *testing.T, tk *softhsmtest.Token, name string) *pkcs11.Record {
	t.Helper()
	pub, found, err := pkcs11.Generate(mustParse(t, tk.URI(name)), []byte(tk.PIN))
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	r, err := pkcs11.NewHybridRecord(name, found, pub)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// keystore returns a new keystore holding the given token records.
func keystore(t *testing.T, recs ...*pkcs11.Record) *soft.Store {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := pkcs11.RecordsIn(dir).Put(r); err != nil {
			t.Fatal(err)
		}
	}
	return &soft.Store{Dir: dir}
}

// TestHybridTokenKey: an ML-KEM-768 + P-256 key whose P-256 half is a
// SoftHSM2 key. Layers are wrapped from recipient strings with no token
// at hand; the hybrid counts as post-quantum (beside a software X-Wing
// key it is fine, beside a P-256 token key refused unless classical
// strength is accepted); each key decrypts alone with the empty
// parameters containerd sends, in exec and service mode; a wrong PIN and
// a token without the key fail clearly; the PIN is never shown or stored.
func TestHybridTokenKey(t *testing.T) {
	tk := softhsmtest.Start(t, "node", testPIN)
	hy := newHybrid(t, tk, "pqnode")
	classic, _ := newKey(t, tk, "classic")
	if !hy.Hybrid() || hy.KeyType() != pq.MLKEMP256 || !strings.HasPrefix(hy.Recipient, "ocikp1mlkem768p2561") {
		t.Fatalf("record: type %q, recipient %.20s…", hy.Type, hy.Recipient)
	}
	ks := keystore(t, hy)
	data, err := os.ReadFile(filepath.Join(ks.Dir, "pkcs11", "pqnode.json"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(testPIN)) || !bytes.Contains(data, []byte(`"half"`)) {
		t.Fatalf("record:\n%s", data)
	}
	if got, err := pkcs11.RecordsIn(ks.Dir).Get("pqnode"); err != nil || got.Recipient != hy.Recipient || *got.Half != *hy.Half {
		t.Fatalf("record read back: %v", err)
	}
	if r, err := hy.NewRecipient(); err != nil || r.(*pq.Recipient).String() != hy.Recipient {
		t.Fatalf("NewRecipient: %v", err)
	}

	laptop := &soft.Store{Dir: filepath.Join(t.TempDir(), "laptop")}
	os.MkdirAll(laptop.Dir, 0o700)
	seed, _, _ := pq.KindOf(pq.XWing).GenerateKey()
	kf, err := soft.NewHybridKeyFile("laptop", pq.KindOf(pq.XWing), seed, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := laptop.Put("laptop", kf); err != nil {
		t.Fatal(err)
	}

	// Encrypting needs no token, no companion.
	companion, conf := os.Getenv("OCIKP_PLUGIN_DIR"), os.Getenv("SOFTHSM2_CONF")
	t.Setenv("OCIKP_PLUGIN_DIR", t.TempDir())
	t.Setenv("SOFTHSM2_CONF", "/nonexistent")
	wp := &keyprovider.Provider{Name: "ocikp", Store: &soft.Store{Dir: t.TempDir()}}
	secret := []byte(`{"symkey":"pq layer"}`)
	ann := wrapReq(t, wp, secret, hy.Recipient, kf.RecipientString())
	if _, err := testprovider.WrapErr(wp, secret, hy.Recipient, classic.Recipient); !errors.Is(err, keyprovider.ErrMixedStrength) {
		t.Fatalf("hybrid beside a P-256 token key: %v", err)
	}
	// By name from the keystore, too: the record's identity is post-quantum.
	if _, err := testprovider.WrapErr(&keyprovider.Provider{Name: "ocikp", Store: keystore(t, hy, classic)}, secret, "pqnode", "classic"); !errors.Is(err, keyprovider.ErrMixedStrength) {
		t.Fatalf("by name, hybrid beside a P-256 token key: %v", err)
	}
	mixed, err := testprovider.WrapErr(&keyprovider.Provider{Name: "ocikp", Store: wp.Store, AllowClassical: true}, secret, hy.Recipient, classic.Recipient)
	if err != nil {
		t.Fatalf("with classical strength accepted: %v", err)
	}
	t.Setenv("OCIKP_PLUGIN_DIR", companion)
	t.Setenv("SOFTHSM2_CONF", conf)

	for _, a := range [][]byte{ann, mixed} {
		if got, err := unwrapReq(&keyprovider.Provider{Store: ks, Passphrase: pin(testPIN)}, a); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("hybrid token key alone: %v", err)
		}
	}
	if got, err := unwrapReq(&keyprovider.Provider{Name: "ocikp", Store: ks, Passphrase: pin(testPIN)}, ann, "pqnode"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("hybrid token key by name: %v", err)
	}
	if got, err := unwrapReq(&keyprovider.Provider{Store: laptop}, ann); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("software key alone: %v", err)
	}
	if got, err := unwrapReq(&keyprovider.Provider{Store: keystore(t, classic), Passphrase: pin(testPIN)}, mixed); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("P-256 token key alone: %v", err)
	}
	// As ocikp serve runs it: identities kept, the companion kept.
	t.Cleanup(func() { pkcs11.SetKeep(false) })
	pkcs11.SetKeep(true)
	served := &keyprovider.Provider{Store: ks, Passphrase: pin(testPIN), CacheKeys: true, Remote: true}
	for range 3 {
		if got, err := unwrapReq(served, ann); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("service provider: %v", err)
		}
	}
	pkcs11.SetKeep(false)

	wrongPIN := "PIN-wrong-9d04"
	_, err = unwrapReq(&keyprovider.Provider{Store: ks, Passphrase: pin(wrongPIN)}, ann)
	if !errors.Is(err, pkcs11.ErrPINIncorrect) {
		t.Fatalf("wrong PIN: %v", err)
	}
	noLeak(t, err, wrongPIN)
	noLeak(t, err, testPIN)

	// The record copied to a machine whose token, of the same label and
	// PIN, lacks the key: said so; the sealed half is of no use there.
	softhsmtest.Start(t, "node", testPIN)
	copied := keystore(t, hy)
	_, err = unwrapReq(&keyprovider.Provider{Store: copied, Passphrase: pin(testPIN)}, ann)
	if !errors.Is(err, pkcs11.ErrNoKey) || !strings.Contains(err.Error(), `"pqnode"`) {
		t.Fatalf("token without the key: %v", err)
	}
	noLeak(t, err, testPIN)
	t.Logf("token without the key: %v", err)
}

// TestHybridRecordStrict: a hybrid record must carry a well-formed half
// and an mlkem768p256 recipient; a P-256 record carries no half; unknown
// types are refused.
func TestHybridRecordStrict(t *testing.T) {
	u := mustParse(t, "pkcs11:token=a;object=b?module-path=/usr/lib/x.so")
	pub := mustPub(t)
	hy, err := pkcs11.NewHybridRecord("pq", u, pub)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := hy.Marshal()
	if _, err := pkcs11.ParseRecord(good); err != nil {
		t.Fatalf("a hybrid record: %v", err)
	}
	if got, _ := hy.PublicKey(); !got.Equal(pub) {
		t.Fatal("the record's public key is not the token key's")
	}
	p, err := pkcs11.NewRecord("p", u, pub)
	if err != nil {
		t.Fatal(err)
	}
	xw := pq.KindOf(pq.XWing)
	_, xpub, _ := xw.GenerateKey()
	for name, edit := range map[string]func(m map[string]any){
		"no half":           func(m map[string]any) { delete(m, "half") },
		"half of bad shape": func(m map[string]any) { m["half"] = map[string]any{"enc": "AAAA", "ciphertext": "AAAA"} },
		"half with a seed":  func(m map[string]any) { m["half"].(map[string]any)["private"] = "AAAA" },
		"p256 recipient":    func(m map[string]any) { m["recipient"] = p.Recipient },
		"x-wing recipient":  func(m map[string]any) { m["recipient"] = xw.Format(xpub) },
		"unknown type":      func(m map[string]any) { m["type"] = "mlkem1024p384" },
		"p256 type spelled": func(m map[string]any) { m["type"] = "p256" },
		"p256 with a half":  func(m map[string]any) { delete(m, "type"); m["recipient"] = p.Recipient },
	} {
		var m map[string]any
		json.Unmarshal(good, &m)
		edit(m)
		data, _ := json.Marshal(m)
		if _, err := pkcs11.ParseRecord(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func mustPub(t *testing.T) *ecdh.PublicKey {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

// BenchmarkUnwrap: what a hybrid token key costs beside a P-256 one.
//
//	go test ./keys/pkcs11 -run '^$' -bench Unwrap -benchtime 100x
//
// exec: a fresh identity per unwrap, each request a fresh companion (an
// exec of ocikp): the hybrid's two ECDHs (its sealed half, the stanza's
// share) go in one request, so it pays one start, as P-256 does.
// kept: one identity and the kept companion (ocikp serve): the hybrid's
// half was opened once, so each unwrap is one ECDH, as for P-256.
func BenchmarkUnwrap(b *testing.B) {
	tk := softhsmtest.Start(b, "bench", testPIN)
	pub, found, err := pkcs11.Generate(mustParseB(b, tk.URI("k")), []byte(testPIN))
	if err != nil {
		b.Fatal(err)
	}
	recs := map[string]*pkcs11.Record{}
	if recs["p256"], err = pkcs11.NewRecord("p", found, pub); err != nil {
		b.Fatal(err)
	}
	if recs["mlkem768p256"], err = pkcs11.NewHybridRecord("h", found, pub); err != nil {
		b.Fatal(err)
	}
	fk := make([]byte, 32)
	for _, mode := range []string{"exec", "kept"} {
		for _, typ := range []string{"p256", "mlkem768p256"} {
			r := recs[typ]
			rc, err := r.NewRecipient()
			if err != nil {
				b.Fatal(err)
			}
			s, err := rc.Wrap(fk)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(typ+"/"+mode, func(b *testing.B) {
				pkcs11.SetKeep(mode == "kept")
				defer pkcs11.SetKeep(false)
				id := r.Identity(pin(testPIN))
				if _, err := id.Unwrap(s); err != nil { // starts the kept companion, opens the half
					b.Fatal(err)
				}
				b.ResetTimer()
				for b.Loop() {
					if mode == "exec" {
						id = r.Identity(pin(testPIN))
					}
					if _, err := id.Unwrap(s); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func mustParseB(b *testing.B, s string) *pkcs11.URI {
	u, err := pkcs11.Parse(s)
	if err != nil {
		b.Fatal(err)
	}
	return u
}

// TestHybridOneStart: in exec mode a hybrid layer starts the companion
// once: the ECDH that opens the sealed seed and the stanza's go in one
// request (counted by a wrapper in the companion's place).
func TestHybridOneStart(t *testing.T) {
	tk := softhsmtest.Start(t, "node", testPIN)
	hy := newHybrid(t, tk, "pqnode")
	ks := keystore(t, hy)
	wp := &keyprovider.Provider{Name: "ocikp", Store: &soft.Store{Dir: t.TempDir()}}
	secret := []byte(`{"symkey":"one start"}`)
	ann := wrapReq(t, wp, secret, hy.Recipient)

	real := filepath.Join(os.Getenv("OCIKP_PLUGIN_DIR"), pkcs11.Companion)
	dir, log := t.TempDir(), filepath.Join(t.TempDir(), "starts")
	script := "#!/bin/sh\necho >> '" + log + "'\nexec '" + real + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, pkcs11.Companion), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OCIKP_PLUGIN_DIR", dir)
	if got, err := unwrapReq(&keyprovider.Provider{Store: ks, Passphrase: pin(testPIN)}, ann); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("unwrap: %v", err)
	}
	b, _ := os.ReadFile(log)
	if n := bytes.Count(b, []byte("\n")); n != 1 {
		t.Fatalf("%d companion starts for one hybrid layer, want 1", n)
	}
}

// TestECDHBatch: an ecdh request with several points answers each as
// the key's ECDH would, in order, exec and kept alike; more than
// MaxPeers points, or a bad one among them, are refused before the token
// derives any.
func TestECDHBatch(t *testing.T) {
	tk := softhsmtest.Start(t, "node", testPIN)
	r, _ := newKey(t, tk, "node")
	k, err := r.NewKey([]byte(testPIN))
	if err != nil {
		t.Fatal(err)
	}
	var peers []*ecdh.PublicKey
	var want [][]byte
	for range pkcs11.MaxPeers {
		p, _ := ecdh.P256().GenerateKey(rand.Reader)
		peers = append(peers, p.PublicKey())
		z, _ := p.ECDH(k.PublicKey())
		want = append(want, z)
	}
	for _, kept := range []bool{false, true} {
		pkcs11.SetKeep(kept)
		got, err := k.ECDHMany(peers)
		if err != nil || len(got) != len(want) {
			t.Fatalf("kept %v: %v", kept, err)
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("kept %v: secret %d differs from software ECDH", kept, i)
			}
		}
		if _, err := k.ECDHMany(append(peers, peers[0])); err == nil {
			t.Fatalf("kept %v: %d points accepted", kept, len(peers)+1)
		}
		module, _ := pkcs11.CheckModule(mustParse(t, r.URI))
		raw := [][]byte{peers[0].Bytes(), append([]byte{4}, make([]byte, 64)...)}
		for what, req := range map[string]*pkcs11.Request{
			"too many":    {Peers: [][]byte{raw[0], raw[0], raw[0], raw[0], raw[0]}},
			"a bad point": {Peers: raw},
		} {
			req.Op, req.Module, req.URI, req.PIN = "ecdh", module, r.URI, testPIN
			if _, err := pkcs11.Call(req); err == nil || !strings.Contains(err.Error(), "peer") {
				t.Fatalf("kept %v, %s: %v", kept, what, err)
			}
		}
	}
	pkcs11.SetKeep(false)
}
