package tpm_test

import (
	"bytes"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/keys/tpm/tpmdev"
	"github.com/ocikp/ocikp/keys/tpm/tpmtest"
)

// encryptForEK wraps secret for r on a machine with no TPM (an empty
// keystore, OCIKP_TPM unset) and returns the annotation.
func encryptForEK(t *testing.T, r *tpm.EKRecipient, secret []byte) []byte {
	t.Helper()
	t.Setenv(tpm.EnvTPM, "")
	return wrapReq(t, &keyprovider.Provider{Name: "ocikp", Store: &soft.Store{Dir: t.TempDir()}}, secret, r.String())
}

// decryptOn unwraps ann with the empty parameters containerd sends, on
// the device at path with a keystore that only enrolled its EKs.
func decryptOn(t *testing.T, path string, ann []byte) ([]byte, error) {
	t.Helper()
	ks := enrol(t, path)
	t.Setenv(tpm.EnvTPM, path)
	return unwrapReq(&keyprovider.Provider{Store: &soft.Store{Dir: ks}}, ann)
}

// TestRSAEK: a recipient for a TPM's RSA 2048 EK (the TCG default
// template), made from its PEM public key alone, says it is an RSA EK's,
// decrypts on that TPM, and is not another swtpm's.
func TestRSAEK(t *testing.T) {
	sw := tpmtest.Start(t)
	ek, err := tpm.ReadEK(sw.Socket, tpm.EKRSA)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := ek.PEM()
	if !bytes.HasPrefix(pemKey, []byte("-----BEGIN PUBLIC KEY-----")) {
		t.Fatalf("PEM:\n%s", pemKey)
	}
	parsed, err := tpm.ParseEK(pemKey, nil)
	if err != nil || parsed.Type != tpm.EKRSA || !bytes.Equal(parsed.Key, ek.Key) {
		t.Fatalf("ParseEK of its PEM: %v", err)
	}
	r, err := tpm.NewEKRecipientFor(parsed, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := r.String()
	if !strings.HasPrefix(s, tpm.HRPEKRSA+"1") || r.Type() != tpm.StanzaEKRSA {
		t.Fatalf("recipient %.30s…, type %s", s, r.Type())
	}
	if back, err := tpm.ParseEKRecipient(s); err != nil || back.String() != s {
		t.Fatalf("recipient read back: %v", err)
	}
	secret := []byte(`{"symkey":"RSA EK"}`)
	ann := encryptForEK(t, r, secret)
	if got, err := decryptOn(t, sw.Socket, ann); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the EK's device: %v", err)
	}
	// As ocikp serve runs it: the device, and its RSA EK, kept.
	kept := tpmdev.NewKept()
	tpm.SetHandler(kept.Handle)
	for i := range 2 {
		if got, err := decryptOn(t, sw.Socket, ann); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("the EK's device, kept, unwrap %d: %v", i+1, err)
		}
	}
	tpm.SetHandler(nil)
	kept.Close()
	other := tpmtest.Start(t)
	_, err = decryptOn(t, other.Socket, ann)
	var nie *envelope.NoIdentityError
	if !errors.As(err, &nie) || len(nie.Failures) > 0 {
		t.Fatalf("another TPM: got %v, want the stanza not to be its own", err)
	}
	// The ECC EK of the same TPM is another key: its layers are not RSA's.
	eccEK, err := tpm.ReadEK(sw.Socket, tpm.EKECC)
	if err != nil || eccEK.Type != tpm.EKECC || len(eccEK.Key) != 65 {
		t.Fatalf("ECC EK: %v", err)
	}
}

// TestEKCertificate: a swtpm manufactured with an EK certificate (a local
// CA's): the certificate read from its NV index, as PEM or DER, gives the
// RSA EK's recipient, which decrypts on the device; the CA bundle that
// issued it verifies it, another CA's does not; a TPM without an EK
// certificate says so.
func TestEKCertificate(t *testing.T) {
	sw, ca := tpmtest.StartWithEKCert(t)
	der, err := tpm.ReadEKCert(sw.Socket, tpm.EKRSA)
	if err != nil {
		t.Fatal(err)
	}
	want, err := tpm.ReadEK(sw.Socket, tpm.EKRSA)
	if err != nil {
		t.Fatal(err)
	}
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for what, data := range map[string][]byte{"PEM": pemCert, "DER": der} {
		ek, err := tpm.ParseEK(data, nil)
		if err != nil || ek.Type != tpm.EKRSA || !bytes.Equal(ek.Key, want.Key) {
			t.Fatalf("%s certificate: %v", what, err)
		}
	}
	ek, err := tpm.ParseEK(pemCert, ca)
	if err != nil {
		t.Fatalf("verified against its CA: %v", err)
	}
	_, otherCA := tpmtest.StartWithEKCert(t)
	if _, err := tpm.ParseEK(pemCert, otherCA); !errors.Is(err, tpm.ErrEKUntrusted) {
		t.Fatalf("another CA: got %v, want ErrEKUntrusted", err)
	}
	if _, err := tpm.ParseEK(want.PEM(), ca); err == nil {
		t.Fatal("a bare public key verified against a CA")
	}
	r, err := tpm.NewEKRecipientFor(ek, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte(`{"symkey":"EK certificate"}`)
	if got, err := decryptOn(t, sw.Socket, encryptForEK(t, r, secret)); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("recipient from the certificate: %v", err)
	}
	// swtpm 0.7.1's ECC EK is P-384 (NV index 0x01c00016): no P-256 one.
	if _, err := tpm.ReadEKCert(sw.Socket, tpm.EKECC); err == nil || !strings.Contains(err.Error(), "no ECC EK certificate") {
		t.Fatalf("ECC EK certificate: %v", err)
	}
	plain := tpmtest.Start(t)
	if _, err := tpm.ReadEKCert(plain.Socket, tpm.EKRSA); err == nil || !strings.Contains(err.Error(), "no RSA EK certificate") {
		t.Fatalf("a TPM without EK certificates: %v", err)
	}
}
