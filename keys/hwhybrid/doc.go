// Package hwhybrid makes ML-KEM-768 + P-256 hybrid keys (pq.MLKEMP256,
// "ocikp1mlkem768p2561…" recipients) whose P-256 half is a hardware key,
// in a TPM or on a PKCS#11 token, so that a node key is both bound to its
// device and post-quantum (and counts as post-quantum for the mixing rule).
//
// The ML-KEM half is a software key, and the keystore must keep it. A
// Keychain hybrid keeps its seed in clear or under a passphrase; here the
// seed is sealed to the hardware key itself (a Half): HPKE base mode to the
// P-256 public key (DHKEM(P-256), HKDF-SHA256, AES-256-GCM, as package
// p256), with info naming this use and the hybrid recipient string as
// associated data. So a copy of the keystore record is useless without
// the device and its PIN, and a half moved into another key's record does
// not open there.
//
// An unwrap therefore costs two hardware ECDHs: one to open the seed, one
// for the stanza's P-256 share. A key that offers ECDHMany (TPM and
// PKCS#11 keys) runs both in one device request, so in exec mode a layer
// costs one companion start, as a P-256 hardware key does. The opened ML-KEM key is kept by the
// identity (pq.Identity keeps what its loader returns), so a long-lived
// `ocikp serve` pays the first only once per key, and each later unwrap
// costs one hardware ECDH, as a P-256 hardware key does. That is no loss
// of protection: the half is sealed against copies of the record at rest,
// and a process that holds it in memory can ask the device anyway; the
// hybrid still needs the device's ECDH for every stanza. A failed open (a
// wrong PIN, an absent token) is not kept: the next request tries again.
package hwhybrid
