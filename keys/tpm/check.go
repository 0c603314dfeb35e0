package tpm

import (
	"bytes"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/ocikp/ocikp/internal/hint"
)

// Check tells, without the PIN, whether the key can be used in the TPM at
// path now: the TPM is there, its SRK is the one the key was made under,
// the TPM loads the key, and a PCR-bound key's PCRs still hold the values
// it was bound to.
func Check(path string, r *Record) error {
	t, err := open(path)
	if err != nil {
		return err
	}
	defer t.Close()
	k, err := createSRK(t)
	if err != nil {
		return err
	}
	defer flush(t, k.handle)
	if !bytes.Equal(k.name.Buffer, r.srkName) {
		return hint.Wrap(fmt.Errorf("TPM %s: %w", path, ErrOtherTPM),
			"make a new key in this TPM (ocikp keygen --backend tpm NAME) and add its recipient to the images (ocikp rewrap --add)")
	}
	ld, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    r.priv,
		InPublic:     r.pub,
	}.Execute(t)
	if err != nil {
		return explain("loading the key", err)
	}
	flush(t, ld.ObjectHandle)
	if len(r.PCRs) == 0 {
		return nil
	}
	pub, err := r.pub.Contents()
	if err != nil {
		return err
	}
	now, err := policyDigest(t, r.PCRs, r.PIN)
	if err != nil {
		return explain("reading the PCR policy", err)
	}
	if !bytes.Equal(now, pub.AuthPolicy.Buffer) {
		return explain("the key's PCR policy", tpm2.TPMRCPolicyFail)
	}
	return nil
}
