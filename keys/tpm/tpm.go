package tpm

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ocikp/ocikp/internal/hint"
)

// Sentinel errors for the decisions a caller makes about a failed
// operation; the messages say what to do.
var (
	ErrBadPIN      = errors.New("wrong PIN for the TPM key")
	ErrPINNeeded   = errors.New("the TPM key needs a PIN and none was given")
	ErrLockout     = errors.New("the TPM is in dictionary-attack lockout")
	ErrPCRMismatch = errors.New("the TPM's PCR values differ from those the key is bound to")
	ErrOtherTPM    = errors.New("the key was made by another TPM, or this TPM's owner hierarchy was cleared since")
)

// maxPCR is the highest PCR of a PC-client TPM.
const maxPCR = 23

// Spec says how to protect a new key.
type Spec struct {
	PIN  []byte // the key's authValue; empty for none
	PCRs []int  // PCRs of the sha256 bank the key is bound to; none for no policy
}

// Created is a new key as the TPM returned it.
type Created struct {
	Public  *ecdh.PublicKey
	Pub     []byte // TPM2B_PUBLIC
	Priv    []byte // TPM2B_PRIVATE, encrypted by the TPM under the SRK
	SRKName []byte
}

// srk is the storage root key, created afresh from the standard template
// (the TPM derives the same key from its owner seed each time).
type srk struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	pub    tpm2.TPMTPublic
}

func createSRK(t transport.TPM) (*srk, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t)
	if err != nil {
		return nil, explain("creating the storage root key", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		flush(t, rsp.ObjectHandle)
		return nil, fmt.Errorf("creating the storage root key: %w", err)
	}
	return &srk{handle: rsp.ObjectHandle, name: rsp.Name, pub: *pub}, nil
}

func flush(t transport.TPM, h tpm2.TPMHandle) {
	tpm2.FlushContext{FlushHandle: h}.Execute(t) //nolint:errcheck // best effort
}

// session is an HMAC session salted to the SRK that encrypts the first
// command (in) or response (out) parameter with AES-128-CFB.
func (s *srk) session(dir int, auth []byte) tpm2.Session {
	d := tpm2.EncryptIn
	if dir == out {
		d = tpm2.EncryptOut
	}
	return tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Salted(s.handle, s.pub), tpm2.AESEncryption(128, d), tpm2.Auth(auth))
}

const (
	in = iota
	out
)

func pcrSelection(pcrs []int) tpm2.TPMLPCRSelection {
	u := make([]uint, len(pcrs))
	for i, p := range pcrs {
		u[i] = uint(p)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      tpm2.TPMAlgSHA256,
		PCRSelect: tpm2.PCClientCompatible.PCRs(u...),
	}}}
}

// policy runs the key's policy commands in a session: its PCRs (their
// current values, which the TPM compares with the policy at use) and, with
// a PIN, PolicyAuthValue.
func policy(pcrs []int, pin bool) tpm2.PolicyCallback {
	return func(t transport.TPM, h tpm2.TPMISHPolicy, _ tpm2.TPM2BNonce) error {
		if _, err := (tpm2.PolicyPCR{PolicySession: h, Pcrs: pcrSelection(pcrs)}).Execute(t); err != nil {
			return err
		}
		if pin {
			if _, err := (tpm2.PolicyAuthValue{PolicySession: h}).Execute(t); err != nil {
				return err
			}
		}
		return nil
	}
}

// policyDigest computes the key's policy for the PCRs' current values in
// a trial session.
func policyDigest(t transport.TPM, pcrs []int, pin bool) ([]byte, error) {
	sess, closer, err := tpm2.PolicySession(t, tpm2.TPMAlgSHA256, 16, tpm2.Trial())
	if err != nil {
		return nil, err
	}
	defer closer() //nolint:errcheck
	if err := policy(pcrs, pin)(t, sess.Handle(), sess.NonceTPM()); err != nil {
		return nil, err
	}
	rsp, err := tpm2.PolicyGetDigest{PolicySession: sess.Handle()}.Execute(t)
	if err != nil {
		return nil, err
	}
	return rsp.PolicyDigest.Buffer, nil
}

func keyTemplate(s Spec, authPolicy []byte) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			// With a PCR policy, the policy is the only way in.
			UserWithAuth: len(s.PCRs) == 0,
			// A key without PIN has nothing to guess: its failures
			// must not count towards the TPM's lockout.
			NoDA:    len(s.PIN) == 0,
			Decrypt: true,
		},
		AuthPolicy: tpm2.TPM2BDigest{Buffer: authPolicy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			CurveID:   tpm2.TPMECCNistP256,
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDH,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDH, &tpm2.TPMSKeySchemeECDH{HashAlg: tpm2.TPMAlgSHA256}),
			},
			KDF: tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
	}
}

// Create makes a new P-256 ECDH key in the TPM at path under its SRK.
func Create(path string, s Spec) (*Created, error) {
	if err := checkPCRs(s.PCRs); err != nil {
		return nil, err
	}
	t, err := open(path)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	k, err := createSRK(t)
	if err != nil {
		return nil, err
	}
	defer flush(t, k.handle)
	var authPolicy []byte
	if len(s.PCRs) > 0 {
		if authPolicy, err = policyDigest(t, s.PCRs, len(s.PIN) > 0); err != nil {
			return nil, explain("computing the PCR policy", err)
		}
	}
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: k.session(in, nil)},
		// The PIN is the first parameter: encrypted on the bus.
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			UserAuth: tpm2.TPM2BAuth{Buffer: s.PIN},
		}},
		InPublic: tpm2.New2B(keyTemplate(s, authPolicy)),
	}.Execute(t)
	if err != nil {
		return nil, explain("creating the key", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("creating the key: %w", err)
	}
	ecPub, err := publicKey(pub)
	if err != nil {
		return nil, err
	}
	return &Created{
		Public:  ecPub,
		Pub:     tpm2.Marshal(rsp.OutPublic),
		Priv:    tpm2.Marshal(rsp.OutPrivate),
		SRKName: k.name.Buffer,
	}, nil
}

