// Package soft is ocikp's embedded software keystore: private keys in
// files, one per key, optionally sealed under a passphrase (scrypt +
// AES-256-GCM). A key is P-256 ("p256") or a post-quantum hybrid
// ("mlkem768x25519", "mlkem768p256": the file holds the KEM's 32-byte
// seed); every type has the same file rules.
//
// The store is a directory (0700) of NAME.key files (0600), each written
// atomically (temporary file, fsync, hard link to the final name so an
// existing key is never overwritten). Files that other users can read are
// refused. The public half and recipient string are kept in clear beside the
// private key, so listing keys and matching stanza tags need no passphrase.
package soft
