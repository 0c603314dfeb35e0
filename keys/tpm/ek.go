package tpm

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/bech32m"
)

// StanzaEK is the stanza type of a file key duplicated to a device's
// endorsement key: the fleet case, where the image is made from an
// inventory of EK public keys before the device ever runs ocikp.
const StanzaEK = "tpm-ek"

// MaxEKField bounds a tpm-ek stanza's enc (public area, seed, PCRs) and
// key (the duplicate).
const MaxEKField = 2048

// HRPEK is the human-readable part of an EK-targeted recipient: the
// Bech32m encoding of the EK's point (X‖Y, 64 bytes), followed, for a PCR
// policy, by the sha256 PCR bitmap (3 bytes) and the policy digest.
const HRPEK = "ocikp1tpmek"

const (
	ekPlain  = 64
	ekPolicy = 64 + 3 + 32
)

func init() {
	backend.RegisterBech32(HRPEK, func(s string) bool { return bech32m.Near(s, HRPEK) }, backend.Backend{
		Recipient: func(_ backend.Env, s string) (envelope.Recipient, error) { return ParseEKRecipient(s) },
	})
	backend.RegisterStanza(StanzaEK, backend.Classical)
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
	ek     *ecdh.PublicKey
	pcrs   []int
	policy []byte
}

// NewEKRecipient returns a recipient for the TPM whose EK is ek; with
// pcrs, the layer opens only while they hold values (sha256 bank).
func NewEKRecipient(ek *ecdh.PublicKey, pcrs []int, values [][]byte) (*EKRecipient, error) {
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
	return &EKRecipient{ek: ek, pcrs: pcrs, policy: policy}, nil
}

// Type is the stanza type.
func (r *EKRecipient) Type() string { return StanzaEK }

// Wrap seals fileKey for the EK's TPM (in the companion: no TPM needed).
func (r *EKRecipient) Wrap(fileKey []byte) (*envelope.Stanza, error) {
	rep, err := call(&Request{Op: OpEKSeal, EK: r.ek.Bytes(), PCRs: r.pcrs, Policy: r.policy, FileKey: fileKey},
		"encrypting for a TPM's endorsement key ("+HRPEK+"… recipient)")
	if err != nil {
		return nil, err
	}
	if len(rep.Enc) == 0 || len(rep.Enc) > MaxEKField || len(rep.Key) == 0 || len(rep.Key) > MaxEKField {
		return nil, errors.New("the companion returned no tpm-ek stanza")
	}
	return &envelope.Stanza{Type: StanzaEK, Tag: rep.Tag, Enc: rep.Enc, Key: rep.Key}, nil
}

