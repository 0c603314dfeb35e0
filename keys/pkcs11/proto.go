package pkcs11

import "errors"

// Request is one operation for the companion, ocikp-pkcs11, as one JSON
// object on its stdin (never in its arguments or environment, which other
// users of the machine may read: it carries the PIN).
type Request struct {
	Op     string `json:"op"`     // "keygen", "public", "ecdh" or "rsa-oaep"
	Module string `json:"module"` // resolved by CheckModule
	URI    string `json:"uri"`    // the key's URI, without pin-value
	PIN    string `json:"pin,omitempty"`
	Peer   []byte `json:"peer,omitempty"` // ecdh: uncompressed P-256 point
	// ecdh: instead of Peer, up to MaxPeers points derived in one request
	// (a hybrid's sealed seed and its stanza: one companion start).
	Peers [][]byte `json:"peers,omitempty"`
	// rsa-oaep: a ciphertext for the URI's RSA key, and OAEP's hash
	// ("sha1" or "sha256"), as ocicrypt's PKCS#11 scheme writes them.
	Hash string `json:"hash,omitempty"`
	Data []byte `json:"data,omitempty"`
}

// Reply is the companion's answer, one JSON object on its stdout.
type Reply struct {
	Public []byte `json:"public,omitempty"` // uncompressed P-256 point
	ID     []byte `json:"id,omitempty"`     // keygen: the CKA_ID it chose
	Secret []byte `json:"secret,omitempty"` // ecdh: the x-coordinate
	// ecdh with Peers: the x-coordinates, in order.
	Secrets [][]byte `json:"secrets,omitempty"`
	Error   string   `json:"error,omitempty"`
	Code    string   `json:"code,omitempty"` // one of the Code* constants
}

// MaxPeers bounds the points of one ecdh request: a request costs the
// token at most this many derivations.
const MaxPeers = 4

// Codes the companion gives to failures ocikp decides on.
const (
	CodeModule       = "module"        // the module could not be loaded or initialised
	CodeTokenAbsent  = "token-absent"  // no token matches the URI
	CodePINIncorrect = "pin-incorrect" // CKR_PIN_INCORRECT
	CodePINLocked    = "pin-locked"    // CKR_PIN_LOCKED
	CodeNoKey        = "no-key"        // no key object matches the URI
	CodeExists       = "exists"        // keygen: an object has that label or id
	CodeNoCgo        = "no-cgo"        // the companion was built without cgo
)

// Sentinel errors for the codes.
var (
	ErrTokenAbsent  = errors.New("PKCS#11 token not present")
	ErrPINIncorrect = errors.New("PKCS#11 PIN incorrect")
	ErrPINLocked    = errors.New("PKCS#11 PIN locked")
	ErrNoKey        = errors.New("no such key on the PKCS#11 token")
	ErrExists       = errors.New("the PKCS#11 token already has such an object")
	ErrNoSupport    = errors.New("ocikp-pkcs11 was built without pkcs11 support (cgo)")
)

func codeErr(code string) error {
	switch code {
	case CodeModule:
		return ErrModule
	case CodeTokenAbsent:
		return ErrTokenAbsent
	case CodePINIncorrect:
		return ErrPINIncorrect
	case CodePINLocked:
		return ErrPINLocked
	case CodeNoKey:
		return ErrNoKey
	case CodeExists:
		return ErrExists
	case CodeNoCgo:
		return ErrNoSupport
	}
	return nil
}
