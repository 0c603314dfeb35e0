package pq

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/mlkem"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/bech32m"
	"github.com/ocikp/ocikp/p256"
)

func init() {
	b := backend.Backend{Recipient: func(_ backend.Env, s string) (envelope.Recipient, error) { return Parse(s) }}
	for _, k := range kinds {
		backend.RegisterBech32(k.HRP, k.Near, b)
		backend.RegisterStanza(k.Type, backend.PostQuantum)
	}
}

// The stanza and key types, which are also the names keygen --type takes.
const (
	XWing     = "mlkem768x25519" // ML-KEM-768 + X25519 (X-Wing), the default
	MLKEMP256 = "mlkem768p256"   // ML-KEM-768 + P-256, whose P-256 half can be a hardware key
)

// SeedSize is the size of a software private key: the KEM's seed.
const SeedSize = 32

// MLKEMSeedSize is the size of an ML-KEM-768 decapsulation key seed (d ‖ z),
// what a hardware-bound hybrid keeps in the keystore.
const MLKEMSeedSize = mlkem.SeedSize

// Kind is one hybrid KEM as ocikp uses it.
type Kind struct {
	Type    string // stanza and key type
	HRP     string // Bech32 human-readable part of its recipients
	Label   string // for people: "ML-KEM-768 + X25519"
	kem     hpke.KEM
	info    string // HPKE info: binds the envelope version and the stanza type
	pubSize int
	encSize int
}

var kinds = []*Kind{
	newKind(XWing, "ML-KEM-768 + X25519 (X-Wing)", hpke.MLKEM768X25519(), 1216, 1120),
	newKind(MLKEMP256, "ML-KEM-768 + P-256", hpke.MLKEM768P256(), 1249, 1153),
}

func newKind(typ, label string, kem hpke.KEM, pubSize, encSize int) *Kind {
	return &Kind{Type: typ, Label: label, kem: kem, pubSize: pubSize, encSize: encSize,
		HRP: "ocikp1" + typ, info: "ocikp/v1 " + typ}
}

var (
	kdf  = hpke.HKDFSHA256()
	aead = hpke.AES256GCM()
)

// Kinds lists the hybrid KEMs, the default first.
func Kinds() []*Kind { return kinds }

// KindOf returns the kind of a stanza or key type, or nil.
func KindOf(typ string) *Kind {
	for _, k := range kinds {
		if k.Type == typ {
			return k
		}
	}
	return nil
}

// Types lists the type names, for messages.
func Types() []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = k.Type
	}
	return out
}

// GenerateKey returns a new private key seed and its public key.
func (k *Kind) GenerateKey() (seed, pub []byte, err error) {
	priv, err := k.kem.GenerateKey()
	if err != nil {
		return nil, nil, err
	}
	seed, err = priv.Bytes()
	if err != nil {
		return nil, nil, err
	}
	return seed, priv.PublicKey().Bytes(), nil
}

// PrivateKey expands a seed into the private key.
func (k *Kind) PrivateKey(seed []byte) (hpke.PrivateKey, error) {
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("%s private key: %d bytes, want %d", k.Type, len(seed), SeedSize)
	}
	return k.kem.NewPrivateKey(seed)
}

// Recipient wraps file keys for one hybrid public key.
type Recipient struct {
	kind *Kind
	raw  []byte
	pub  hpke.PublicKey
}

// NewRecipient returns a recipient for a serialized public key of kind k.
func (k *Kind) NewRecipient(raw []byte) (*Recipient, error) {
	if len(raw) != k.pubSize {
		return nil, fmt.Errorf("%s recipient: public key of %d bytes, want %d", k.Type, len(raw), k.pubSize)
	}
	pub, err := k.kem.NewPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%s recipient: not a valid public key", k.Type)
	}
	return &Recipient{kind: k, raw: bytes.Clone(raw), pub: pub}, nil
}

