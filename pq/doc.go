// Package pq implements post-quantum hybrid recipients and identities with
// HPKE (RFC 9180, Go's crypto/hpke) and the hybrid KEMs of
// draft-ietf-hpke-pq: ML-KEM-768 + X25519 (X-Wing, "mlkem768x25519", the
// default) and ML-KEM-768 + P-256 ("mlkem768p256"), with HKDF-SHA256 and
// AES-256-GCM. A hybrid holds if either half does: a quantum computer must
// break ML-KEM, a flaw in the young ML-KEM must still face the curve.
//
// The HPKE info, "ocikp/v1 " + type, binds the envelope version and the
// stanza type, so a stanza cannot be replayed as another type's. Stanzas
// carry a 4-byte tag computed as for P-256 (see the p256 package) over enc
// and the whole hybrid public key.
//
// The P-256 half of mlkem768p256 only has to supply ECDH
// (hpke.NewHybridPrivateKey takes any ecdh.KeyExchanger), so it can live in
// the Keychain or the Secure Enclave while the ML-KEM half is a software
// key (Private.MLKEM and Private.Classical).
package pq
