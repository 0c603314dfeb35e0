// Package p256 implements P-256 recipients and identities with HPKE
// (RFC 9180): DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
//
// The identity needs only an ecdh.KeyExchanger, so the same code serves
// software keys, TPM, PKCS#11 tokens and the Secure Enclave.
//
// Each stanza carries a 4-byte tag, HKDF-Extract(SHA-256, salt = "ocikp/v1
// p256 tag", secret = enc ‖ recipient public key (33-byte compressed))[:4],
// as in age's tag recipients: the key holder recomputes it to skip stanzas
// that are not its own without a private-key operation, while an observer who
// does not know the public key cannot link two layers to one key.
package p256

import (
	"bytes"
	"crypto/ecdh"
	"crypto/elliptic"
	"crypto/hpke"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/bech32m"
)

// Both recipient forms register; the Apple provider's apple-se:// URLs
// are the Keychain backend's.
func init() {
	b := backend.Backend{Recipient: func(_ backend.Env, s string) (envelope.Recipient, error) { return Parse(s) }}
	backend.RegisterBech32(HRP, Near, b)
	backend.Register(LegacyScheme, b)
	backend.RegisterStanza(StanzaType, backend.Classical)
}

// StanzaType is the envelope stanza type of P-256 HPKE recipients.
const StanzaType = "p256"

// HRP is the human-readable part of a recipient string: the recipient is
// the Bech32m encoding (BIP 350) of the 33-byte compressed point under it,
// "ocikp1p2561…", 70 characters, lower case. The checksum catches any
// mistyped character, and up to four, before anything is encrypted.
const HRP = "ocikp1p256"

// LegacyScheme prefixes the first recipient form, "ocikp-p256:" +
// base64url(compressed point), which has no checksum. It is still read.
const LegacyScheme = "ocikp-p256"

const (
	info     = "ocikp/v1 p256"
	encSize  = 65
	keySize  = envelope.FileKeySize + 16
	compSize = 33
)

var (
	kdf  = hpke.HKDFSHA256()
	aead = hpke.AES256GCM()
)

// Recipient wraps file keys for one P-256 public key.
type Recipient struct {
	pub    *ecdh.PublicKey
	comp   []byte
	hpk    hpke.PublicKey
	legacy bool // parsed from the ocikp-p256: form
}

// Deprecated says, for a recipient given in the old form without a
// checksum, what to use instead ("" for the current form).
func (r *Recipient) Deprecated() string {
	if !r.legacy {
		return ""
	}
	return "is in the old " + LegacyScheme + ": form, which has no checksum; use " + r.String() + " (ocikp recipient KEYNAME prints it)"
}

// NewRecipient returns a recipient for a P-256 public key.
func NewRecipient(pub *ecdh.PublicKey) (*Recipient, error) {
	if pub.Curve() != ecdh.P256() {
		return nil, errors.New("not a P-256 key")
	}
	hpk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return &Recipient{pub: pub, comp: Compress(pub), hpk: hpk}, nil
}

// Type is the recipient's stanza type.
func (r *Recipient) Type() string { return StanzaType }

// PublicKey returns the recipient's key.
func (r *Recipient) PublicKey() *ecdh.PublicKey { return r.pub }

// String returns the copy-pasteable recipient string.
func (r *Recipient) String() string { return Format(r.pub) }

// Wrap seals fileKey to the recipient.
func (r *Recipient) Wrap(fileKey []byte) (*envelope.Stanza, error) {
	enc, s, err := hpke.NewSender(r.hpk, kdf, aead, []byte(info))
	if err != nil {
		return nil, err
	}
	ct, err := s.Seal(nil, fileKey)
	if err != nil {
		return nil, err
	}
	return &envelope.Stanza{Type: StanzaType, Tag: Tag(enc, r.comp), Enc: enc, Key: ct}, nil
}

// Matches reports whether a stanza's tag names this recipient.
func (r *Recipient) Matches(s *envelope.Stanza) bool {
	return s.Type == StanzaType && len(s.Tag) > 0 && bytes.Equal(s.Tag, Tag(s.Enc, r.comp))
}

// Tag computes a stanza's tag from enc and the recipient's compressed point.
func Tag(enc, compressed []byte) []byte { return envelope.StanzaTag(StanzaType, enc, compressed) }

// Identity unwraps stanzas addressed to one P-256 key. It knows its public
// key in compressed form only (tags need nothing else, so matching costs no
// curve operation), and obtains the private key from load only when a
// stanza's tag matches: listing, matching and skipping cost no passphrase
// prompt or hardware operation.
type Identity struct {
	comp []byte
	name string
	load func() (ecdh.KeyExchanger, error)
	mu   sync.Mutex // guards kx: a long-lived service shares identities
	kx   ecdh.KeyExchanger
}

