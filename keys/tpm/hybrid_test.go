package tpm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/keys/tpm/tpmdev"
	"github.com/ocikp/ocikp/keys/tpm/tpmtest"
	"github.com/ocikp/ocikp/pq"
)

// newHybrid creates an mlkem768p256 key whose P-256 half is a new key in
// sw, recorded in a fresh keystore.
func newHybrid(t *testing.T, sw *tpmtest.SWTPM, name string, s tpm.Spec) (*tpm.Record, string) {
	t.Helper()
	c, err := tpm.Create(sw.Socket, s)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	r, err := tpm.NewHybridRecord(name, sw.Socket, c, s)
	if err != nil {
		t.Fatalf("NewHybridRecord: %v", err)
	}
	ks := t.TempDir()
	if err := tpm.RecordsIn(ks).Put(r); err != nil {
		t.Fatal(err)
	}
	return r, ks
}

// TestHybridTPMKey: a post-quantum hybrid whose P-256 half is in the TPM
// opens, with the empty parameters containerd sends, a layer made from
// its recipient string alone (no TPM, no companion) for it alone and for
// it beside a software post-quantum key and a TPM P-256 key; exec and as
// the service keeps the device; with its PIN, and not with a wrong one.
func TestHybridTPMKey(t *testing.T) {
	sw := tpmtest.Start(t)
	hy, ks := newHybrid(t, sw, "pqnode", tpm.Spec{PIN: []byte("5150")})
	if !hy.Hybrid() || hy.KeyType() != pq.MLKEMP256 || !strings.HasPrefix(hy.RecipientString(), "ocikp1mlkem768p2561") {
		t.Fatalf("record: type %q, recipient %.20s…", hy.Type, hy.RecipientString())
	}
	data, err := os.ReadFile(filepath.Join(ks, "tpm", "pqnode.json"))
	if err != nil || bytes.Contains(data, []byte("5150")) || !bytes.Contains(data, []byte(`"half"`)) {
		t.Fatalf("record (%v):\n%s", err, data)
	}
	classic, _ := newKey(t, sw, "classic", tpm.Spec{})
	if err := tpm.RecordsIn(ks).Put(classic); err != nil {
		t.Fatal(err)
	}
	seed, _, _ := pq.KindOf(pq.XWing).GenerateKey()
	laptop, err := soft.NewHybridKeyFile("laptop", pq.KindOf(pq.XWing), seed, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Encrypting needs no TPM and no companion.
	dir := os.Getenv("OCIKP_PLUGIN_DIR")
	t.Setenv("OCIKP_PLUGIN_DIR", t.TempDir())
	wp := &keyprovider.Provider{Name: "ocikp", Store: &soft.Store{Dir: t.TempDir()}}
	secret := []byte(`{"symkey":"pq tpm layer"}`)
	alone := wrapReq(t, wp, secret, hy.RecipientString())
	beside := wrapReq(t, wp, secret, laptop.RecipientString(), hy.RecipientString())
	mixed := wrapReq(t, &keyprovider.Provider{Name: "ocikp", Store: wp.Store, AllowClassical: true}, secret,
		classic.RecipientString(), hy.RecipientString(), laptop.RecipientString())
	t.Setenv("OCIKP_PLUGIN_DIR", dir)

	// Only the hybrid in the keystore: the TPM P-256 key's record goes.
	if err := tpm.RecordsIn(ks).Remove("classic"); err != nil {
		t.Fatal(err)
	}
	for _, kept := range []bool{false, true} {
		if kept {
			k := tpmdev.NewKept()
			tpm.SetHandler(k.Handle)
			t.Cleanup(func() { tpm.SetHandler(nil); k.Close() })
		}
		p := &keyprovider.Provider{Store: &soft.Store{Dir: ks}, Passphrase: pin("5150"), CacheKeys: kept}
		for what, ann := range map[string][]byte{"alone": alone, "beside a software key": beside, "beside a TPM P-256 key": mixed} {
			if got, err := unwrapReq(p, ann); err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("kept %v, %s: %v", kept, what, err)
			}
		}
		_, err := unwrapReq(&keyprovider.Provider{Store: &soft.Store{Dir: ks}, Passphrase: pin("0000")}, alone)
		if !errors.Is(err, tpm.ErrBadPIN) || strings.Contains(err.Error(), "0000") || strings.Contains(err.Error(), "5150") {
			t.Fatalf("kept %v, wrong PIN: %v", kept, err)
		}
	}
}

