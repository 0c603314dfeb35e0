// Package legacy reads (never writes) the annotation blobs of the key
// providers ocikp replaces, so images they encrypted stay readable.
package legacy

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrNotMine is returned by an opener for a key the blob is not for.
var ErrNotMine = errors.New("legacy blob is not for this key")

// Apple is a blob of the Apple Keychain / Secure Enclave key provider:
// {"KeyUrl","EphPub","WrappedKey","WrapType":"AES-GCM"}. The secret is
// optsdata itself, sealed with AES-256-GCM (12-byte nonce prefix, tag
// suffix) under HKDF-SHA256(ECDH x-coordinate, no salt, no info).
type Apple struct {
	KeyURL     string
	EphPub     *ecdh.PublicKey
	WrappedKey []byte
}

// IsApple reports whether blob has the Apple provider's shape.
func IsApple(blob []byte) bool {
	var probe struct {
		EphPub   *string `json:"EphPub"`
		WrapType *string `json:"WrapType"`
	}
	return json.Unmarshal(blob, &probe) == nil && probe.EphPub != nil && probe.WrapType != nil
}

// ParseApple decodes an Apple provider blob.
func ParseApple(blob []byte) (*Apple, error) {
	var w struct {
		KeyURL     string `json:"KeyUrl"`
		EphPub     string `json:"EphPub"`
		WrappedKey string `json:"WrappedKey"`
		WrapType   string `json:"WrapType"`
	}
	if err := json.Unmarshal(blob, &w); err != nil {
		return nil, errors.New("malformed Apple keychain provider blob")
	}
	if w.WrapType != "AES-GCM" {
		return nil, fmt.Errorf("Apple keychain provider blob: unsupported WrapType %.20q", w.WrapType)
	}
	eph, err := base64.StdEncoding.DecodeString(w.EphPub)
	if err != nil {
		return nil, errors.New("Apple keychain provider blob: EphPub is not base64")
	}
	pub, err := ecdh.P256().NewPublicKey(eph)
	if err != nil {
		return nil, errors.New("Apple keychain provider blob: EphPub is not an uncompressed P-256 point")
	}
	wk, err := base64.StdEncoding.DecodeString(w.WrappedKey)
	if err != nil || len(wk) < 12+16 {
		return nil, errors.New("Apple keychain provider blob: WrappedKey is not base64 of nonce|ciphertext|tag")
	}
	return &Apple{KeyURL: w.KeyURL, EphPub: pub, WrappedKey: wk}, nil
}

// Open decrypts the blob's optsdata with one private key, or returns
// ErrNotMine.
//
// The seed derived the AES key from big.Int.Bytes() of the shared x
// coordinate, which drops leading zero bytes (about one blob in 256). Both
// the full 32 bytes and the shortened form are tried, so such blobs open,
// whichever way their writer encoded the secret.
func (a *Apple) Open(kx ecdh.KeyExchanger) ([]byte, error) {
	shared, err := kx.ECDH(a.EphPub)
	if err != nil {
		return nil, err
	}
	candidates := [][]byte{shared}
	i := 0
	for i < len(shared)-1 && shared[i] == 0 {
		i++
	}
	if i > 0 {
		candidates = append(candidates, shared[i:])
	}
	for _, secret := range candidates {
		if out, err := appleOpen(secret, a.WrappedKey); err == nil {
			return out, nil
		}
	}
	return nil, ErrNotMine
}

// AppleKey derives the seed's AES key from an ECDH secret.
func AppleKey(secret []byte) []byte {
	k, _ := hkdf.Key(sha256.New, secret, nil, "", 32)
	return k
}

func appleOpen(secret, wrapped []byte) ([]byte, error) {
	b, _ := aes.NewCipher(AppleKey(secret))
	g, _ := cipher.NewGCM(b)
	return g.Open(nil, wrapped[:12], wrapped[12:], nil)
}
