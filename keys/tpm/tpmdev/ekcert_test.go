package tpmdev

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/ocikp/ocikp/keys/tpm"
)

// ekChain makes a root CA, an intermediate, and an EK certificate for pub
// as TPM makers issue them: a critical subjectAltName holding only a
// directory name (the TPM's maker, model, version), TCG's own extended
// key usage, and no subject.
func ekChain(t testing.TB, pub any) (root, inter, ek []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "TPM maker root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	root, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(root)
	it := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "TPM maker EK CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	inter, err = x509.CreateCertificate(rand.Reader, it, caCert, &interKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	interCert, _ := x509.ParseCertificate(inter)
	// SAN: directoryName [4] { tcg-at-tpmManufacturer "id:00001014" }.
	dn, _ := asn1.Marshal(pkix.RDNSequence{{{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 1}, Value: "id:00001014"}}})
	san, _ := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: dn}})
	leaf := &x509.Certificate{SerialNumber: big.NewInt(3), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage:           x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{{2, 23, 133, 8, 1}},
		ExtraExtensions:    []pkix.Extension{{Id: oidSAN, Critical: true, Value: san}}}
	ek, err = x509.CreateCertificate(rand.Reader, leaf, interCert, pub, interKey)
	if err != nil {
		t.Fatal(err)
	}
	return root, inter, ek
}

func pemOf(typ string, ders ...[]byte) []byte {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	return out
}

// TestVerifyEKQuirks: a TPM maker's EK certificate (critical directory-
// name SAN, TCG key purpose) verifies against its maker's root and
// intermediate, RSA and ECC alike, and is refused against another CA or
// the intermediate alone; its key and type are taken from it.
func TestVerifyEKQuirks(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for typ, pub := range map[string]any{tpm.EKRSA: &rsaKey.PublicKey, tpm.EKECC: &ecKey.PublicKey} {
		root, inter, ek := ekChain(t, pub)
		if c, _ := x509.ParseCertificate(ek); len(c.UnhandledCriticalExtensions) != 1 {
			t.Fatalf("%s: the test certificate lacks the critical SAN Go does not handle", typ)
		}
		for what, data := range map[string][]byte{"DER": ek, "PEM": pemOf("CERTIFICATE", ek)} {
			rep, err := parseEK(data, pemOf("CERTIFICATE", root, inter))
			if err != nil || !rep.Verified || rep.EKType != typ {
				t.Fatalf("%s %s: %v", typ, what, err)
			}
		}
		other, _, _ := ekChain(t, pub)
		for what, roots := range map[string][]byte{"another CA": pemOf("CERTIFICATE", other), "the intermediate alone": pemOf("CERTIFICATE", inter)} {
			if _, err := parseEK(ek, roots); !errors.Is(err, tpm.ErrEKUntrusted) {
				t.Fatalf("%s, %s: got %v, want ErrEKUntrusted", typ, what, err)
			}
		}
		if _, err := parseEK(ek, []byte("no PEM")); err == nil {
			t.Fatalf("%s: a bundle without certificates accepted", typ)
		}
	}
	rep, err := parseEK(pemOf("PUBLIC KEY", mustPKIX(t, &rsaKey.PublicKey)), nil)
	if err != nil || rep.EKType != tpm.EKRSA || !bytes.Equal(rep.EK, rsaKey.N.FillBytes(make([]byte, 256))) {
		t.Fatalf("RSA public key: %v", err)
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := parseEK(pemOf("PUBLIC KEY", mustPKIX(t, &small.PublicKey)), nil); err == nil {
		t.Fatal("an RSA 1024 key accepted as an EK")
	}
}

func mustPKIX(t testing.TB, pub any) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// FuzzParseEKInput: an EK file (PEM or DER, key or certificate) comes
// from an inventory; whatever it holds, parsing neither panics nor
// returns a key of a shape the EK templates cannot have. The corpus in
// testdata/fuzz holds an RSA and an ECC EK certificate, their keys, and
// a PEM bundle.
func FuzzParseEKInput(f *testing.F) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, pub := range []any{&rsaKey.PublicKey, &ecKey.PublicKey} {
		_, _, ek := ekChain(f, pub)
		f.Add(ek)
		f.Add(pemOf("CERTIFICATE", ek))
		f.Add(pemOf("PUBLIC KEY", mustPKIX(f, pub)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, raw, _, err := parseEKInput(data)
		if err != nil {
			return
		}
		switch typ {
		case tpm.EKRSA:
			if tpm.CheckRSAModulus(raw) != nil {
				t.Fatalf("accepted an RSA EK of %d bytes", len(raw))
			}
		case tpm.EKECC:
			if _, err := ekPublicOf(typ, raw); err != nil {
				t.Fatalf("accepted an ECC EK that is not a P-256 point: %v", err)
			}
		default:
			t.Fatalf("accepted an EK of type %q", typ)
		}
	})
}