// NewIdentity returns an identity for a compressed public key (as
// ParseCompressed returns) whose private half load supplies. name is used in
// error messages.
func NewIdentity(name string, compressed []byte, load func() (ecdh.KeyExchanger, error)) *Identity {
	return &Identity{comp: compressed, name: name, load: load}
}

// NewIdentityFromKey wraps a key exchanger that is already at hand.
func NewIdentityFromKey(name string, kx ecdh.KeyExchanger) *Identity {
	return &Identity{comp: Compress(kx.PublicKey()), name: name, kx: kx}
}

// Name returns the identity's display name.
func (id *Identity) Name() string { return id.name }

// Recipient returns the recipient of the identity's public key.
func (id *Identity) Recipient() (envelope.Recipient, error) {
	pub, err := ParsePoint(id.comp)
	if err != nil {
		return nil, err
	}
	return NewRecipient(pub)
}

// KeyExchanger returns the private half, loading it on first use.
func (id *Identity) KeyExchanger() (ecdh.KeyExchanger, error) {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.kx == nil {
		kx, err := id.load()
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(Compress(kx.PublicKey()), id.comp) {
			return nil, fmt.Errorf("key %q: private key does not match its public key", id.name)
		}
		id.kx = kx
	}
	return id.kx, nil
}

// Matches reports whether a stanza's tag names this identity.
func (id *Identity) Matches(s *envelope.Stanza) bool {
	return s.Type == StanzaType && len(s.Enc) == encSize &&
		(len(s.Tag) == 0 || bytes.Equal(s.Tag, Tag(s.Enc, id.comp)))
}

// Unwrap opens a p256 stanza addressed to this identity.
func (id *Identity) Unwrap(s *envelope.Stanza) ([]byte, error) {
	if !id.Matches(s) {
		return nil, envelope.ErrIncorrectIdentity
	}
	kx, err := id.KeyExchanger()
	if err != nil {
		return nil, err
	}
	// A hardware or Keychain key can fail its ECDH (a locked token, a
	// refused prompt); that is the key's failure, not the stanza's.
	rec := &ErrorRecorder{KeyExchanger: kx}
	priv, err := hpke.NewDHKEMPrivateKey(rec)
	if err != nil {
		return nil, err
	}
	r, err := hpke.NewRecipient(s.Enc, priv, kdf, aead, []byte(info))
	if rec.Err != nil {
		return nil, fmt.Errorf("key %q: %w", id.name, rec.Err)
	}
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", id.name, errStanza(s))
	}
	fk, err := r.Open(nil, s.Key)
	if err != nil {
		if len(s.Tag) == 0 {
			return nil, envelope.ErrIncorrectIdentity
		}
		return nil, fmt.Errorf("key %q: %w", id.name, errStanza(s))
	}
	return fk, nil
}

// ErrorRecorder wraps a key exchanger and keeps the error of its own
// ECDH: HPKE reports any failure as its own, while a hardware or Keychain
// key's (a locked token, a refused prompt) is the key's, not the stanza's.
// One per operation: it is not safe for concurrent use.
type ErrorRecorder struct {
	ecdh.KeyExchanger
	Err error
}

// ECDH performs the wrapped key's ECDH, recording its error.
func (e *ErrorRecorder) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	s, err := e.KeyExchanger.ECDH(peer)
	if err != nil {
		e.Err = err
	}
	return s, err
}

func errStanza(s *envelope.Stanza) error {
	return fmt.Errorf("%s matches this key but does not decrypt: %w", s.Hint(), envelope.ErrTampered)
}

// Format returns the recipient string of a P-256 public key.
func Format(pub *ecdh.PublicKey) string { return FormatCompressed(Compress(pub)) }

// FormatCompressed returns the recipient string of a compressed point.
func FormatCompressed(comp []byte) string { return bech32m.Encode(HRP, comp) }

// Compress returns the 33-byte SEC1 compressed form of pub.
func Compress(pub *ecdh.PublicKey) []byte {
	u := pub.Bytes() // 0x04 ‖ X ‖ Y
	c := make([]byte, compSize)
	c[0] = 2 | u[64]&1
	copy(c[1:], u[1:33])
	return c
}

// ErrNotP256 is returned by Parse for strings that are not P-256 recipients.
var ErrNotP256 = errors.New("not a P-256 recipient")

// ErrChecksum is a recipient string with a mistyped, missing or extra
// character.
var ErrChecksum = bech32m.ErrChecksum

