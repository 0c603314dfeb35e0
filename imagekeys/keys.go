package imagekeys

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/kms"
	"github.com/ocikp/ocikp/legacy"
	"github.com/ocikp/ocikp/pq"
)

// Annotation keys ocicrypt writes on an encrypted layer.
const (
	KeysPrefix     = "org.opencontainers.image.enc.keys."
	ProviderPrefix = KeysPrefix + "provider."
	PubOpts        = "org.opencontainers.image.enc.pubopts"
)

// Wrapping formats of a key annotation's blobs.
const (
	FormatOcikp       = "ocikp-envelope-v1"
	FormatAppleSeed   = "apple-keychain-provider (seed format)"
	FormatGCPSeed     = "gcp-kmscrypt-provider (seed format)"
	FormatOpaque      = "opaque"
	FormatUnreadable  = "unreadable"
	maxBlobsPerScheme = 64
)

// Wrapping is one key-wrapping annotation of a layer.
type Wrapping struct {
	Annotation string `json:"annotation"`
	// Scheme is ocicrypt's: "provider", "jwe", "pkcs7", "pgp", "pkcs11",
	// or whatever follows the keys prefix.
	Scheme    string     `json:"scheme"`
	Provider  string     `json:"provider,omitempty"`
	Blobs     []BlobInfo `json:"blobs"`
	blobs     [][]byte   // decoded, in order
	envelopes []*envelope.Envelope
}

// BlobInfo describes one wrapped key of a Wrapping.
type BlobInfo struct {
	Format     string          `json:"format"`
	Recipients []RecipientInfo `json:"recipients,omitempty"`
	Error      string          `json:"error,omitempty"`
}

// RecipientInfo is a stanza's public description.
type RecipientInfo struct {
	Type string `json:"type"`
	// Kind: "p256" or "pq" (a public-key recipient, hinted by a per-layer
	// tag), "kms" (a KMS key, named by KID) or "other".
	Kind string `json:"kind"`
	KID  string `json:"kid,omitempty"`
	// Tag is the stanza's tag in hex: it is derived from the layer's
	// ephemeral key, so the same recipient has a different tag on each
	// layer; only a holder of the recipient string can match it.
	Tag  string `json:"tag,omitempty"`
	Hint string `json:"hint"`
	// Strength: "post-quantum" (hybrid ML-KEM, symmetric KMS keys),
	// "classical" (P-256, RSA) or "unknown".
	Strength string `json:"strength"`
}

// Wrappings returns the key-wrapping annotations of a layer, sorted by
// annotation name.
func Wrappings(annotations map[string]string) []*Wrapping {
	var out []*Wrapping
	for k, v := range annotations {
		suffix, ok := strings.CutPrefix(k, KeysPrefix)
		if !ok {
			continue
		}
		w := &Wrapping{Annotation: k, Scheme: suffix}
		if p, ok := strings.CutPrefix(suffix, "provider."); ok {
			w.Scheme, w.Provider = "provider", p
		}
		w.read(v)
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Annotation < out[j].Annotation })
	return out
}

// read decodes ocicrypt's comma-separated base64 blobs.
func (w *Wrapping) read(v string) {
	// Counted before splitting: 4 MiB of commas would be four million
	// strings.
	if n := strings.Count(v, ",") + 1; n > maxBlobsPerScheme {
		w.Blobs = []BlobInfo{{Format: FormatUnreadable, Error: fmt.Sprintf("%d wrapped keys, at most %d are read", n, maxBlobsPerScheme)}}
		return
	}
	parts := strings.Split(v, ",")
	for _, p := range parts {
		blob, err := base64.StdEncoding.DecodeString(p)
		if err != nil {
			w.blobs = append(w.blobs, nil)
			w.envelopes = append(w.envelopes, nil)
			w.Blobs = append(w.Blobs, BlobInfo{Format: FormatUnreadable, Error: "not base64"})
			continue
		}
		w.blobs = append(w.blobs, blob)
		info, env := describeBlob(w.Scheme, blob)
		w.envelopes = append(w.envelopes, env)
		w.Blobs = append(w.Blobs, info)
	}
}

func describeBlob(scheme string, blob []byte) (BlobInfo, *envelope.Envelope) {
	if scheme != "provider" {
		return BlobInfo{Format: FormatOpaque}, nil
	}
	env, err := envelope.Parse(blob)
	switch {
	case err == nil:
		info := BlobInfo{Format: FormatOcikp}
		for _, s := range env.Recipients {
			info.Recipients = append(info.Recipients, describeStanza(s))
		}
		return info, env
	case !errors.Is(err, envelope.ErrNotEnvelope):
		return BlobInfo{Format: FormatUnreadable, Error: err.Error()}, nil
	case legacy.IsApple(blob):
		return BlobInfo{Format: FormatAppleSeed}, nil
	case IsGCPSeed(blob):
		return BlobInfo{Format: FormatGCPSeed}, nil
	}
	return BlobInfo{Format: FormatOpaque}, nil
}

// IsGCPSeed reports whether blob looks like the GCP kmscrypt provider's.
func IsGCPSeed(blob []byte) bool {
	s := string(blob)
	return strings.Contains(s, `"key_url"`) && strings.Contains(s, `"wrapped_key"`)
}

func describeStanza(s *envelope.Stanza) RecipientInfo {
	r := RecipientInfo{Type: s.Type, Kind: "other", Hint: s.Hint()}
	switch {
	case kms.IsStanza(s.Type):
		r.Kind = "kms"
	case s.Type == "p256":
		r.Kind = "p256"
	case pq.KindOf(s.Type) != nil:
		r.Kind = "pq"
	}
	r.Strength = backend.StanzaStrength(s.Type).String()
	if s.KID != "" {
		r.KID = s.KID
	}
	if len(s.Tag) > 0 {
		r.Tag = hex.EncodeToString(s.Tag)
	}
	return r
}

// Encrypted reports whether a layer media type is an encrypted one.
func Encrypted(mediaType string) bool { return strings.HasSuffix(mediaType, "+encrypted") }
