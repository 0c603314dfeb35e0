package tpm

import (
	"bytes"
	"crypto/ecdh"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/bech32m"
)

// StanzaEK is the stanza type of a file key duplicated to a device's
// endorsement key: the fleet case, where the image is made from an
// inventory of EK public keys before the device ever runs ocikp.
const StanzaEK = "tpm-ek"

// StanzaEKRSA is the same for a TPM's RSA 2048 endorsement key (most
// TPMs in the field carry one, with its certificate).
const StanzaEKRSA = "tpm-ek-rsa"

// EKStanzaType is the stanza type of an EK of type typ.
func EKStanzaType(typ string) string {
	if typ == EKRSA {
		return StanzaEKRSA
	}
	return StanzaEK
}

// MaxEKField bounds a tpm-ek stanza's enc (public area, seed, PCRs) and
// key (the duplicate).
const MaxEKField = 2048

// HRPEK is the human-readable part of an EK-targeted recipient: the
// Bech32m encoding of the EK's point (X‖Y, 64 bytes), followed, for a PCR
// policy, by the sha256 PCR bitmap (3 bytes) and the policy digest.
const HRPEK = "ocikp1tpmek"

// HRPEKRSA is the same for an RSA EK: its 2048-bit modulus (256 bytes;
// the exponent is the template's, 65537), then the same policy part.
const HRPEKRSA = "ocikp1tpmrsaek"

const (
	ekPlain     = 64
	ekPolicy    = 64 + 3 + 32
	ekRSAPlain  = 256
	ekRSAPolicy = 256 + 3 + 32
)

func init() {
	backend.RegisterBech32(HRPEK, func(s string) bool { return bech32m.Near(s, HRPEK) }, backend.Backend{
		Recipient: func(_ backend.Env, s string) (envelope.Recipient, error) { return ParseEKRecipient(s) },
	})
	backend.RegisterBech32(HRPEKRSA, func(s string) bool { return bech32m.Near(s, HRPEKRSA) }, backend.Backend{
		Recipient: func(_ backend.Env, s string) (envelope.Recipient, error) { return ParseEKRecipient(s) },
	})
	backend.RegisterStanza(StanzaEK, backend.Classical)
	backend.RegisterStanza(StanzaEKRSA, backend.Classical)
}

// EK is an endorsement key's public part: its type (EKECC or EKRSA) and
// key, an uncompressed P-256 point or an RSA 2048 modulus.
type EK struct {
	Type string
	Key  []byte
}

// check checks the key against its type.
func (ek *EK) check() error {
	switch ek.Type {
	case EKECC:
		if _, err := ecdh.P256().NewPublicKey(ek.Key); err != nil {
			return errors.New("the endorsement key is not a P-256 point")
		}
		return nil
	case EKRSA:
		return CheckRSAModulus(ek.Key)
	}
	return fmt.Errorf("unknown endorsement key type %.10q", ek.Type)
}

// CheckRSAModulus checks that n is a 2048-bit RSA modulus, as the TCG
// default RSA EK has.
func CheckRSAModulus(n []byte) error {
	if len(n) != 256 || n[0]&0x80 == 0 || n[255]&1 == 0 {
		return errors.New("the endorsement key is not an RSA 2048 key")
	}
	return nil
}

// ReadEK reads the TPM's endorsement key of type typ (EKECC or EKRSA).
func ReadEK(path, typ string) (*EK, error) {
	rep, err := call(&Request{Op: OpEK, Device: path, EKType: typ}, "reading a TPM's endorsement key")
	if err != nil {
		return nil, err
	}
	ek := &EK{Type: typ, Key: rep.EK}
	if err := ek.check(); err != nil {
		return nil, err
	}
	return ek, nil
}

// ReadEKCert reads the TPM's EK certificate of type typ (DER) from its
// TCG NV index.
func ReadEKCert(path, typ string) ([]byte, error) {
	rep, err := call(&Request{Op: OpEKCert, Device: path, EKType: typ}, "reading a TPM's EK certificate")
	if err != nil {
		return nil, err
	}
	if len(rep.Cert) == 0 || len(rep.Cert) > MaxEKInput {
		return nil, errors.New("the companion returned no EK certificate")
	}
	return rep.Cert, nil
}

// ParseEK reads an EK as a fleet inventory holds it: a PEM public key
// (P-256 or RSA 2048), or an EK certificate (PEM or DER), whose key is
// taken. With roots, a PEM bundle of CA certificates, the certificate
// must chain to one of them (ErrEKUntrusted). Public keys are read here;
// certificates by the companion, as ocikp links no x509.
func ParseEK(data, roots []byte) (*EK, error) {
	if len(data) > MaxEKInput || len(roots) > MaxEKRoots {
		return nil, fmt.Errorf("an EK file is at most %d bytes, a CA bundle %d", MaxEKInput, MaxEKRoots)
	}
	// A public key is read here; only a certificate needs the companion.
	if b, _ := pem.Decode(data); b != nil && b.Type == "PUBLIC KEY" && len(roots) == 0 {
		return parseEKPEM(data)
	} else if b == nil && (len(data) == 0 || data[0] != 0x30) {
		return nil, errors.New("not an EK public key or certificate: want PEM (PUBLIC KEY or CERTIFICATE) or a DER certificate")
	}
	rep, err := call(&Request{Op: OpEKParse, Data: data, Roots: roots}, "reading an EK certificate")
	if err != nil {
		return nil, err
	}
	ek := &EK{Type: rep.EKType, Key: rep.EK}
	if err := ek.check(); err != nil {
		return nil, err
	}
	if len(roots) > 0 && !rep.Verified {
		return nil, ErrEKUntrusted
	}
	return ek, nil
}

