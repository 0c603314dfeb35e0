// Package backend is the registry of key backends: it maps the strings
// users write, in both directions, to the backend that understands them.
// A recipient string (--encryption-key provider:NAME:…) becomes an
// envelope.Recipient; a decryption-key string (--decryption-key
// provider:NAME:…) becomes the keys an unwrap may try. Each backend is one
// package that registers its scheme once, for both, in its init; the core
// (keyprovider) knows none of their syntaxes.
//
// Keystore key names and key file paths are not schemes: they name the
// provider's own keystore, which the provider resolves itself.
//
// A backend that is not part of this build still registers, so that its
// users get "built without …" rather than "unknown recipient".
package backend

import (
	"context"
	"errors"
	"sort"
	"strings"

	"github.com/ocikp/ocikp/envelope"
)

// Key is a decryption key: an identity that can tell, without a
// private-key operation, which stanzas may be its own.
type Key interface {
	envelope.Identity
	Name() string
	Matches(s *envelope.Stanza) bool
}

// Env is what a backend may draw on to resolve a string: the provider's
// own resources, never the request's. Backends that need more (the KMS
// plugins, the Keychain) assert the interfaces they own on it.
type Env interface {
	Context() context.Context
}

// Selection is what a decryption-key string selects: local keys, tried
// first, and KMS key URLs whose stanzas alone go to the KMS.
type Selection struct {
	Keys []Key
	KMS  []string
}

// Strength is how a recipient, or a stanza, stands against an adversary
// with a quantum computer who stores today's layers.
type Strength int

const (
	// Classical keys (P-256, RSA) fall to a quantum computer.
	Classical Strength = iota
	// PostQuantum keys (hybrid ML-KEM, symmetric KMS keys) do not.
	PostQuantum
	// Unknown is a stanza type this build does not know.
	Unknown
)

func (s Strength) String() string {
	switch s {
	case Classical:
		return "classical"
	case PostQuantum:
		return "post-quantum"
	}
	return "unknown"
}

// Backend is one registered string form.
type Backend struct {
	// Recipient parses a recipient string; nil if the form only names
	// decryption keys.
	Recipient func(env Env, s string) (envelope.Recipient, error)
	// Decrypt resolves a decryption-key string; nil if the form only names
	// recipients.
	Decrypt func(env Env, s string) (Selection, error)
	// IsDecrypt reports whether s is a decryption-key string, for a
	// scheme whose strings also name recipients (apple-se's two modes);
	// nil: every string of the scheme is one. Without a provider name an
	// entry is ocikp's only if its values are.
	IsDecrypt func(s string) bool
}

// ErrUnknown is returned for a string that no registered scheme claims.
var ErrUnknown = errors.New("not an ocikp recipient")

var (
	schemes     = map[string]Backend{}
	bech32Kinds []bech32Kind
	strengths   = map[string]Strength{}
)

type bech32Kind struct {
	hrp  string
	near func(string) bool
}

// Register adds a scheme ("ocikp-p256", "gcpkms", "apple-se", …). A later
// registration replaces an earlier one, so a real backend can replace its
// stub.
func Register(scheme string, b Backend) { schemes[scheme] = b }

// RegisterBech32 adds a checksummed recipient kind under its Bech32
// human-readable part ("ocikp1p256"); near recognises its strings, typos
// included, so that a typo is reported by its parser as a checksum
// mismatch, not as an unknown recipient.
func RegisterBech32(hrp string, near func(string) bool, b Backend) {
	bech32Kinds = append(bech32Kinds, bech32Kind{hrp, near})
	schemes[hrp] = b
}

// RegisterStanza records the strength of a stanza type a backend writes.
func RegisterStanza(typ string, s Strength) { strengths[typ] = s }

// StanzaStrength returns the strength of a stanza type.
func StanzaStrength(typ string) Strength {
	if s, ok := strengths[typ]; ok {
		return s
	}
	return Unknown
}

// Scheme returns the scheme of s: the human-readable part of a
// checksummed recipient, else the part before the first ':'.
func Scheme(s string) string {
	for _, k := range bech32Kinds {
		if k.near(s) {
			return k.hrp
		}
	}
	scheme, _, ok := strings.Cut(s, ":")
	if !ok {
		return ""
	}
	return scheme
}

// Recipient returns the recipient that s names. Its errors never quote s,
// which may be any string a caller passed.
func Recipient(env Env, s string) (envelope.Recipient, error) {
	b, ok := schemes[Scheme(s)]
	if !ok || b.Recipient == nil {
		return nil, ErrUnknown
	}
	return b.Recipient(env, s)
}

// IsRecipient reports whether s has a registered recipient scheme.
func IsRecipient(s string) bool {
	b, ok := schemes[Scheme(s)]
	return ok && b.Recipient != nil
}

// Decrypt resolves a decryption-key string of a registered scheme; ok is
// false when no scheme claims it (a keystore name or a file path, for the
// provider to resolve).
func Decrypt(env Env, s string) (sel Selection, ok bool, err error) {
	b, found := schemes[Scheme(s)]
	if !found || b.Decrypt == nil {
		return Selection{}, false, nil
	}
	sel, err = b.Decrypt(env, s)
	return sel, true, err
}

// IsDecrypt reports whether s has a registered decryption-key scheme.
func IsDecrypt(s string) bool {
	b, ok := schemes[Scheme(s)]
	return ok && b.Decrypt != nil && (b.IsDecrypt == nil || b.IsDecrypt(s))
}

// Schemes lists the registered recipient schemes.
func Schemes() []string {
	var out []string
	for s, b := range schemes {
		if b.Recipient != nil {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// StrengthOf returns how a recipient stands: those that know say so
// (PostQuantum() bool); the others are classical.
func StrengthOf(r envelope.Recipient) Strength {
	if pq, ok := r.(interface{ PostQuantum() bool }); ok && pq.PostQuantum() {
		return PostQuantum
	}
	return Classical
}

// Background is an Env outside a request: no deadline, no provider
// resources.
type Background struct{}

// Context returns context.Background().
func (Background) Context() context.Context { return context.Background() }
