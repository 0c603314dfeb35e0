// Package soft is ocikp's embedded software keystore: P-256 private keys in
// files, one per key, optionally sealed under a passphrase (scrypt +
// AES-256-GCM).
//
// The store is a directory (0700) of NAME.key files (0600), each written
// atomically (temporary file, fsync, hard link to the final name so an
// existing key is never overwritten). Files that other users can read are
// refused. The public half and recipient string are kept in clear beside the
// private key, so listing keys and matching stanza tags need no passphrase.
package soft
