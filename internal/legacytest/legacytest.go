// Package legacytest writes the annotation blobs of the key providers ocikp
// replaces, for tests only (ocikp itself reads them and never writes them).
package legacytest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"testing"
)

// AppleBlob seals optsdata to `to` as the Apple Keychain key provider did.
// With stripZeros the AES key comes from big.Int.Bytes() of the shared
// secret, as in the seed's Go code. It reports whether the secret had a
// leading zero byte.
func AppleBlob(t testing.TB, to *ecdh.PublicKey, optsdata []byte, stripZeros bool) ([]byte, bool) {
	t.Helper()
	eph, _ := ecdh.P256().GenerateKey(rand.Reader)
	shared, err := eph.ECDH(to)
	if err != nil {
		t.Fatal(err)
	}
	secret := shared
	if stripZeros {
		secret = new(big.Int).SetBytes(shared).Bytes()
	}
	key, _ := hkdf.Key(sha256.New, secret, nil, "", 32)
	b, _ := aes.NewCipher(key)
	g, _ := cipher.NewGCM(b)
	nonce := make([]byte, 12)
	rand.Read(nonce)
	blob, _ := json.Marshal(map[string]string{
		"KeyUrl":     "apple-se://se?mode=encrypt&pub=" + base64.URLEncoding.EncodeToString(to.Bytes()),
		"EphPub":     base64.StdEncoding.EncodeToString(eph.PublicKey().Bytes()),
		"WrappedKey": base64.StdEncoding.EncodeToString(g.Seal(nonce, nonce, optsdata, nil)),
		"WrapType":   "AES-GCM",
	})
	return blob, shared[0] == 0
}