// Parse reads a recipient string: "ocikp1p2561…" (checksummed), the legacy
// "ocikp-p256:<base64url compressed point>", or the Apple Keychain
// provider's "apple-se://se?mode=encrypt&pub=<base64url uncompressed point>".
func Parse(s string) (*Recipient, error) {
	var (
		raw []byte
		err error
	)
	switch {
	case Near(s), strings.HasPrefix(s, LegacyScheme+":"):
		if raw, err = ParseCompressed(s); err != nil {
			return nil, err
		}
	case strings.HasPrefix(s, "apple-se:"):
		raw, err = parseAppleSE(s)
		if err != nil {
			return nil, err
		}
	default:
		return nil, ErrNotP256
	}
	pub, err := ParsePoint(raw)
	if err != nil {
		return nil, err
	}
	r, err := NewRecipient(pub)
	if err != nil {
		return nil, err
	}
	r.legacy = IsLegacy(s)
	return r, nil
}

// Near reports whether s looks like a checksummed P-256 recipient, perhaps
// with one character of its prefix mistyped, so that a typo anywhere is
// reported as a checksum mismatch rather than as an unknown recipient.
func Near(s string) bool { return bech32m.Near(s, HRP) }

// IsLegacy reports the recipient form without a checksum.
func IsLegacy(s string) bool { return strings.HasPrefix(s, LegacyScheme+":") }

// ParseCompressed checks the form of a P-256 recipient string (either
// form) and returns its 33-byte compressed point, without decompressing it
// (which would cost a curve operation); whether it is on the curve is
// established when it is used.
func ParseCompressed(s string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(s, LegacyScheme+":"); ok {
		raw, err := base64.RawURLEncoding.Strict().DecodeString(rest)
		if err != nil || len(raw) != compSize || raw[0]&^1 != 2 {
			return nil, fmt.Errorf("%s recipient: want base64url of a 33-byte compressed point", LegacyScheme)
		}
		return raw, nil
	}
	if !Near(s) {
		return nil, ErrNotP256
	}
	raw, err := bech32m.Decode(s, HRP, compSize, "P-256 recipient")
	if err != nil {
		return nil, err
	}
	if raw[0]&^1 != 2 {
		return nil, errors.New("P-256 recipient: the checksum holds but it does not encode a compressed point")
	}
	return raw, nil
}

// ParsePoint accepts a compressed (33-byte) or uncompressed (65-byte) SEC1 point.
func ParsePoint(raw []byte) (*ecdh.PublicKey, error) {
	if len(raw) == compSize {
		x, y := elliptic.UnmarshalCompressed(elliptic.P256(), raw)
		if x == nil {
			return nil, errors.New("P-256 recipient: not a point on the curve")
		}
		u := make([]byte, 65)
		u[0] = 4
		x.FillBytes(u[1:33])
		y.FillBytes(u[33:])
		raw = u
	}
	pub, err := ecdh.P256().NewPublicKey(raw)
	if err != nil {
		return nil, errors.New("P-256 recipient: not a point on the curve")
	}
	return pub, nil
}

// parseAppleSE reads apple-se://se?mode=encrypt&pub=… without net/url,
// which the exec binary does not link (see DESIGN.md, "Binaries").
func parseAppleSE(s string) ([]byte, error) {
	bad := errors.New("apple-se recipient: want apple-se://se?mode=encrypt&pub=<base64url of a 65-byte point>")
	q, err := AppleSEQuery(s)
	if err != nil || q["mode"] != "encrypt" || q["pub"] == "" {
		return nil, bad
	}
	// The seed wrote base64url, sometimes padded; accept both, nothing else.
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(q["pub"], "="))
	if err != nil || len(raw) != 65 {
		return nil, bad
	}
	return raw, nil
}

// AppleSEQuery returns the query parameters of an Apple key provider URL,
// apple-se://se?k=v&…, percent-decoded; a repeated or malformed parameter is
// an error. (net/url is not used: the exec binary links no net packages.)
func AppleSEQuery(s string) (map[string]string, error) {
	const prefix = "apple-se://se?"
	bad := errors.New("not an apple-se://se?… URL")
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || len(s) > 1024 || strings.ContainsAny(rest, "#?") {
		return nil, bad
	}
	q := map[string]string{}
	for _, kv := range strings.Split(rest, "&") {
		k, v, _ := strings.Cut(kv, "=")
		k, kerr := unescape(k)
		v, verr := unescape(v)
		if _, dup := q[k]; dup || kerr != nil || verr != nil || k == "" {
			return nil, bad
		}
		q[k] = v
	}
	return q, nil
}

func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("bad escape")
		}
		var c byte
		for _, h := range s[i+1 : i+3] {
			switch {
			case h >= '0' && h <= '9':
				c = c<<4 | byte(h-'0')
			case h >= 'a' && h <= 'f':
				c = c<<4 | byte(h-'a'+10)
			case h >= 'A' && h <= 'F':
				c = c<<4 | byte(h-'A'+10)
			default:
				return "", errors.New("bad escape")
			}
		}
		b.WriteByte(c)
		i += 2
	}
	return b.String(), nil
}
