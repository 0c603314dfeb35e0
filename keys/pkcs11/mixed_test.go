package pkcs11_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/pkcs11"
	"github.com/ocikp/ocikp/keys/pkcs11/softhsmtest"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/keys/tpm/tpmtest"
)

// TestTPMTokenAndSoftwareInOneLayer: one layer for a TPM key (swtpm), a
// PKCS#11 key (SoftHSM2) and a software key; each decrypts it alone
// through the provider core with the empty parameters containerd sends,
// as exec runs it and as ocikp serve does (kept companion, cached keys).
func TestTPMTokenAndSoftwareInOneLayer(t *testing.T) {
	tk := softhsmtest.Start(t, "node", testPIN)
	sw := tpmtest.Start(t)
	tokenRec, _ := newKey(t, tk, "token")
	c, err := tpm.Create(sw.Socket, tpm.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	tpmRec, err := tpm.NewRecord("chip", sw.Socket, c, tpm.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	secret := []byte(`{"symkey":"three"}`)
	ann := wrapReq(t, &keyprovider.Provider{Name: "ocikp", Store: &soft.Store{Dir: t.TempDir()}}, secret,
		tokenRec.Recipient, tpmRec.RecipientString(), mustRecipient(t, priv))

	only := map[string]func(dir string){
		"token": func(dir string) {
			if err := pkcs11.RecordsIn(dir).Put(tokenRec); err != nil {
				t.Fatal(err)
			}
		},
		"tpm": func(dir string) {
			if err := tpm.RecordsIn(dir).Put(tpmRec); err != nil {
				t.Fatal(err)
			}
		},
		"software": func(dir string) {
			if _, err := (&soft.Store{Dir: dir}).Create("laptop", priv, nil); err != nil {
				t.Fatal(err)
			}
		},
	}
	t.Cleanup(func() { pkcs11.SetKeep(false) })
	for _, kept := range []bool{false, true} {
		pkcs11.SetKeep(kept)
		for name, add := range only {
			dir := filepath.Join(t.TempDir(), "ks")
			os.MkdirAll(dir, 0o700)
			add(dir)
			p := &keyprovider.Provider{Store: &soft.Store{Dir: dir}, Passphrase: pin(testPIN), CacheKeys: kept, Remote: kept}
			if got, err := unwrapReq(p, ann); err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("%s key alone (kept companion %v): %v", name, kept, err)
			}
		}
	}
}

func mustRecipient(t *testing.T, priv *ecdh.PrivateKey) string {
	t.Helper()
	dir := t.TempDir()
	k, err := (&soft.Store{Dir: dir}).Create("x", priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k.RecipientString()
}