// NewHybridRecipient returns the MLKEM768P256 recipient of an ML-KEM
// encapsulation key and a P-256 public key (a hardware key's).
func NewHybridRecipient(ek *mlkem.EncapsulationKey768, t *ecdh.PublicKey) (*Recipient, error) {
	pub, err := hpke.NewHybridPublicKey(ek, t)
	if err != nil {
		return nil, err
	}
	k := KindOf(MLKEMP256)
	if t.Curve() == ecdh.X25519() {
		k = KindOf(XWing)
	}
	return k.NewRecipient(pub.Bytes())
}

// Type is the recipient's stanza type.
func (r *Recipient) Type() string { return r.kind.Type }

// Bytes returns the serialized public key.
func (r *Recipient) Bytes() []byte { return r.raw }

// String returns the copy-pasteable recipient string.
func (r *Recipient) String() string { return r.kind.Format(r.raw) }

// PostQuantum reports that the recipient resists a quantum adversary.
func (r *Recipient) PostQuantum() bool { return true }

// Wrap seals fileKey to the recipient.
func (r *Recipient) Wrap(fileKey []byte) (*envelope.Stanza, error) {
	enc, s, err := hpke.NewSender(r.pub, kdf, aead, []byte(r.kind.info))
	if err != nil {
		return nil, err
	}
	ct, err := s.Seal(nil, fileKey)
	if err != nil {
		return nil, err
	}
	return &envelope.Stanza{Type: r.kind.Type, Tag: r.kind.Tag(enc, r.raw), Enc: enc, Key: ct}, nil
}

// Matches reports whether a stanza's tag names this recipient.
func (r *Recipient) Matches(s *envelope.Stanza) bool {
	return s.Type == r.kind.Type && len(s.Tag) > 0 && bytes.Equal(s.Tag, r.kind.Tag(s.Enc, r.raw))
}

// Tag computes a stanza's tag over enc and the whole hybrid public key, as
// for P-256 recipients (envelope.StanzaTag).
func (k *Kind) Tag(enc, pub []byte) []byte { return envelope.StanzaTag(k.Type, enc, pub) }

// Private is an identity's private key: a software key, or the two halves
// of a hybrid whose classical half is a hardware or Keychain key.
type Private struct {
	Key       hpke.PrivateKey     // a software key, or nil
	MLKEM     crypto.Decapsulator // with Classical, when Key is nil
	Classical ecdh.KeyExchanger
}

func (p Private) publicKey() ([]byte, error) {
	if p.Key != nil {
		return p.Key.PublicKey().Bytes(), nil
	}
	k, err := hpke.NewHybridPrivateKey(p.MLKEM, p.Classical)
	if err != nil {
		return nil, err
	}
	return k.PublicKey().Bytes(), nil
}

// Identity unwraps the stanzas of one hybrid key. It knows its public key,
// enough to match tags; load supplies the private key only when a stanza
// matches, so listing and skipping cost no passphrase or hardware prompt.
type Identity struct {
	kind *Kind
	pub  []byte
	name string
	load func() (Private, error)
	mu   sync.Mutex // guards priv: a long-lived service shares identities
	priv *Private
}

// NewIdentity returns an identity for a public key of kind k whose private
// half load supplies; name is used in error messages.
func (k *Kind) NewIdentity(name string, pub []byte, load func() (Private, error)) *Identity {
	return &Identity{kind: k, pub: pub, name: name, load: load}
}

// NewIdentityFromKey wraps a private key at hand.
func NewIdentityFromKey(name string, priv Private) (*Identity, error) {
	pub, err := priv.publicKey()
	if err != nil {
		return nil, err
	}
	for _, k := range kinds {
		if len(pub) == k.pubSize {
			return &Identity{kind: k, pub: pub, name: name, priv: &priv}, nil
		}
	}
	return nil, errors.New("not a hybrid ML-KEM key ocikp uses")
}

// Name returns the identity's display name.
func (id *Identity) Name() string { return id.name }

// Type returns the key's type.
func (id *Identity) Type() string { return id.kind.Type }

// Recipient returns the identity's recipient.
func (id *Identity) Recipient() (envelope.Recipient, error) { return id.kind.NewRecipient(id.pub) }

// Matches reports whether a stanza's tag names this identity, without a
// private-key operation.
func (id *Identity) Matches(s *envelope.Stanza) bool {
	return s.Type == id.kind.Type && len(s.Enc) == id.kind.encSize &&
		(len(s.Tag) == 0 || bytes.Equal(s.Tag, id.kind.Tag(s.Enc, id.pub)))
}

