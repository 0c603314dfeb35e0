// Command ocikp-plugin-kms serves ocikp's cloud KMS recipients and stanzas
// over the plugin protocol (docs/plugin.md). ocikp starts it only when a
// layer or a recipient needs a KMS, so the exec binary that ocicrypt runs
// for every layer does not link the KMS SDKs.
//
// Backends: gcpkms (Google Cloud KMS), awskms (AWS KMS), azurekms and
// azurekeyvault (Azure Key Vault) and hashivault (Vault / OpenBao Transit).
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/awskms"
	"github.com/ocikp/ocikp/keys/azurekv"
	"github.com/ocikp/ocikp/keys/gcpkms"
	"github.com/ocikp/ocikp/keys/vault"
	"github.com/ocikp/ocikp/plugin"
)

// backend is one KMS: it wraps for its key URLs and unwraps its stanzas.
type backend interface {
	Wrap(url string, fileKey []byte) (*envelope.Stanza, error)
	Unwrap(s *envelope.Stanza) ([]byte, error)
}

type handler struct {
	gcp     *gcpkms.Backend
	aws     *awskms.Backend
	vault   *vault.Backend
	azure   *azurekv.Backend
	optsErr error // a configuration error, reported on use
}

func (h *handler) backend(kind string) (backend, error) {
	switch kind {
	case gcpkms.Scheme:
		return h.gcp, h.optsErr
	case awskms.Scheme:
		return h.aws, h.optsErr
	case vault.Scheme:
		return h.vault, h.optsErr
	case azurekv.StanzaType, "azurekeyvault":
		return h.azure, h.optsErr
	}
	return nil, fmt.Errorf("ocikp-plugin-kms does not serve %.30q", kind)
}

func (h *handler) Wrap(recipient string, fileKey []byte) (*envelope.Stanza, error) {
	scheme, _, _ := strings.Cut(recipient, "://")
	b, err := h.backend(scheme)
	if err != nil {
		return nil, err
	}
	return b.Wrap(recipient, fileKey)
}

func (h *handler) Unwrap(s *envelope.Stanza) ([]byte, error) {
	kind := strings.TrimSuffix(s.Type, "-rsa") // gcpkms-rsa, awskms-rsa
	b, err := h.backend(kind)
	if err != nil {
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
	pb, ok := b.(interface {
		PublicKey(string) (*plugin.PublicKey, error)
	})
	if !ok {
		return nil, fmt.Errorf("%s: offline wrapping with a public key is not supported; the KMS wraps", scheme)
	}
	return pb.PublicKey(recipient)
}

func (h *handler) OpenLegacy(blob []byte) ([]byte, error) {
	if !gcpkms.IsLegacy(blob) {
		return nil, fmt.Errorf("not a blob this plugin knows: %w", envelope.ErrIncorrectIdentity)
	}
	if h.optsErr != nil {
		return nil, h.optsErr
	}
	return h.gcp.OpenLegacy(blob)
}

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "ocikp-plugin-kms: error: this program is started by ocikp and takes no arguments (docs/plugin.md)")
		os.Exit(2)
	}
	h := &handler{}
	h.optsErr = applyConfig()
	opts, err := gcpkms.OptionsFromEnv()
	if err != nil && h.optsErr == nil {
		h.optsErr = err
	}
	h.gcp = gcpkms.New(opts)
	defer h.gcp.Close()
	h.aws = awskms.New(opts.Timeout)
	h.vault = vault.New(opts.Timeout)
	h.azure = azurekv.New(opts.Timeout)
	if err := plugin.Serve(os.Stdin, os.Stdout, h); err != nil && !errors.Is(err, os.ErrClosed) {
		fmt.Fprintln(os.Stderr, "ocikp-plugin-kms: error:", err)
		os.Exit(1)
	}
}
