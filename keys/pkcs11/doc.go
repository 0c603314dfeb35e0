// Package pkcs11 keeps P-256 node keys on PKCS#11 tokens (HSMs, smart
// cards, YubiKeys through ykcs11 or OpenSC, SoftHSM) and uses them only
// through ECDH (CKM_ECDH1_DERIVE), so the HPKE code of package p256 serves
// them unchanged and their recipients are ordinary ocikp1p256 strings that
// anyone can encrypt to without a token.
//
// The token is driven by a companion executable, ocikp-pkcs11 (package
// keys/pkcs11/token, cgo and github.com/miekg/pkcs11), which ocikp runs
// only when a stanza matches a token key. Loading the module in-process
// without cgo (purego, as the Keychain backend does on macOS) would link
// purego's fake cgo runtime into ocikp on Linux and slow every exec of it
// by about 4 ms, token or not (docs/pkcs11.md, "Why a companion").
//
// A key's record, DIR/pkcs11/NAME.json, keeps the key's pkcs11: URI
// (RFC 7512) without any pin-value, and its public key. The URI names the
// module (a shared library: loading it runs its code), so it is taken only
// from the keystore owner (the record, the command line), never from an
// image or a request, and the module must lie in an allowed directory
// (DefaultModuleDirs, or $OCIKP_PKCS11_MODULE_DIRS).
package pkcs11
