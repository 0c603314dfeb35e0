package cli

import (
	"errors"

	"github.com/ocikp/ocikp/internal/hint"
)

// tpmHybridKeygen makes an mlkem768p256 key whose P-256 half is a new TPM
// key, its ML-KEM seed sealed to that key (package keys/hwhybrid, as
// pkcs11Keygen does for a token key). The TPM side fills this in.
func (e *env) tpmHybridKeygen(name string, t tpmFlags, passphrase bool) error {
	return hint.Wrap(errors.New("--backend tpm --type mlkem768p256 is not available in this build"),
		"use --backend pkcs11 --type mlkem768p256, or a TPM P-256 key (ocikp keygen --backend tpm NAME)")
}
