package tpm

import (
	"bytes"
	"crypto/ecdh"
	"encoding/pem"
	"errors"

	"github.com/google/go-tpm/tpm2"
)

// spkiP256 is the DER of a P-256 SubjectPublicKeyInfo up to its point:
// written by hand, as the exec binary links no crypto/x509.
var spkiP256 = []byte{
	0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
	0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
}

// EKPEM encodes an ECC P-256 EK's public key as a PEM "PUBLIC KEY"
// (what openssl and tpm2_readpublic -f pem write).
func EKPEM(ek *tpm2.TPMTPublic) ([]byte, error) {
	pt, err := ek.Unique.ECC()
	if err != nil || ek.Type != tpm2.TPMAlgECC {
		return nil, errors.New("the endorsement key is not an ECC key")
	}
	der := append(append(append([]byte{}, spkiP256...), 4), append(pad32(pt.X.Buffer), pad32(pt.Y.Buffer)...)...)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParseEKPEM reads a P-256 EK public key (PEM "PUBLIC KEY") as the public
// area of the TCG default ECC EK with that point.
func ParseEKPEM(data []byte) (*tpm2.TPMTPublic, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM public key (-----BEGIN PUBLIC KEY-----)")
	}
	if len(b.Bytes) != len(spkiP256)+65 || !bytes.Equal(b.Bytes[:len(spkiP256)], spkiP256) {
		return nil, errors.New("not a P-256 public key: ocikp reads ECC P-256 endorsement keys (tpm2_createek -G ecc)")
	}
	pt := b.Bytes[len(spkiP256):]
	if _, err := ecdh.P256().NewPublicKey(pt); err != nil {
		return nil, errors.New("not a valid P-256 point")
	}
	ek := ekPublic(pt[1:33], pt[33:])
	return &ek, nil
}