func publicKey(pub *tpm2.TPMTPublic) (*ecdh.PublicKey, error) {
	bad := errors.New("the TPM key is not a P-256 ECDH key")
	if pub.Type != tpm2.TPMAlgECC {
		return nil, bad
	}
	parms, err := pub.Parameters.ECCDetail()
	if err != nil || parms.CurveID != tpm2.TPMECCNistP256 {
		return nil, bad
	}
	pt, err := pub.Unique.ECC()
	if err != nil {
		return nil, bad
	}
	k, err := tpm2.ECDHPub(parms, pt)
	if err != nil {
		return nil, bad
	}
	return k, nil
}

func checkPCRs(pcrs []int) error {
	for i, p := range pcrs {
		if p < 0 || p > maxPCR {
			return fmt.Errorf("PCR %d: PCRs are numbered 0 to %d", p, maxPCR)
		}
		if i > 0 && p <= pcrs[i-1] {
			return errors.New("PCRs must be listed once each, in increasing order")
		}
	}
	return nil
}

// zgen runs TPM2_ECDH_ZGen with the key at path: it loads the key under a
// fresh SRK, authorises with the PIN (or the PCR policy) in a session
// salted to the SRK, and gets the shared point encrypted back.
func zgen(path string, r *Record, pin []byte, peer *ecdh.PublicKey) ([]byte, error) {
	if r.PIN && len(pin) == 0 {
		return nil, hint.Wrap(ErrPINNeeded, "set OCIKP_PASSPHRASE_FILE to a file that holds the key's PIN, for unattended decryption")
	}
	t, err := open(path)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	k, err := createSRK(t)
	if err != nil {
		return nil, err
	}
	defer flush(t, k.handle)
	if !bytes.Equal(k.name.Buffer, r.srkName) {
		return nil, hint.Wrap(fmt.Errorf("TPM %s: %w", path, ErrOtherTPM),
			"a TPM key works only in the TPM that made it: make a new one there (ocikp keygen --backend tpm NAME) and add its recipient to the image (ocikp rewrap --add)")
	}
	ld, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    r.priv,
		InPublic:     r.pub,
	}.Execute(t)
	if err != nil {
		return nil, explain("loading the key", err)
	}
	defer flush(t, ld.ObjectHandle)
	x, y, err := tpm2.ECCPoint(peer)
	if err != nil {
		return nil, err
	}
	var sess tpm2.Session
	if len(r.PCRs) > 0 {
		sess = tpm2.Policy(tpm2.TPMAlgSHA256, 16, policy(r.PCRs, r.PIN),
			tpm2.Salted(k.handle, k.pub), tpm2.AESEncryption(128, tpm2.EncryptOut), tpm2.Auth(pin))
	} else {
		sess = k.session(out, pin)
	}
	rsp, err := tpm2.ECDHZGen{
		KeyHandle: tpm2.AuthHandle{Handle: ld.ObjectHandle, Name: ld.Name, Auth: sess},
		InPoint: tpm2.New2B(tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: x.FillBytes(make([]byte, 32))},
			Y: tpm2.TPM2BECCParameter{Buffer: y.FillBytes(make([]byte, 32))},
		}),
	}.Execute(t)
	if err != nil {
		return nil, explain("ECDH with the TPM key", err)
	}
	pt, err := rsp.OutPoint.Contents()
	if err != nil || len(pt.X.Buffer) > 32 {
		return nil, errors.New("ECDH with the TPM key: malformed reply")
	}
	z := make([]byte, 32)
	copy(z[32-len(pt.X.Buffer):], pt.X.Buffer)
	return z, nil
}

// explain turns the TPM response codes a user can act on into sentinel
// errors with a hint; others keep the TPM's own description.
func explain(what string, err error) error {
	switch {
	case errors.Is(err, tpm2.TPMRCAuthFail), errors.Is(err, tpm2.TPMRCBadAuth):
		return hint.Wrap(fmt.Errorf("%s: %w", what, ErrBadPIN),
			"give the PIN set at keygen (OCIKP_PASSPHRASE_FILE, or the prompt); repeated failures lock the TPM out")
	case errors.Is(err, tpm2.TPMRCLockout):
		return hint.Wrap(fmt.Errorf("%s: %w", what, ErrLockout),
			"wait for the TPM's lockout to expire (its recovery time), or have the TPM's owner reset it: tpm2_dictionarylockout --clear-lockout")
	case errors.Is(err, tpm2.TPMRCPolicyFail), errors.Is(err, tpm2.TPMRCValue) && what == "ECDH with the TPM key":
		return hint.Wrap(fmt.Errorf("%s: %w (the machine booted or ran something else since keygen)", what, ErrPCRMismatch),
			"the key unwraps only in the measured state it was made in: read the PCRs with tpm2_pcrread sha256; a key for the new state needs a new keygen --pcrs")
	case errors.Is(err, tpm2.TPMRCRetry), errors.Is(err, tpm2.TPMRC(0x901)) /* TPM_RC_TESTING */, errors.Is(err, tpm2.TPMRCYielded):
		return fmt.Errorf("%s: the TPM is busy, try again: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
