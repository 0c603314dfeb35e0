package tpmdev

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ocikp/ocikp/keys/tpm"
)

// srk is a primary key (the storage root key, or the EK), created afresh
// from its standard template: the TPM derives the same key from its seed
// each time, so nothing is persisted in the TPM.
type srk struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	pub    tpm2.TPMTPublic
}

func createPrimary(t transport.TPM, hierarchy tpm2.TPMHandle, template tpm2.TPMTPublic, what string) (*srk, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: hierarchy,
		InPublic:      tpm2.New2B(template),
	}.Execute(t)
	if err != nil {
		return nil, explain("creating the "+what, err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		flush(t, rsp.ObjectHandle)
		return nil, fmt.Errorf("creating the %s: %w", what, err)
	}
	return &srk{handle: rsp.ObjectHandle, name: rsp.Name, pub: *pub}, nil
}

func flush(t transport.TPM, h tpm2.TPMHandle) {
	tpm2.FlushContext{FlushHandle: h}.Execute(t) //nolint:errcheck // best effort
}

// salted are the options of every session that carries a secret: salted
// to the SRK (or EK), the first parameter AES-128-CFB encrypted one way.
func (s *srk) salted(out bool) []tpm2.AuthOption {
	if out {
		return []tpm2.AuthOption{tpm2.Salted(s.handle, s.pub), tpm2.AESEncryption(128, tpm2.EncryptOut)}
	}
	return []tpm2.AuthOption{tpm2.Salted(s.handle, s.pub), tpm2.AESEncryption(128, tpm2.EncryptIn)}
}

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

// policy runs a key's policy commands in a session: its PCRs (their
// current values, which the TPM compares with the policy at use) and,
// with a PIN, PolicyAuthValue.
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

// policyDigest computes a key's policy for the PCRs' current values in a
// trial session.
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

func keyTemplate(s tpm.Spec, authPolicy []byte) tpm2.TPMTPublic {
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

// create makes a new P-256 ECDH key under the SRK.
func (c *conn) create(s tpm.Spec) (*tpm.Reply, error) {
	if err := tpm.CheckPCRs(s.PCRs); err != nil {
		return nil, err
	}
	k, err := c.getSRK()
	if err != nil {
		return nil, err
	}
	var authPolicy []byte
	if len(s.PCRs) > 0 {
		if authPolicy, err = policyDigest(c.t, s.PCRs, len(s.PIN) > 0); err != nil {
			return nil, explain("computing the PCR policy", err)
		}
	}
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, k.salted(false)...)},
		// The PIN is the first parameter: encrypted on the bus.
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			UserAuth: tpm2.TPM2BAuth{Buffer: s.PIN},
		}},
		InPublic: tpm2.New2B(keyTemplate(s, authPolicy)),
	}.Execute(c.t)
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
	return &tpm.Reply{Public: ecPub.Bytes(), Pub: tpm2.Marshal(rsp.OutPublic), Priv: tpm2.Marshal(rsp.OutPrivate), SRK: k.name.Buffer}, nil
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

// checkSRK refuses a key made under another SRK: another TPM, or this
// one's owner hierarchy cleared since.
func (c *conn) checkSRK(k *key) (*srk, error) {
	s, err := c.getSRK()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(s.name.Buffer, k.srkName) {
		return nil, fmt.Errorf("TPM %s: %w", c.path, tpm.ErrOtherTPM)
	}
	return s, nil
}

