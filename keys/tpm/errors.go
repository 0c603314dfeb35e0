package tpm

import (
	"errors"

	"github.com/ocikp/ocikp/internal/hint"
)

// Sentinel errors for the decisions a caller makes about a failed
// operation; Explain adds what to do.
var (
	ErrBadPIN      = errors.New("wrong PIN for the TPM key")
	ErrPINNeeded   = errors.New("the TPM key needs a PIN and none was given")
	ErrLockout     = errors.New("the TPM is in dictionary-attack lockout")
	ErrPCRMismatch = errors.New("the TPM's PCR values differ from those the key is bound to")
	ErrOtherTPM    = errors.New("the key was made by another TPM, or this TPM's owner hierarchy was cleared since")
	ErrNoDevice    = errors.New("TPM device not available")
	ErrEKUntrusted = errors.New("the EK certificate does not chain to a CA of the bundle")
	ErrOtherEK     = errors.New("the TPM's endorsement key is not the one enrolled in the keystore: another TPM's")
)

// Codes the companion gives to the sentinel errors, in its replies.
var codes = map[string]error{
	"bad-pin":    ErrBadPIN,
	"pin-needed": ErrPINNeeded,
	"lockout":    ErrLockout,
	"pcr":        ErrPCRMismatch,
	"other-tpm":  ErrOtherTPM,
	"no-device":  ErrNoDevice,
	"ek-untrust": ErrEKUntrusted,
	"other-ek":   ErrOtherEK,
}

// Code is the reply code for err ("" for none of the sentinels).
func Code(err error) string {
	for c, s := range codes {
		if errors.Is(err, s) {
			return c
		}
	}
	return ""
}

func codeErr(code string) error { return codes[code] }

// Explain adds to an error that wraps a sentinel what the user can do;
// the device code returns bare sentinels, in the companion and in
// ocikp-serve alike, so the hints are written once, here.
func Explain(err error) error {
	if err == nil || len(hint.Of(err)) > 0 {
		return err
	}
	switch {
	case errors.Is(err, ErrBadPIN):
		return hint.Wrap(err, "give the PIN set at keygen (OCIKP_PASSPHRASE_FILE, or the prompt); repeated failures lock the TPM out")
	case errors.Is(err, ErrPINNeeded):
		return hint.Wrap(err, "set OCIKP_PASSPHRASE_FILE to a file that holds the key's PIN, for unattended decryption")
	case errors.Is(err, ErrLockout):
		return hint.Wrap(err, "wait for the TPM's lockout to expire (its recovery time), or have the TPM's owner reset it: tpm2_dictionarylockout --clear-lockout")
	case errors.Is(err, ErrPCRMismatch):
		return hint.Wrap(err, "the key unwraps only in the measured state it was made in: read the PCRs with tpm2_pcrread sha256; a key for the new state needs a new keygen --pcrs")
	case errors.Is(err, ErrOtherTPM):
		return hint.Wrap(err, "a TPM key works only in the TPM that made it: make a new one there (ocikp keygen --backend tpm NAME) and add its recipient to the image (ocikp rewrap --add)")
	case errors.Is(err, ErrOtherEK):
		return hint.Wrap(err, "the enrolment came from another machine (a copied keystore) or the TPM was replaced: remove the keystore's tpm-ek/TYPE.json and run ocikp tpm enroll on this machine")
	case errors.Is(err, ErrEKUntrusted):
		return hint.Wrap(err, "the certificate is not from a TPM maker whose CA the bundle holds: check the device, or give --ek-roots the manufacturer's root and intermediate CA certificates (PEM)")
	case errors.Is(err, ErrNoDevice):
		return hint.Wrap(err, "pass --tpm PATH or set "+EnvTPM+" to the TPM device (/dev/tpmrm0) or a swtpm socket; the user needs read-write access to it (group tss)")
	}
	return err
}
