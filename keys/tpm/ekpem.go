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

// spkiRSA2048 is the DER of an RSA 2048 SubjectPublicKeyInfo up to its
// modulus (top bit set: INTEGER with a leading zero), and spkiE65537 what
// follows it, the exponent 65537: the TCG default RSA EK's shape.
var (
	spkiRSA2048 = []byte{
		0x30, 0x82, 0x01, 0x22, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
		0x03, 0x82, 0x01, 0x0f, 0x00, 0x30, 0x82, 0x01, 0x0a, 0x02, 0x82, 0x01, 0x01, 0x00,
	}
	spkiE65537 = []byte{0x02, 0x03, 0x01, 0x00, 0x01}
)

// PEM encodes the EK's public key as a PEM "PUBLIC KEY" (what openssl
// and tpm2_readpublic -f pem write).
func (ek *EK) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ek.DER()})
}

// DER is the EK's SubjectPublicKeyInfo.
func (ek *EK) DER() []byte {
	if ek.Type == EKRSA {
		return append(append(append([]byte{}, spkiRSA2048...), ek.Key...), spkiE65537...)
	}
	return append(append([]byte{}, spkiP256...), ek.Key...)
}

// parseEKPEM reads a PEM "PUBLIC KEY" of either EK type; anything else
// (a certificate, DER) is for the companion.
func parseEKPEM(data []byte) (*EK, error) {
	b, _ := pem.Decode(data)
	if b != nil && b.Type == "PUBLIC KEY" && len(b.Bytes) == len(spkiRSA2048)+256+len(spkiE65537) &&
		bytes.HasPrefix(b.Bytes, spkiRSA2048) && bytes.HasSuffix(b.Bytes, spkiE65537) {
		ek := &EK{Type: EKRSA, Key: b.Bytes[len(spkiRSA2048) : len(spkiRSA2048)+256]}
		if err := ek.check(); err != nil {
			return nil, err
		}
		return ek, nil
	}
	pub, err := ParseEKPEM(data)
	if err != nil {
		return nil, errors.New("not an EK public key of the TCG default templates: ocikp reads ECC P-256 and RSA 2048 (exponent 65537) endorsement keys")
	}
	return &EK{Type: EKECC, Key: pub.Bytes()}, nil
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