// EKPublic reads the TPM's ECC endorsement key (the TCG default template
// under the endorsement hierarchy, as tpm2_createek -G ecc makes it).
func EKPublic(path string) (*ecdh.PublicKey, error) {
	rep, err := call(&Request{Op: OpEK, Device: path}, "reading a TPM's endorsement key")
	if err != nil {
		return nil, err
	}
	pub, err := ecdh.P256().NewPublicKey(rep.EK)
	if err != nil {
		return nil, errors.New("the TPM's endorsement key is not a P-256 key")
	}
	return pub, nil
}

// ReadPCRs reads the sha256 bank's values of pcrs, in order.
func ReadPCRs(path string, pcrs []int) ([][]byte, error) {
	if err := CheckPCRs(pcrs); err != nil {
		return nil, err
	}
	rep, err := call(&Request{Op: OpPCRs, Device: path, PCRs: pcrs}, "reading a TPM's PCRs")
	if err != nil {
		return nil, err
	}
	if len(rep.Values) != len(pcrs) {
		return nil, fmt.Errorf("the TPM returned %d PCR values for %d PCRs", len(rep.Values), len(pcrs))
	}
	return rep.Values, nil
}

// EKRecipient wraps file keys for one TPM, known by its EK's public key
// alone: as a sealed object duplicated to the EK (TPM2_Duplicate's outer
// wrapper, which TPM2_Import opens), made by the companion in software.
type EKRecipient struct {
	ek     EK
	pcrs   []int
	policy []byte
}

// NewEKRecipient returns a recipient for the TPM whose EK is ek; with
// pcrs, the layer opens only while they hold values (sha256 bank).
func NewEKRecipient(ek *ecdh.PublicKey, pcrs []int, values [][]byte) (*EKRecipient, error) {
	return NewEKRecipientFor(&EK{Type: EKECC, Key: ek.Bytes()}, pcrs, values)
}

// NewEKRecipientFor is NewEKRecipient for an EK of either type.
func NewEKRecipientFor(ek *EK, pcrs []int, values [][]byte) (*EKRecipient, error) {
	if err := ek.check(); err != nil {
		return nil, err
	}
	if err := CheckPCRs(pcrs); err != nil {
		return nil, err
	}
	if len(pcrs) != len(values) {
		return nil, fmt.Errorf("%d PCRs but %d values", len(pcrs), len(values))
	}
	var policy []byte
	if len(pcrs) > 0 {
		rep, err := call(&Request{Op: OpEKPolicy, PCRs: pcrs, Values: values}, "a PCR policy for a TPM's endorsement key")
		if err != nil {
			return nil, err
		}
		if len(rep.Policy) != 32 {
			return nil, errors.New("the companion returned no sha256 policy digest")
		}
		policy = rep.Policy
	}
	return &EKRecipient{ek: *ek, pcrs: pcrs, policy: policy}, nil
}

// Type is the stanza type.
func (r *EKRecipient) Type() string { return EKStanzaType(r.ek.Type) }

// Wrap seals fileKey for the EK's TPM (in the companion: no TPM needed).
func (r *EKRecipient) Wrap(fileKey []byte) (*envelope.Stanza, error) {
	rep, err := call(&Request{Op: OpEKSeal, EKType: r.ek.Type, EK: r.ek.Key, PCRs: r.pcrs, Policy: r.policy, FileKey: fileKey},
		"encrypting for a TPM's endorsement key ("+r.hrp()+"… recipient)")
	if err != nil {
		return nil, err
	}
	if len(rep.Enc) == 0 || len(rep.Enc) > MaxEKField || len(rep.Key) == 0 || len(rep.Key) > MaxEKField {
		return nil, errors.New("the companion returned no tpm-ek stanza")
	}
	return &envelope.Stanza{Type: r.Type(), Tag: rep.Tag, Enc: rep.Enc, Key: rep.Key}, nil
}

func (r *EKRecipient) hrp() string {
	if r.ek.Type == EKRSA {
		return HRPEKRSA
	}
	return HRPEK
}

// String is the recipient string.
func (r *EKRecipient) String() string {
	raw := append([]byte{}, r.ek.Key...)
	if r.ek.Type == EKECC {
		raw = raw[1:]
	}
	if len(r.pcrs) > 0 {
		raw = append(raw, PCRBitmap(r.pcrs)...)
		raw = append(raw, r.policy...)
	}
	return bech32m.Encode(r.hrp(), raw)
}

