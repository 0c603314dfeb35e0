// Package keychain keeps P-256 keys in the macOS Keychain or the Secure
// Enclave and uses them only through ECDH (an ecdh.KeyExchanger), so the
// HPKE code of package p256 serves them unchanged and their recipients are
// ordinary ocikp1p256 recipient strings that any OS can encrypt to.
//
// The macOS layer is thin on purpose: security_darwin.go turns a Dict into
// CoreFoundation objects and calls Security.framework through purego (no
// cgo, so `go install` builds it anywhere). Everything that decides
// something — the attribute dictionaries, which key a tag selects, what an
// OSStatus means to the user — is plain Go in this package, tested on every
// OS against a fake Security (keychain_test.go). Elsewhere the backend is
// present but every call fails with ErrUnavailable.
//
// A key made or adopted by ocikp has a reference in the keystore,
// DIR/keychain/NAME.json, holding its tag and compressed public key: listing
// keys and matching stanzas to keys never touches the Keychain (no prompt);
// only the ECDH of an unwrap does. Keys of the Apple key provider that ocikp
// replaces are found by tag (default se.ocicrypt.default.tag) through its
// decryption URL, apple-se://se?mode=decrypt[&tag=TAG].
package keychain