// zgen runs TPM2_ECDH_ZGen with the key: loaded under the SRK,
// authorised with the PIN (or the PCR policy) in a session salted to the
// SRK, the shared point encrypted back.
func (c *conn) zgen(k *key, pin []byte, peer *ecdh.PublicKey) ([]byte, error) {
	if k.rec.PIN && len(pin) == 0 {
		return nil, tpm.ErrPINNeeded
	}
	s, err := c.checkSRK(k)
	if err != nil {
		return nil, err
	}
	l, err := c.load(s, k)
	if err != nil {
		return nil, err
	}
	x, y, err := tpm2.ECCPoint(peer)
	if err != nil {
		return nil, err
	}
	var sess tpm2.Session
	switch {
	case len(k.rec.PCRs) > 0:
		// A policy is satisfied per use: a new policy session each time.
		sess = tpm2.Policy(tpm2.TPMAlgSHA256, 16, policy(k.rec.PCRs, k.rec.PIN), append(s.salted(true), tpm2.Auth(pin))...)
	case c.keep:
		if sess, err = l.session(c.t, s, pin); err != nil {
			return nil, explain("starting a session", err)
		}
	default:
		sess = tpm2.HMAC(tpm2.TPMAlgSHA256, 16, append(s.salted(true), tpm2.Auth(pin))...)
	}
	rsp, err := tpm2.ECDHZGen{
		KeyHandle: tpm2.AuthHandle{Handle: l.handle, Name: l.name, Auth: sess},
		InPoint: tpm2.New2B(tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: x.FillBytes(make([]byte, 32))},
			Y: tpm2.TPM2BECCParameter{Buffer: y.FillBytes(make([]byte, 32))},
		}),
	}.Execute(c.t)
	if err != nil {
		l.dropSession(c.t) // a failed command may have ended it
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

// check tells, without the PIN, whether the key can be used now: its SRK,
// the TPM loads it, a PCR-bound key's PCRs hold the values it is bound to.
func (c *conn) check(k *key) error {
	s, err := c.checkSRK(k)
	if err != nil {
		return err
	}
	if _, err := c.load(s, k); err != nil {
		return err
	}
	if len(k.rec.PCRs) == 0 {
		return nil
	}
	pub, err := k.pub.Contents()
	if err != nil {
		return err
	}
	now, err := policyDigest(c.t, k.rec.PCRs, k.rec.PIN)
	if err != nil {
		return explain("reading the PCR policy", err)
	}
	if !bytes.Equal(now, pub.AuthPolicy.Buffer) {
		return explain("the key's PCR policy", tpm2.TPMRCPolicyFail)
	}
	return nil
}

// readPCRs reads the sha256 bank's values of pcrs, in order.
func (c *conn) readPCRs(pcrs []int) ([][]byte, error) {
	if err := tpm.CheckPCRs(pcrs); err != nil {
		return nil, err
	}
	var out [][]byte
	for _, p := range pcrs { // one at a time: a reply holds at most 8 digests
		rsp, err := tpm2.PCRRead{PCRSelectionIn: pcrSelection([]int{p})}.Execute(c.t)
		if err != nil {
			return nil, explain("reading the PCRs", err)
		}
		if len(rsp.PCRValues.Digests) != 1 || len(rsp.PCRValues.Digests[0].Buffer) != sha256.Size {
			return nil, fmt.Errorf("the TPM has no sha256 value for PCR %d", p)
		}
		out = append(out, rsp.PCRValues.Digests[0].Buffer)
	}
	return out, nil
}

// explain turns the TPM response codes a user can act on into the
// sentinel errors of package tpm (which adds the hints); others keep the
// TPM's own description.
func explain(what string, err error) error {
	switch {
	case errors.Is(err, tpm2.TPMRCAuthFail), errors.Is(err, tpm2.TPMRCBadAuth):
		return fmt.Errorf("%s: %w", what, tpm.ErrBadPIN)
	case errors.Is(err, tpm2.TPMRCLockout):
		return fmt.Errorf("%s: %w", what, tpm.ErrLockout)
	case errors.Is(err, tpm2.TPMRCPolicyFail), errors.Is(err, tpm2.TPMRCValue) && what == "ECDH with the TPM key":
		return fmt.Errorf("%s: %w (the machine booted or ran something else since keygen)", what, tpm.ErrPCRMismatch)
	case errors.Is(err, tpm2.TPMRCRetry), errors.Is(err, tpm2.TPMRC(0x901)) /* TPM_RC_TESTING */, errors.Is(err, tpm2.TPMRCYielded):
		return fmt.Errorf("%s: the TPM is busy, try again: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
