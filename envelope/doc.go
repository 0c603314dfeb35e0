// Package envelope implements ocikp's annotation blob, format v1.
//
// A fresh random 32-byte file key encrypts the secret (ocicrypt's optsdata)
// once; each recipient wraps only the file key in a stanza. Any mix of
// backends can therefore share one layer, and recipients can be listed, added
// or dropped without touching the payload.
//
//	{"v":1,
//	 "recipients":[{"type":"p256","tag":"…","enc":"…","key":"…"}, …],
//	 "payload":"<nonce ‖ AES-256-GCM ciphertext ‖ tag>",
//	 "mac":"<HMAC-SHA256 over the header>"}
//
// The blob has one canonical encoding (Marshal's); Parse refuses any other.
// Payload and MAC keys come from the file key by HKDF-SHA256; the MAC covers
// the version and every stanza field, so a stanza cannot be altered, added or
// removed by anyone who does not hold the file key. docs/format.md is the
// specification; testdata/vectors-v1.json holds vectors for other
// implementations.
package envelope
