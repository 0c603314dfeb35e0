package imagecli

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ocpkcs11 "github.com/containers/ocicrypt/crypto/pkcs11"

	"github.com/ocikp/ocikp/keys/pkcs11/softhsmtest"
	"github.com/ocikp/ocikp/keys/soft"
)

// migrate of a layer wrapped by ocicrypt's own PKCS#11 scheme (RSA-OAEP,
// org.opencontainers.image.enc.keys.pkcs11), with the RSA key on a
// SoftHSM2 token named by --pkcs11-key: the layer gets an ocikp envelope
// that opens it, and the PKCS#11 annotation goes. A wrong PIN is said so,
// without the PIN.
func TestMigrateLayoutPKCS11(t *testing.T) {
	const pin = "PIN-7d3c19aa"
	tk := softhsmtest.Start(t, "node", pin)
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	keyFile := filepath.Join(t.TempDir(), "rsa.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	if out, err := exec.Command("softhsm2-util", "--import", keyFile, "--token", "node", "--label", "rsa", "--id", "01", "--pin", pin).CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --import: %v\n%s", err, out)
	}
	// SoftHSM2 decrypts OAEP with SHA-1 only; ocicrypt's tests wrap so too.
	t.Setenv("OCICRYPT_OAEP_HASHALG", "sha1")
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	newKey(t, st, "bob")
	dir, plain := encryptedLayout(t, func(opts []byte) map[string]string {
		w, err := ocpkcs11.EncryptMultiple([]interface{}{&k.PublicKey}, opts)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"org.opencontainers.image.enc.keys.pkcs11": base64.StdEncoding.EncodeToString(w)}
	})
	uri := "pkcs11:token=node;object=rsa?module-path=" + softhsmtest.Module

	_, stderr, code := runMain("migrate", "--keystore", ks, "--recipient", "bob", "oci:"+dir+":img")
	if code == 0 || !strings.Contains(stderr, "--pkcs11-key") {
		t.Fatalf("without --pkcs11-key: %d\n%s", code, stderr)
	}
	_, stderr, code = runMain("migrate", "--keystore", ks, "--recipient", "bob", "--pkcs11-key", uri+"&pin-value=0000", "oci:"+dir+":img")
	if code == 0 || !strings.Contains(stderr, "PIN") || !strings.Contains(stderr, "incorrect") || strings.Contains(stderr, "0000") || strings.Contains(stderr, pin) {
		t.Fatalf("wrong PIN: %d\n%s", code, stderr)
	}
	pinFile := filepath.Join(t.TempDir(), "pin")
	os.WriteFile(pinFile, []byte(pin+"\n"), 0o600)
	out, stderr, code := runMain("migrate", "--keystore", ks, "--recipient", "bob", "--pkcs11-key", uri+"&pin-source="+pinFile, "oci:"+dir+":img")
	if code != 0 || !strings.Contains(out, "migrated") {
		t.Fatalf("migrate: %d\n%s%s", code, out, stderr)
	}
	if _, ann := layerOf(t, dir); ann["org.opencontainers.image.enc.keys.pkcs11"] != "" {
		t.Fatal("the PKCS#11 annotation is still there")
	}
	got, err := openLayer(t, dir, st, "bob")
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("bob after the migration: %v", err)
	}
	_ = tk
}
