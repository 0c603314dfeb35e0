// Package kmsplugin is the main loop shared by ocikp's KMS plugins
// (cmd/ocikp-plugin-gcpkms, -awskms, -azurekms, -hashivault). Each plugin
// links one vendor's SDK only: a process that links all four spends about
// 4 ms initialising them, which every KMS unwrap would pay.
package kmsplugin

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/plugin"
)

// Backend is one KMS: it wraps for its key URLs and unwraps its stanzas.
//
// Target reads a key URL without connecting anywhere and says where a call
// for it would go. The plugin checks that against the configuration's
// Policy before it passes the URL (or a stanza whose kid it is) to any other
// method, so those methods must send nothing, and above all no credential,
// anywhere their Target did not name.
type Backend interface {
	Target(url string) (Target, error)
	Wrap(url string, fileKey []byte) (*envelope.Stanza, error)
	Unwrap(s *envelope.Stanza) ([]byte, error)
}

// PublicKeyer is a backend that can export an RSA public key for offline wrapping.
type PublicKeyer interface {
	PublicKey(url string) (*plugin.PublicKey, error)
}

// LegacyOpener is a backend that reads a legacy provider's blobs.
// LegacyURL returns the key URL a blob names, for the policy check.
type LegacyOpener interface {
	IsLegacy(blob []byte) bool
	LegacyURL(blob []byte) (string, error)
	OpenLegacy(blob []byte) ([]byte, error)
}

// Setup makes a plugin's backends, keyed by URL scheme and stanza type. An
// error is reported on every request (the plugin still answers).
type Setup func(timeout time.Duration) (map[string]Backend, error)

type handler struct {
	name     string
	backends map[string]Backend
	policy   *Policy
	err      error
}

// allowed checks where a call for url would go before anything is sent.
func (h *handler) allowed(b Backend, url string) error {
	t, err := b.Target(url)
	if err != nil {
		return err
	}
	if err := h.policy.Check(t); err != nil {
		return fmt.Errorf("%s: key URL %w", h.policy.rules.Name, err)
	}
	return nil
}

func (h *handler) backend(kind string) (Backend, error) {
	if h.err != nil {
		return nil, h.err
	}
	b, ok := h.backends[kind]
	if !ok {
		return nil, fmt.Errorf("%s does not serve %.30q", h.name, kind)
	}
	return b, nil
}

func (h *handler) Wrap(recipient string, fileKey []byte) (*envelope.Stanza, error) {
	scheme, _, _ := strings.Cut(recipient, "://")
	b, err := h.backend(scheme)
	if err != nil {
		return nil, err
	}
	if err := h.allowed(b, recipient); err != nil {
		return nil, err
	}
	return b.Wrap(recipient, fileKey)
}

func (h *handler) Unwrap(s *envelope.Stanza) ([]byte, error) {
	b, err := h.backend(s.Type)
	if err != nil {
		return nil, err
	}
	if err := h.allowed(b, s.KID); err != nil {
		return nil, err
	}
	return b.Unwrap(s)
}

func (h *handler) PublicKey(recipient string) (*plugin.PublicKey, error) {
	scheme, _, _ := strings.Cut(recipient, "://")
	b, err := h.backend(scheme)
	if err != nil {
		return nil, err
	}
	pk, ok := b.(PublicKeyer)
	if !ok {
		return nil, fmt.Errorf("%s: offline wrapping with a public key is not supported; the KMS wraps", scheme)
	}
	if err := h.allowed(b, recipient); err != nil {
		return nil, err
	}
	return pk.PublicKey(recipient)
}

func (h *handler) OpenLegacy(blob []byte) ([]byte, error) {
	for _, b := range h.backends {
		if lo, ok := b.(LegacyOpener); ok && lo.IsLegacy(blob) {
			if h.err != nil {
				return nil, h.err
			}
			u, err := lo.LegacyURL(blob)
			if err != nil {
				return nil, err
			}
			if err := h.allowed(b, u); err != nil {
				return nil, err
			}
			return lo.OpenLegacy(blob)
		}
	}
	return nil, fmt.Errorf("not a blob %s knows: %w", h.name, envelope.ErrIncorrectIdentity)
}

// Main runs a KMS plugin: settings file, policy, timeout, backends, then
// the protocol loop on stdin and stdout until stdin ends.
func Main(name string, rules Rules, setup Setup) {
	if len(os.Args) > 1 {
		fmt.Fprintf(os.Stderr, "%s: error: this program is started by ocikp and takes no arguments (docs/plugin.md)\n", name)
		os.Exit(2)
	}
	h := &handler{name: name}
	h.err = applyConfig()
	policy, err := LoadPolicy(rules)
	if err != nil {
		h.err = errors.Join(h.err, err)
		policy = &Policy{rules: rules} // the narrowest; every call fails on h.err anyway
	}
	h.policy = policy
	timeout := 30 * time.Second
	if t := os.Getenv("OCIKP_KMS_TIMEOUT"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			h.err = errors.Join(h.err, errors.New("OCIKP_KMS_TIMEOUT: want a duration such as 30s"))
		} else {
			timeout = d
		}
	}
	backends, err := setup(timeout)

	h.backends = backends
	if err != nil && h.err == nil {
		h.err = err
	}
	if err := plugin.Serve(os.Stdin, os.Stdout, h); err != nil {
		fmt.Fprintf(os.Stderr, "%s: error: %v\n", name, err)
		os.Exit(1)
	}
}