// PCRBitmap is the 3-byte PCR bitmap of a PC-client TPM: PCR n is bit
// n%8 of byte n/8.
func PCRBitmap(pcrs []int) []byte {
	b := make([]byte, (MaxPCR+1)/8)
	for _, p := range pcrs {
		b[p/8] |= 1 << (p % 8)
	}
	return b
}

// PCRsOf lists the PCRs a bitmap selects.
func PCRsOf(bitmap []byte) []int {
	var pcrs []int
	for i, b := range bitmap {
		for j := 0; j < 8; j++ {
			if b&(1<<j) != 0 {
				pcrs = append(pcrs, i*8+j)
			}
		}
	}
	return pcrs
}

// ParseEKRecipient reads an "ocikp1tpmek1…" recipient string.
// ParseEKRecipient reads an "ocikp1tpmek1…" recipient string, or an
// "ocikp1tpmrsaek1…" one (an RSA EK).
func ParseEKRecipient(s string) (*EKRecipient, error) {
	what, hrp, plain, withPolicy := "TPM EK recipient", HRPEK, ekPlain, ekPolicy
	if bech32m.Near(s, HRPEKRSA) {
		what, hrp, plain, withPolicy = "TPM RSA EK recipient", HRPEKRSA, ekRSAPlain, ekRSAPolicy
	}
	size := plain
	if len(s) == bech32m.Len(hrp, withPolicy) {
		size = withPolicy
	}
	raw, err := bech32m.Decode(s, hrp, size, what)
	if err != nil {
		return nil, err
	}
	ek := EK{Type: EKECC, Key: append([]byte{4}, raw[:plain]...)}
	if hrp == HRPEKRSA {
		ek = EK{Type: EKRSA, Key: raw[:plain]}
	}
	if err := ek.check(); err != nil {
		return nil, errors.New(what + ": " + err.Error())
	}
	r := &EKRecipient{ek: ek}
	if size == withPolicy {
		r.pcrs = PCRsOf(raw[plain : plain+3])
		if len(r.pcrs) == 0 {
			return nil, errors.New(what + ": a PCR policy names no PCR")
		}
		r.policy = raw[plain+3:]
	}
	return r, nil
}

// EKIdentity opens tpm-ek stanzas in the TPM whose EK they were made for.
// It knows the EK's name (an enrolment's, or read from the device once),
// so stanzas for other TPMs are told apart with no TPM command.
type EKIdentity struct {
	path   string
	typ    string
	ekName []byte
}

// NewEKIdentity returns the identity of the TPM at path (its EK is read
// once, to recognise its stanzas).
func NewEKIdentity(path string) (*EKIdentity, error) { return NewEKIdentityOf(path, EKECC) }

// NewEKIdentityOf is NewEKIdentity for the EK of type typ.
func NewEKIdentityOf(path, typ string) (*EKIdentity, error) {
	rep, err := call(&Request{Op: OpEK, Device: path, EKType: typ}, "a layer for a TPM's endorsement key")
	if err != nil {
		return nil, err
	}
	if len(rep.EKName) == 0 {
		return nil, errors.New("the companion returned no endorsement key name")
	}
	return &EKIdentity{path: path, typ: typ, ekName: rep.EKName}, nil
}

// Name names the identity in errors: the stanza type it opens.
func (id *EKIdentity) Name() string { return EKStanzaType(id.typ) }

// Matches reports whether a stanza was made for this TPM's EK.
func (id *EKIdentity) Matches(s *envelope.Stanza) bool {
	st := EKStanzaType(id.typ)
	return s.Type == st && bytes.Equal(s.Tag, envelope.StanzaTag(st, s.Enc, id.ekName))
}

// Unwrap has the TPM import the sealed file key under the EK and unseal
// it (in a PCR policy session when the stanza has one).
func (id *EKIdentity) Unwrap(s *envelope.Stanza) ([]byte, error) {
	if !id.Matches(s) {
		return nil, envelope.ErrIncorrectIdentity
	}
	fk, _, err := unsealEK(id.path, id.typ, id.ekName, s)
	return fk, err
}

// unsealEK has the TPM at path open a tpm-ek stanza: the file key, or
// envelope.ErrIncorrectIdentity when the stanza is for another EK; and
// the EK's name either way. ekName, if known, must be the TPM's.
func unsealEK(path, typ string, ekName []byte, s *envelope.Stanza) ([]byte, []byte, error) {
	if len(s.Enc) > MaxEKField || len(s.Key) > MaxEKField {
		return nil, nil, fmt.Errorf("%s: %w", s.Hint(), envelope.ErrMalformed)
	}
	rep, err := call(&Request{Op: OpEKUnseal, Device: path, EKType: typ, EKName: ekName, Tag: s.Tag, Enc: s.Enc, Key: s.Key}, "a layer for a TPM's endorsement key")
	if err != nil {
		return nil, nil, err
	}
	if len(rep.FileKey) == 0 {
		return nil, rep.EKName, envelope.ErrIncorrectIdentity
	}
	return rep.FileKey, rep.EKName, nil
}
