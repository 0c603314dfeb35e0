// Package envelope implements ocikp's annotation blob, format v1.
//
// A fresh random 32-byte file key encrypts the secret (ocicrypt's optsdata)
// once; each recipient wraps only the file key in a stanza. Any mix of
// backends can therefore share one layer, and recipients can be listed, added
// or dropped without touching the payload.
//
// Wire form (compact JSON, exact lower-case keys, strict standard base64):
//
//	{"v":1,
//	 "recipients":[{"type":"p256","tag":"…","enc":"…","key":"…"}, …],
//	 "payload":"<nonce ‖ AES-256-GCM ciphertext ‖ tag>",
//	 "mac":"<HMAC-SHA256 over the header>"}
//
// Keys are derived from the file key with HKDF-SHA256 (no salt):
// info "ocikp/v1 payload" for the payload's AES-256-GCM key (additional data
// "ocikp/v1"), info "ocikp/v1 header" for the header MAC key. The MAC covers
// the version and every stanza field, each length-prefixed (see headerBytes),
// so a stanza cannot be altered, added or removed by anyone who does not hold
// the file key. docs/format.md is the full specification, and
// testdata/vectors holds vectors for a second implementation.
package envelope
