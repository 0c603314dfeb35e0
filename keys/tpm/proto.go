package tpm

import (
	"encoding/json"

	"github.com/ocikp/ocikp/internal/companion"
)

// Operations of the companion, ocikp-tpm (package tpmdev serves them).
const (
	OpCreate   = "create"    // Device, PIN, PCRs → Public, Pub, Priv, SRK
	OpZGen     = "zgen"      // Device, Record, PIN, Peer → Secret; or Peers → Secrets
	OpCheck    = "check"     // Device, Record → ok
	OpEK       = "ek"        // Device, [EKType] → EK, EKName
	OpEKCert   = "ek-cert"   // Device, [EKType] → Cert (DER, from the TCG NV index)
	OpEKParse  = "ek-parse"  // Data, [Roots] → EKType, EK, Verified (no device)
	OpPCRs     = "pcrs"      // Device, PCRs → Values
	OpEKPolicy = "ek-policy" // PCRs, Values → Policy (no device)
	OpEKSeal   = "ek-seal"   // [EKType], EK, PCRs, Policy, FileKey → Tag, Enc, Key (no device)
	// Device, [EKType], [EKName], Tag, Enc, Key → EKName, and FileKey if the tag
	// is this EK's (none: the stanza is another TPM's).
	OpEKUnseal = "ek-unseal"
)

// Endorsement key types: the TCG default templates (low range) of the
// EK Credential Profile, RSA 2048 and ECC NIST P-256.
const (
	EKECC = "ecc"
	EKRSA = "rsa"
)

// EK certificates' NV indices (TCG EK Credential Profile).
const (
	NVEKCertRSA = 0x01c00002
	NVEKCertECC = 0x01c0000a
)

// MaxEKInput bounds an EK file (a public key or a certificate) and
// MaxEKRoots a CA bundle given to verify it.
const (
	MaxEKInput = 16 << 10
	MaxEKRoots = 256 << 10
)

// MaxPeers bounds the points of one zgen request: a request costs the
// TPM at most this many TPM2_ECDH_ZGen.
const MaxPeers = 4

// Request is one operation for the companion, as one JSON object on its
// stdin: never in its arguments or environment, as it may carry a PIN or
// a file key.
type Request struct {
	Op     string          `json:"op"`
	Device string          `json:"device,omitempty"`
	Record json.RawMessage `json:"record,omitempty"` // as stored (Record.Marshal)
	PIN    []byte          `json:"pin,omitempty"`
	PCRs   []int           `json:"pcrs,omitempty"`
	Values [][]byte        `json:"values,omitempty"`
	Peer   []byte          `json:"peer,omitempty"` // uncompressed P-256 point
	// Instead of Peer, up to MaxPeers points in one request (a hybrid's
	// sealed seed and its stanza: one companion start).
	Peers  [][]byte `json:"peers,omitempty"`
	EK     []byte   `json:"ek,omitempty"`     // uncompressed P-256 point, or RSA modulus
	EKType string   `json:"ektype,omitempty"` // EKECC (or empty) or EKRSA
	// ek-parse: an EK public key or certificate as a user gave it (PEM
	// or DER), and a PEM bundle of CA certificates it must chain to.
	Data    []byte `json:"data,omitempty"`
	Roots   []byte `json:"roots,omitempty"`
	EKName  []byte `json:"ekname,omitempty"`
	Policy  []byte `json:"policy,omitempty"`
	FileKey []byte `json:"filekey,omitempty"`
	Tag     []byte `json:"tag,omitempty"`
	Enc     []byte `json:"enc,omitempty"`
	Key     []byte `json:"key,omitempty"`
}

// Reply is the companion's answer, one JSON object on its stdout.
type Reply struct {
	companion.Status
	Public  []byte   `json:"public,omitempty"`  // uncompressed P-256 point
	Pub     []byte   `json:"pub,omitempty"`     // TPM2B_PUBLIC
	Priv    []byte   `json:"priv,omitempty"`    // TPM2B_PRIVATE
	SRK     []byte   `json:"srk,omitempty"`     // the SRK's name
	Secret  []byte   `json:"secret,omitempty"`  // zgen: the x-coordinate
	Secrets [][]byte `json:"secrets,omitempty"` // zgen with Peers, in order
	EK      []byte   `json:"ek,omitempty"`
	EKName  []byte   `json:"ekname,omitempty"`
	EKType  string   `json:"ektype,omitempty"`
	Cert    []byte   `json:"cert,omitempty"` // ek-cert: DER
	// ek-parse: the certificate chained to one of Roots.
	Verified bool     `json:"verified,omitempty"`
	Values   [][]byte `json:"values,omitempty"`
	Policy   []byte   `json:"policy,omitempty"`
	Tag      []byte   `json:"tag,omitempty"`
	Enc      []byte   `json:"enc,omitempty"`
	Key      []byte   `json:"key,omitempty"`
	FileKey  []byte   `json:"filekey,omitempty"`
}

// Failed is the reply for err.
func Failed(err error) *Reply {
	return &Reply{Status: companion.Status{Error: err.Error(), Code: Code(err)}}
}
