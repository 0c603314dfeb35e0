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
	OpEK       = "ek"        // Device → EK, EKName
	OpPCRs     = "pcrs"      // Device, PCRs → Values
	OpEKPolicy = "ek-policy" // PCRs, Values → Policy (no device)
	OpEKSeal   = "ek-seal"   // EK, PCRs, Policy, FileKey → Tag, Enc, Key (no device)
	// Device, [EKName], Tag, Enc, Key → EKName, and FileKey if the tag
	// is this EK's (none: the stanza is another TPM's).
	OpEKUnseal = "ek-unseal"
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
	Peers   [][]byte `json:"peers,omitempty"`
	EK      []byte   `json:"ek,omitempty"` // uncompressed P-256 point
	EKName  []byte   `json:"ekname,omitempty"`
	Policy  []byte   `json:"policy,omitempty"`
	FileKey []byte   `json:"filekey,omitempty"`
	Tag     []byte   `json:"tag,omitempty"`
	Enc     []byte   `json:"enc,omitempty"`
	Key     []byte   `json:"key,omitempty"`
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
	Values  [][]byte `json:"values,omitempty"`
	Policy  []byte   `json:"policy,omitempty"`
	Tag     []byte   `json:"tag,omitempty"`
	Enc     []byte   `json:"enc,omitempty"`
	Key     []byte   `json:"key,omitempty"`
	FileKey []byte   `json:"filekey,omitempty"`
}

// Failed is the reply for err.
func Failed(err error) *Reply {
	return &Reply{Status: companion.Status{Error: err.Error(), Code: Code(err)}}
}