// String is the recipient string.
func (r *EKRecipient) String() string {
	raw := append([]byte{}, r.ek.Bytes()[1:]...)
	if len(r.pcrs) > 0 {
		raw = append(raw, PCRBitmap(r.pcrs)...)
		raw = append(raw, r.policy...)
	}
	return bech32m.Encode(HRPEK, raw)
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
func ParseEKRecipient(s string) (*EKRecipient, error) {
	const what = "TPM EK recipient"
	size := ekPlain
	if len(s) == bech32m.Len(HRPEK, ekPolicy) {
		size = ekPolicy
	}
	raw, err := bech32m.Decode(s, HRPEK, size, what)
	if err != nil {
		return nil, err
	}
	ek, err := ecdh.P256().NewPublicKey(append([]byte{4}, raw[:64]...))
	if err != nil {
		return nil, errors.New(what + ": not a P-256 endorsement key")
	}
	r := &EKRecipient{ek: ek}
	if size == ekPolicy {
		r.pcrs = PCRsOf(raw[64:67])
		if len(r.pcrs) == 0 {
			return nil, errors.New(what + ": a PCR policy names no PCR")
		}
		r.policy = raw[67:]
	}
	return r, nil
}

// EKIdentity opens tpm-ek stanzas in the TPM whose EK they were made for.
type EKIdentity struct {
	path   string
	ekName []byte
}

// NewEKIdentity returns the identity of the TPM at path (its EK is read
// once, to recognise its stanzas).
func NewEKIdentity(path string) (*EKIdentity, error) {
	rep, err := call(&Request{Op: OpEK, Device: path}, "a layer for a TPM's endorsement key")
	if err != nil {
		return nil, err
	}
	if len(rep.EKName) == 0 {
		return nil, errors.New("the companion returned no endorsement key name")
	}
	return &EKIdentity{path: path, ekName: rep.EKName}, nil
}

// Name names the identity in errors.
func (id *EKIdentity) Name() string { return "the TPM's endorsement key" }

// Matches reports whether a stanza was made for this TPM's EK.
func (id *EKIdentity) Matches(s *envelope.Stanza) bool {
	return s.Type == StanzaEK && bytes.Equal(s.Tag, envelope.StanzaTag(StanzaEK, s.Enc, id.ekName))
}

// Unwrap has the TPM import the sealed file key under the EK and unseal
// it (in a PCR policy session when the stanza has one).
func (id *EKIdentity) Unwrap(s *envelope.Stanza) ([]byte, error) {
	if !id.Matches(s) {
		return nil, envelope.ErrIncorrectIdentity
	}
	fk, _, err := unsealEK(id.path, id.ekName, s)
	return fk, err
}

// unsealEK has the TPM at path open a tpm-ek stanza: the file key, or
// envelope.ErrIncorrectIdentity when the stanza is for another EK; and
// the EK's name either way. ekName, if known, must be the TPM's.
func unsealEK(path string, ekName []byte, s *envelope.Stanza) ([]byte, []byte, error) {
	if len(s.Enc) > MaxEKField || len(s.Key) > MaxEKField {
		return nil, nil, fmt.Errorf("%s: %w", s.Hint(), envelope.ErrMalformed)
	}
	rep, err := call(&Request{Op: OpEKUnseal, Device: path, EKName: ekName, Tag: s.Tag, Enc: s.Enc, Key: s.Key}, "a layer for a TPM's endorsement key")
	if err != nil {
		return nil, nil, err
	}
	if len(rep.FileKey) == 0 {
		return nil, rep.EKName, envelope.ErrIncorrectIdentity
	}
	return rep.FileKey, rep.EKName, nil
}

// EKFromDevice is the environment's TPM, for EK-targeted stanzas: the
// device OCIKP_TPM names, else /dev/tpmrm0 if present; "" for none (a
// machine without a TPM tries no EK).
func EKFromDevice() string {
	p := Path("", "")
	if os.Getenv(EnvTPM) == "" {
		if _, err := os.Stat(p); err != nil {
			return ""
		}
	}
	return p
}

// lazyEK is the EK identity of a device, whose EK is read only when a
// tpm-ek stanza is met: unwraps of other layers never touch the TPM. The
// first such stanza goes to the TPM whole (one companion start in exec,
// not one to learn the EK's name and one to unseal); its reply names the
// EK, which then tells this device's stanzas from others' without it.
type lazyEK struct {
	path   string
	mu     sync.Mutex
	ekName []byte
}

// NewLazyEKIdentity returns the EK identity of the TPM at path.
func NewLazyEKIdentity(path string) backend.Key { return &lazyEK{path: path} }

func (l *lazyEK) Name() string { return "tpm-ek" }

func (l *lazyEK) name() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ekName
}

// Matches: a tpm-ek stanza for this TPM's EK; before the EK's name is
// known, every tpm-ek stanza (Unwrap finds out, or says why it cannot).
func (l *lazyEK) Matches(s *envelope.Stanza) bool {
	if s.Type != StanzaEK {
		return false
	}
	n := l.name()
	return n == nil || bytes.Equal(s.Tag, envelope.StanzaTag(StanzaEK, s.Enc, n))
}

func (l *lazyEK) Unwrap(s *envelope.Stanza) ([]byte, error) {
	if !l.Matches(s) {
		return nil, envelope.ErrIncorrectIdentity
	}
	fk, name, err := unsealEK(l.path, l.name(), s)
	if len(name) > 0 {
		l.mu.Lock()
		l.ekName = name
		l.mu.Unlock()
	}
	return fk, err
}
