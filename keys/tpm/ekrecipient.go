package tpm

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/google/go-tpm/tpm2"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/bech32m"
)

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

// ekPublic is the public area of the TCG default ECC EK with point pt.
func ekPublic(x, y []byte) tpm2.TPMTPublic {
	ek := tpm2.ECCEKTemplate
	ek.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: x},
		Y: tpm2.TPM2BECCParameter{Buffer: y},
	})
	return ek
}

// String is the recipient string.
func (r *EKRecipient) String() string {
	pt, err := r.ek.Unique.ECC()
	if err != nil {
		return ""
	}
	raw := append(pad32(pt.X.Buffer), pad32(pt.Y.Buffer)...)
	if len(r.pcrs) > 0 {
		raw = append(raw, pcrSelection(r.pcrs).PCRSelections[0].PCRSelect...)
		raw = append(raw, r.policy...)
	}
	return bech32m.Encode(HRPEK, raw)
}

func pad32(b []byte) []byte {
	out := make([]byte, 32)
	copy(out[32-min(len(b), 32):], b)
	return out
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
	if _, err := ecdh.P256().NewPublicKey(append([]byte{4}, raw[:64]...)); err != nil {
		return nil, errors.New(what + ": not a P-256 endorsement key")
	}
	ek := ekPublic(raw[:32], raw[32:64])
	var pcrs []int
	var policy []byte
	if size == ekPolicy {
		for i, b := range raw[64:67] {
			for j := 0; j < 8; j++ {
				if b&(1<<j) != 0 {
					pcrs = append(pcrs, i*8+j)
				}
			}
		}
		if len(pcrs) == 0 {
			return nil, errors.New(what + ": a PCR policy names no PCR")
		}
		policy = raw[67:]
	}
	return newEKRecipient(&ek, pcrs, policy)
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
// tpm-ek stanza is met: unwraps of other layers never touch the TPM.
type lazyEK struct {
	path string
	once sync.Once
	id   *EKIdentity
	err  error
}

// NewLazyEKIdentity returns the EK identity of the TPM at path.
func NewLazyEKIdentity(path string) backend.Key { return &lazyEK{path: path} }

func (l *lazyEK) load() (*EKIdentity, error) {
	l.once.Do(func() { l.id, l.err = NewEKIdentity(l.path) })
	return l.id, l.err
}

func (l *lazyEK) Name() string { return "tpm-ek" }

// Matches: a tpm-ek stanza for this TPM's EK; when the EK cannot be read,
// every tpm-ek stanza, so that Unwrap says why.
func (l *lazyEK) Matches(s *envelope.Stanza) bool {
	if s.Type != StanzaEK {
		return false
	}
	id, err := l.load()
	return err != nil || id.Matches(s)
}

func (l *lazyEK) Unwrap(s *envelope.Stanza) ([]byte, error) {
	if s.Type != StanzaEK {
		return nil, envelope.ErrIncorrectIdentity
	}
	id, err := l.load()
	if err != nil {
		return nil, fmt.Errorf("the TPM's endorsement key: %w", err)
	}
	return id.Unwrap(s)
}
