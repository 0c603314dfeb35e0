package plugin

import (
	"github.com/ocikp/ocikp/envelope"
)

// ProtocolVersion is the plugin protocol version spoken here.
const ProtocolVersion = 1

// Operations.
const (
	OpWrap       = "wrap"        // recipient + file_key → stanza
	OpUnwrap     = "unwrap"      // stanza → file_key, or error kind "not_mine"
	OpOpenLegacy = "open-legacy" // blob (a legacy annotation) → secret
	OpPublicKey  = "pubkey"      // recipient → public_key, for wrapping offline
)

// Error kinds.
const (
	KindNotMine = "not_mine" // the stanza or blob is not for this plugin's keys
	KindFailed  = "failed"   // anything else
)

// Request is one line on the plugin's stdin.
type Request struct {
	V         int     `json:"v"`
	Op        string  `json:"op"`
	Recipient string  `json:"recipient,omitempty"`
	FileKey   []byte  `json:"file_key,omitempty"`
	Stanza    *Stanza `json:"stanza,omitempty"`
	Blob      []byte  `json:"blob,omitempty"`
}

// Response is one line on the plugin's stdout.
type Response struct {
	PublicKey *PublicKey `json:"public_key,omitempty"`
	Stanza    *Stanza    `json:"stanza,omitempty"`
	FileKey   []byte     `json:"file_key,omitempty"`
	Secret    []byte     `json:"secret,omitempty"`
	Error     *Error     `json:"error,omitempty"`
}

// PublicKey is an RSA public key that ocikp may wrap file keys for offline,
// with RSA-OAEP and SHA-256 (empty label), writing stanzas of StanzaType with
// KID; the plugin can unwrap those.
type PublicKey struct {
	StanzaType string `json:"stanza_type"`
	KID        string `json:"kid"`
	N          []byte `json:"n"` // big-endian modulus
	E          int    `json:"e"`
	// Prefix, if set, makes the stanza key Prefix ‖ base64(ciphertext) in
	// ASCII rather than the raw ciphertext (Vault's "vault:vN:" form).
	Prefix string `json:"prefix,omitempty"`
}

// Error is a plugin's failure, written for the user: never secrets.
type Error struct {
	Kind    string   `json:"kind"`
	Message string   `json:"message"`
	Hints   []string `json:"hints,omitempty"`
}

// Stanza is envelope.Stanza on the wire.
type Stanza struct {
	Type string `json:"type"`
	Tag  []byte `json:"tag,omitempty"`
	KID  string `json:"kid,omitempty"`
	Enc  []byte `json:"enc,omitempty"`
	Key  []byte `json:"key"`
}

// FromEnvelope converts a stanza for the wire.
func FromEnvelope(s *envelope.Stanza) *Stanza {
	return &Stanza{Type: s.Type, Tag: s.Tag, KID: s.KID, Enc: s.Enc, Key: s.Key}
}

// Envelope converts a wire stanza back.
func (s *Stanza) Envelope() *envelope.Stanza {
	return &envelope.Stanza{Type: s.Type, Tag: s.Tag, KID: s.KID, Enc: s.Enc, Key: s.Key}
}
