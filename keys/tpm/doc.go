// Package tpm keeps P-256 node keys in a TPM 2.0 and uses them only through
// TPM2_ECDH_ZGen (an ecdh.KeyExchanger), so the HPKE code of package p256
// serves them unchanged and their recipients are ordinary ocikp1p256
// strings that any machine can encrypt to without a TPM.
//
// A key is created under the storage root key (SRK), a primary key the TPM
// derives again from its owner seed and the standard ECC template on every
// use: nothing is persisted in the TPM. The keystore records, in
// DIR/tpm/NAME.json, the key's public area and its private area as the TPM
// encrypted it under the SRK: a copy of that file is useless without this
// TPM, and its private key never leaves the TPM. A PIN (the key's
// authValue) and a PCR policy are optional.
//
// Commands that carry the PIN, or return the shared point, go through an
// HMAC session salted to the SRK with AES-CFB parameter encryption, so
// neither crosses the bus in clear. The record holds the SRK's name: a key
// file moved to another TPM, or a TPM cleared since, is reported as such.
//
// The device is a TPM character device (default /dev/tpmrm0) or a unix
// socket carrying raw TPM commands (swtpm's unixio server), told apart by
// the file's type; --tpm PATH or OCIKP_TPM selects another.
package tpm