func (id *Identity) private() (*Private, error) {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.priv == nil {
		priv, err := id.load()
		if err != nil {
			return nil, err
		}
		pub, err := priv.publicKey()
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", id.name, err)
		}
		if !bytes.Equal(pub, id.pub) {
			return nil, fmt.Errorf("key %q: private key does not match its public key", id.name)
		}
		id.priv = &priv
	}
	return id.priv, nil
}

// Unwrap opens a stanza addressed to this identity. A stanza that matches
// by tag but does not open is reported as tampered; an untagged one that
// does not open is simply not this key's.
func (id *Identity) Unwrap(s *envelope.Stanza) ([]byte, error) {
	if !id.Matches(s) {
		return nil, envelope.ErrIncorrectIdentity
	}
	priv, err := id.private()
	if err != nil {
		return nil, err
	}
	key := priv.Key
	var hw *p256.ErrorRecorder
	if key == nil {
		// A Keychain or hardware key can fail its ECDH (locked, a refused
		// prompt): that is the key's failure, not the stanza's.
		hw = &p256.ErrorRecorder{KeyExchanger: priv.Classical}
		if key, err = hpke.NewHybridPrivateKey(priv.MLKEM, hw); err != nil {
			return nil, fmt.Errorf("key %q: %w", id.name, err)
		}
	}
	r, err := hpke.NewRecipient(s.Enc, key, kdf, aead, []byte(id.kind.info))
	if err == nil {
		var fk []byte
		if fk, err = r.Open(nil, s.Key); err == nil {
			return fk, nil
		}
	}
	if hw != nil && hw.Err != nil {
		return nil, fmt.Errorf("key %q: %w", id.name, hw.Err)
	}
	if len(s.Tag) == 0 {
		return nil, envelope.ErrIncorrectIdentity
	}
	return nil, fmt.Errorf("key %q: %s matches this key but does not decrypt: %w", id.name, s.Hint(), envelope.ErrTampered)
}

// Format returns the recipient string of a public key of kind k: the
// Bech32m encoding under "ocikp1" + type, lower case (see internal/bech32m).
func (k *Kind) Format(pub []byte) string { return bech32m.Encode(k.HRP, pub) }

// PublicSize is the size of the kind's serialized public keys.
func (k *Kind) PublicSize() int { return k.pubSize }

// HasForm reports whether s has the prefix and length of the kind's
// recipient strings (its checksum is not verified).
func (k *Kind) HasForm(s string) bool {
	return len(s) == bech32m.Len(k.HRP, k.pubSize) && strings.HasPrefix(s, k.HRP+"1")
}

// ErrChecksum is a recipient string with a mistyped, missing or extra
// character.
var ErrChecksum = bech32m.ErrChecksum

// ErrNotPQ is returned for strings that are not hybrid recipients.
var ErrNotPQ = errors.New("not a post-quantum recipient")

// Near reports whether s starts like the kind's recipients, one character
// of the prefix mistyped at most.
func (k *Kind) Near(s string) bool { return bech32m.Near(s, k.HRP) }

// kindOfString returns the kind whose recipients s resembles, or nil.
func kindOfString(s string) *Kind {
	for _, k := range kinds {
		if k.Near(s) {
			return k
		}
	}
	return nil
}

// ParsePublic checks the form and checksum of a recipient string and
// returns its kind and public key bytes, without decoding the key (which
// costs an ML-KEM key check); Parse does that.
func ParsePublic(s string) (*Kind, []byte, error) {
	k := kindOfString(s)
	if k == nil {
		return nil, nil, ErrNotPQ
	}
	raw, err := bech32m.Decode(s, k.HRP, k.pubSize, k.Type+" recipient")
	if err != nil {
		return nil, nil, err
	}
	return k, raw, nil
}

// Parse reads a recipient string.
func Parse(s string) (*Recipient, error) {
	k, raw, err := ParsePublic(s)
	if err != nil {
		return nil, err
	}
	return k.NewRecipient(raw)
}
