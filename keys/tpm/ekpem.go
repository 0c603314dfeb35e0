package tpm

import (
	"bytes"
	"crypto/ecdh"
	"encoding/pem"
	"errors"
)

// spkiP256 is the DER of a P-256 SubjectPublicKeyInfo up to its point:
// written by hand, as the exec binary links no crypto/x509.
var spkiP256 = []byte{
	0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
	0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
}

// EKPEM encodes a P-256 EK's public key as a PEM "PUBLIC KEY" (what
// openssl and tpm2_readpublic -f pem write).
func EKPEM(ek *ecdh.PublicKey) []byte {
	der := append(append([]byte{}, spkiP256...), ek.Bytes()...)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ParseEKPEM reads a P-256 EK public key (PEM "PUBLIC KEY"); the EK is
// taken to be the TCG default ECC EK with that point.
func ParseEKPEM(data []byte) (*ecdh.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM public key (-----BEGIN PUBLIC KEY-----)")
	}
	if len(b.Bytes) != len(spkiP256)+65 || !bytes.Equal(b.Bytes[:len(spkiP256)], spkiP256) {
		return nil, errors.New("not a P-256 public key: ocikp reads ECC P-256 endorsement keys (tpm2_createek -G ecc)")
	}
	pub, err := ecdh.P256().NewPublicKey(b.Bytes[len(spkiP256):])
	if err != nil {
		return nil, errors.New("not a valid P-256 point")
	}
	return pub, nil
}
