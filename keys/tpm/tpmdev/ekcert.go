package tpmdev

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/ocikp/ocikp/keys/tpm"
)

// ekCert reads the EK certificate of type typ from its NV index (TCG EK
// Credential Profile), as DER: the manufacturer's statement that the EK
// is a real TPM's.
func (c *conn) ekCert(typ string) ([]byte, error) {
	idx, what := tpm2.TPMHandle(tpm.NVEKCertECC), "ECC"
	if typ == tpm.EKRSA {
		idx, what = tpm2.TPMHandle(tpm.NVEKCertRSA), "RSA"
	}
	pub, err := tpm2.NVReadPublic{NVIndex: idx}.Execute(c.t)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHandle) {
			return nil, fmt.Errorf("TPM %s has no %s EK certificate (NV index %#08x)", c.path, what, uint32(idx))
		}
		return nil, explain("reading the EK certificate's NV index", err)
	}
	nv, err := pub.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("reading the EK certificate's NV index: %w", err)
	}
	size := int(nv.DataSize)
	if size == 0 || size > tpm.MaxEKInput {
		return nil, fmt.Errorf("the EK certificate's NV index holds %d bytes, not a certificate of at most %d", size, tpm.MaxEKInput)
	}
	// Read with the index's own (empty) authorisation, in chunks below
	// every TPM's NV buffer size.
	const chunk = 512
	var der []byte
	for off := 0; off < size; off += chunk {
		n := min(chunk, size-off)
		rsp, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: idx, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: idx, Name: pub.NVName},
			Size:       uint16(n),
			Offset:     uint16(off),
		}.Execute(c.t)
		if err != nil {
			return nil, explain("reading the EK certificate", err)
		}
		der = append(der, rsp.Data.Buffer...)
	}
	// Some TPMs pad the index: the certificate is its DER SEQUENCE.
	var raw asn1.RawValue
	rest, err := asn1.Unmarshal(der, &raw)
	if err != nil {
		return nil, errors.New("the EK certificate's NV index does not hold a DER certificate")
	}
	return der[:len(der)-len(rest)], nil
}

// parseEK reads an EK as fleet inventories hold it (a PEM public key, a
// PEM or DER certificate) and, given roots (a PEM bundle), checks that
// the certificate chains to one of them.
func parseEK(data, roots []byte) (*tpm.Reply, error) {
	typ, raw, cert, err := parseEKInput(data)
	if err != nil {
		return nil, err
	}
	rep := &tpm.Reply{EKType: typ, EK: raw}
	if len(roots) == 0 {
		return rep, nil
	}
	if cert == nil {
		return nil, errors.New("a CA bundle verifies an EK certificate, and this is a bare public key")
	}
	if err := verifyEK(cert, roots); err != nil {
		return nil, err
	}
	rep.Verified = true
	return rep, nil
}

// parseEKInput reads a PEM "PUBLIC KEY" or "CERTIFICATE", or a DER
// certificate or public key: an EK's type and public key (a P-256 point,
// or an RSA 2048 modulus), and its certificate if it is one.
func parseEKInput(data []byte) (typ string, raw []byte, cert *x509.Certificate, err error) {
	if len(data) > tpm.MaxEKInput {
		return "", nil, nil, fmt.Errorf("%d bytes: an EK public key or certificate is at most %d", len(data), tpm.MaxEKInput)
	}
	var pub any
	if b, _ := pem.Decode(data); b != nil {
		switch b.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(b.Bytes)
		case "CERTIFICATE":
			if cert, err = x509.ParseCertificate(b.Bytes); err == nil {
				pub = cert.PublicKey
			}
		default:
			return "", nil, nil, fmt.Errorf("a PEM %.40q: want PUBLIC KEY or CERTIFICATE", b.Type)
		}
	} else if cert, err = x509.ParseCertificate(data); err == nil {
		pub = cert.PublicKey
	} else if pub, err = x509.ParsePKIXPublicKey(data); err != nil {
		return "", nil, nil, errors.New("not an EK public key or certificate (PEM, or DER)")
	}
	if err != nil {
		return "", nil, nil, fmt.Errorf("not an EK public key or certificate: %w", err)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() == 2048 && k.E == 65537 {
			return tpm.EKRSA, k.N.FillBytes(make([]byte, 256)), cert, nil
		}
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			if e, err := k.ECDH(); err == nil {
				return tpm.EKECC, e.Bytes(), cert, nil
			}
		}
	case *ecdh.PublicKey:
		if k.Curve() == ecdh.P256() {
			return tpm.EKECC, k.Bytes(), cert, nil
		}
	}
	return "", nil, nil, errors.New("not an EK of the TCG default templates: ocikp reads RSA 2048 (exponent 65537) and ECC P-256 endorsement keys")
}

// oidSAN is subjectAltName: EK certificates carry it critical, with the
// TPM's manufacturer, model and version as a directory name, which Go's
// x509 does not handle (it would refuse every EK certificate).
var oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}

// verifyEK checks that cert chains to a self-signed certificate of the
// PEM bundle roots, through its other certificates if need be.
func verifyEK(cert *x509.Certificate, roots []byte) error {
	if len(roots) > tpm.MaxEKRoots {
		return fmt.Errorf("the CA bundle: %d bytes, at most %d", len(roots), tpm.MaxEKRoots)
	}
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	n := 0
	for rest := roots; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		ca, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Errorf("the CA bundle's certificate %d: %w", n+1, err)
		}
		if bytes.Equal(ca.RawSubject, ca.RawIssuer) && ca.CheckSignatureFrom(ca) == nil {
			pool.AddCert(ca)
		} else {
			inter.AddCert(ca)
		}
		n++
	}
	if n == 0 {
		return errors.New("the CA bundle holds no PEM certificate")
	}
	c := *cert
	c.UnhandledCriticalExtensions = nil
	for _, oid := range cert.UnhandledCriticalExtensions {
		if !oid.Equal(oidSAN) {
			c.UnhandledCriticalExtensions = append(c.UnhandledCriticalExtensions, oid)
		}
	}
	// EK certificates name their use with TCG's own key purpose.
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("%w: %v", tpm.ErrEKUntrusted, err)
	}
	return nil
}