// TestHybridOtherTPM: a copy of the record (blobs and sealed half) opens
// nothing with another TPM: its SRK is not the one the key was made under.
func TestHybridOtherTPM(t *testing.T) {
	sw := tpmtest.Start(t)
	hy, ks := newHybrid(t, sw, "pqnode", tpm.Spec{})
	wp := &keyprovider.Provider{Name: "ocikp", Store: &soft.Store{Dir: t.TempDir()}}
	ann := wrapReq(t, wp, []byte("x"), hy.RecipientString())
	p := &keyprovider.Provider{Store: &soft.Store{Dir: ks}}
	if got, err := unwrapReq(p, ann); err != nil || string(got) != "x" {
		t.Fatalf("its own TPM: %v", err)
	}
	other := tpmtest.Start(t)
	t.Setenv(tpm.EnvTPM, other.Socket)
	_, err := unwrapReq(p, ann)
	if !errors.Is(err, tpm.ErrOtherTPM) {
		t.Fatalf("another TPM: got %v, want ErrOtherTPM", err)
	}
	var nie *envelope.NoIdentityError
	if !errors.As(err, &nie) {
		t.Fatalf("another TPM: %T %v", err, err)
	}
}

// TestHybridRecordStrict: the type and the sealed half go together.
func TestHybridRecordStrict(t *testing.T) {
	r := sampleHybrid(t)
	data, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tpm.ParseRecord(data); err != nil {
		t.Fatalf("a hybrid record: %v", err)
	}
	var m map[string]any
	json.Unmarshal(data, &m)
	edit := func(f func(map[string]any)) []byte {
		c := map[string]any{}
		for k, v := range m {
			c[k] = v
		}
		f(c)
		b, _ := json.Marshal(c)
		return b
	}
	p256rec, _ := tpm.ParseRecord([]byte(sampleRecord))
	bad := map[string][]byte{
		"no half":             edit(func(c map[string]any) { delete(c, "half") }),
		"no type":             edit(func(c map[string]any) { delete(c, "type") }),
		"type xwing":          edit(func(c map[string]any) { c["type"] = pq.XWing }),
		"p256 recipient":      edit(func(c map[string]any) { c["recipient"] = p256rec.RecipientString() }),
		"half not base64":     edit(func(c map[string]any) { c["half"] = map[string]any{"enc": "!", "ciphertext": "!"} }),
		"half with extra key": edit(func(c map[string]any) { c["half"] = map[string]any{"enc": "", "ciphertext": "", "seed": ""} }),
	}
	for what, b := range bad {
		if _, err := tpm.ParseRecord(b); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
}

// sampleHybrid makes a hybrid record from sampleRecord's blobs (no TPM:
// the blobs are only checked where they are used).
func sampleHybrid(t testing.TB) *tpm.Record {
	r, err := tpm.ParseRecord([]byte(sampleRecord))
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, srk := r.Blobs()
	k, _ := r.PublicKey()
	h, err := tpm.NewHybridRecord("pqnode", r.Device, &tpm.Created{Public: k, Pub: pub, Priv: priv, SRKName: srk}, tpm.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestHybridOneStart: in exec mode a hybrid layer starts the companion
// once: the ECDH that opens the sealed seed and the stanza's go in one
// request (counted by a wrapper in the companion's place).
func TestHybridOneStart(t *testing.T) {
	sw := tpmtest.Start(t)
	hy, ks := newHybrid(t, sw, "pqnode", tpm.Spec{PIN: []byte("5150")})
	wp := &keyprovider.Provider{Name: "ocikp", Store: &soft.Store{Dir: t.TempDir()}}
	secret := []byte(`{"symkey":"one start"}`)
	ann := wrapReq(t, wp, secret, hy.RecipientString())
	starts := countStarts(t)
	p := &keyprovider.Provider{Store: &soft.Store{Dir: ks}, Passphrase: pin("5150")}
	if got, err := unwrapReq(p, ann); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("unwrap: %v", err)
	}
	if n := starts(); n != 1 {
		t.Fatalf("%d companion starts for one hybrid layer, want 1", n)
	}
}

// BenchmarkExecUnwrap: a hybrid TPM layer against a P-256 TPM layer as
// exec runs them (a fresh identity, ocikp-tpm started per request): one
// start each, the hybrid's two ZGens in one request.
//
//	go test ./keys/tpm -run '^$' -bench ExecUnwrap -benchtime 50x -count 3
func BenchmarkExecUnwrap(b *testing.B) {
	sw := tpmtest.Start(b)
	c, err := tpm.Create(sw.Socket, tpm.Spec{})
	if err != nil {
		b.Fatal(err)
	}
	p, err := tpm.NewRecord("p", sw.Socket, c, tpm.Spec{})
	if err != nil {
		b.Fatal(err)
	}
	h, err := tpm.NewHybridRecord("h", sw.Socket, c, tpm.Spec{})
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range []*tpm.Record{p, h} {
		rc, err := r.NewRecipient()
		if err != nil {
			b.Fatal(err)
		}
		s, err := rc.Wrap(make([]byte, 32))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(r.KeyType(), func(b *testing.B) {
			for b.Loop() {
				if _, err := r.Identity(nil).Unwrap(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
