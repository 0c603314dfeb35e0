// Package recipient turns recipient strings into envelope recipients. Each
// backend registers the URL scheme of its recipient strings; a backend that
// is not part of this build still registers, so that its users get "built
// without …" rather than "unknown recipient".
package recipient

import (
	"errors"
	"sort"
	"strings"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/p256"
)

// ParseFunc parses one recipient string of a registered scheme.
type ParseFunc func(s string) (envelope.Recipient, error)

// ErrUnknown is returned for a string that no registered scheme claims.
var ErrUnknown = errors.New("not an ocikp recipient")

var schemes = map[string]ParseFunc{}

// Register adds a scheme ("ocikp-p256", "gcpkms", …). Later registrations
// replace earlier ones, so a real backend can replace its stub.
func Register(scheme string, f ParseFunc) { schemes[scheme] = f }

func parseP256(s string) (envelope.Recipient, error) { return p256.Parse(s) }

func unavailable(what string) ParseFunc {
	return func(string) (envelope.Recipient, error) { return nil, errors.New(what) }
}

func init() {
	Register(p256.Scheme, parseP256)
	Register("apple-se", parseP256)
	kms := unavailable("cloud KMS recipients need the ocikp-plugin-kms executable, which this ocikp release does not include yet")
	for _, s := range []string{"gcpkms", "awskms", "azurekms", "azurekeyvault", "hashivault"} {
		Register(s, kms)
	}
}

// Scheme returns the scheme of s: the part before the first ':'.
func Scheme(s string) string {
	scheme, _, ok := strings.Cut(s, ":")
	if !ok {
		return ""
	}
	return scheme
}

// Parse returns the recipient that s names. Its errors never quote s, which
// may be any string a caller passed.
func Parse(s string) (envelope.Recipient, error) {
	f, ok := schemes[Scheme(s)]
	if !ok {
		return nil, ErrUnknown
	}
	return f(s)
}

// Known reports whether s has a registered scheme.
func Known(s string) bool {
	_, ok := schemes[Scheme(s)]
	return ok
}

// Schemes lists the registered schemes.
func Schemes() []string {
	var out []string
	for s := range schemes {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}
