package pkcs11

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"time"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/companion"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/keys/hwhybrid"
	"github.com/ocikp/ocikp/p256"
	"github.com/ocikp/ocikp/pq"
)

var errNoKey = fmt.Errorf("no PKCS#11 key of that name: %w", backend.ErrNoStoredKey)

func init() {
	backend.RegisterStored("pkcs11", backend.Stored{
		List: func(keystore string, pass backend.Passphrase) []backend.StoredKey {
			var out []backend.StoredKey
			for _, e := range RecordsIn(keystore).List() {
				sk := backend.StoredKey{Name: e.Name, Err: e.Err}
				if e.Record != nil {
					sk.Key = e.Record.Identity(pass)
				}
				out = append(out, sk)
			}
			return out
		},
		Get: func(keystore, name string, pass backend.Passphrase) (backend.Key, error) {
			r, err := RecordsIn(keystore).Get(name)
			if err != nil {
				return nil, err
			}
			return r.Identity(pass), nil
		},
		Stamp: func(keystore string) time.Time { return RecordsIn(keystore).Stamp() },
	})
}

// Companion is the executable that drives tokens, looked for as KMS
// plugins are: in $OCIKP_PLUGIN_DIR, next to ocikp, on PATH.
const Companion = "ocikp-pkcs11"

// timeout bounds one token operation (a smart card may wait for its
// reader; nothing should wait forever).
const timeout = 2 * time.Minute

// maxReply bounds the companion's answer.
const maxReply = 64 << 10

// client runs the companion once per request; kept is the one a
// long-lived process keeps (KeepCompanion).
var (
	client = &companion.Client{Name: Companion, Timeout: timeout, MaxReply: maxReply, Coded: codeErr, Explain: explain}
	kept   = &companion.Kept{Client: client, Args: []string{"--serve"}}
)

// Call runs one request in the companion. The module is checked here,
// before anything runs; the PIN goes on the companion's stdin only.
func Call(req *Request) (*Reply, error) {
	if req.Op == "ecdh" && req.PIN != "" {
		return latched(req, call)
	}
	return call(req)
}

func call(req *Request) (*Reply, error) {
	var rep Reply
	var err error
	if req.Op == "ecdh" && keep.Load() {
		err = kept.Call(req, &rep)
	} else {
		err = client.Call(req, &rep)
	}
	if err != nil {
		return nil, err
	}
	return &rep, nil
}

func explain(err error) error {
	switch {
	case errors.Is(err, ErrPINIncorrect):
		return hint.Wrap(err, "give the token's user PIN: pin-source=FILE in the key's URI, or $OCIKP_PASSPHRASE / --passphrase-file (a few more wrong PINs lock the token)")
	case errors.Is(err, ErrPINLocked):
		return hint.Wrap(err, "unlock it with the SO PIN (softhsm2-util, pkcs11-tool --init-pin, ykman piv access unblock-pin)")
	case errors.Is(err, ErrTokenAbsent):
		return hint.Wrap(err, "insert the token, or check the URI's token= and the module's configuration (SOFTHSM2_CONF for SoftHSM)")
	case errors.Is(err, ErrNoSupport):
		return hint.Wrap(err, "build ocikp-pkcs11 with cgo: CGO_ENABLED=1 go install ./cmd/ocikp-pkcs11")
	}
	return err
}

// Generate makes a new P-256 key on the token u names (object= labels
// it) and returns its public key and the URI that finds it (with its id).
func Generate(u *URI, pin []byte) (*ecdh.PublicKey, *URI, error) {
	module, err := CheckModule(u)
	if err != nil {
		return nil, nil, err
	}
	rep, err := Call(&Request{Op: "keygen", Module: module, URI: u.String(), PIN: string(pin)})
	if err != nil {
		return nil, nil, err
	}
	pub, err := ecdh.P256().NewPublicKey(rep.Public)
	if err != nil {
		return nil, nil, errors.New("the token returned no P-256 public key")
	}
	found := *u
	found.ID = rep.ID
	return pub, &found, nil
}

// Existing returns the public key of the key u names on its token.
func Existing(u *URI, pin []byte) (*ecdh.PublicKey, error) {
	module, err := CheckModule(u)
	if err != nil {
		return nil, err
	}
	rep, err := Call(&Request{Op: "public", Module: module, URI: u.String(), PIN: string(pin)})
	if err != nil {
		return nil, err
	}
	pub, err := ecdh.P256().NewPublicKey(rep.Public)
	if err != nil {
		return nil, errors.New("the token returned no P-256 public key")
	}
	return pub, nil
}

// Key is a token key as an ecdh.KeyExchanger: each ECDH runs the
// companion, which opens a session and derives with CKM_ECDH1_DERIVE.
type Key struct {
	r   *Record
	pub *ecdh.PublicKey
	pin []byte
}

// NewKey returns the record's key, to be used with pin.
func (r *Record) NewKey(pin []byte) (*Key, error) {
	pub, err := r.PublicKey()
	if err != nil {
		return nil, err
	}
	return &Key{r: r, pub: pub, pin: pin}, nil
}

// PublicKey is the key's public half (ecdh.KeyExchanger).
func (k *Key) PublicKey() *ecdh.PublicKey { return k.pub }

// Curve is P-256 (ecdh.KeyExchanger).
func (k *Key) Curve() ecdh.Curve { return ecdh.P256() }

// ECDH computes the shared secret on the token: the x-coordinate, which
// is what crypto/ecdh returns and HPKE's DHKEM takes (ecdh.KeyExchanger).
func (k *Key) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	if peer.Curve() != ecdh.P256() {
		return nil, errors.New("pkcs11: peer key is not P-256")
	}
	module, err := CheckModule(k.r.uri)
	if err != nil {
		return nil, err
	}
	rep, err := Call(&Request{Op: "ecdh", Module: module, URI: k.r.URI, PIN: string(k.pin), Peer: peer.Bytes()})
	if err != nil {
		return nil, err
	}
	if len(rep.Secret) != 32 {
		return nil, fmt.Errorf("pkcs11: ECDH returned %d bytes, want 32", len(rep.Secret))
	}
	return rep.Secret, nil
}

// ECDHMany derives the shared secrets with several peers in one request
// (one companion start in exec): a hybrid's seed and its stanza.
func (k *Key) ECDHMany(peers []*ecdh.PublicKey) ([][]byte, error) {
	if len(peers) == 0 || len(peers) > MaxPeers {
		return nil, fmt.Errorf("pkcs11: 1 to %d peer keys, not %d", MaxPeers, len(peers))
	}
	var raw [][]byte
	for _, p := range peers {
		if p.Curve() != ecdh.P256() {
			return nil, errors.New("pkcs11: peer key is not P-256")
		}
		raw = append(raw, p.Bytes())
	}
	module, err := CheckModule(k.r.uri)
	if err != nil {
		return nil, err
	}
	rep, err := Call(&Request{Op: "ecdh", Module: module, URI: k.r.URI, PIN: string(k.pin), Peers: raw})
	if err != nil {
		return nil, err
	}
	if err := hwhybrid.CheckSecrets("pkcs11", rep.Secrets, len(peers)); err != nil {
		return nil, err
	}
	return rep.Secrets, nil
}

var _ hwhybrid.ManyExchanger = (*Key)(nil)

// PIN returns the key's PIN: from the URI's pin-source, else from pass
// (the provider's passphrase source), else none.
func (r *Record) PIN(pass backend.Passphrase) ([]byte, error) {
	if r.uri.PINSource != "" {
		return ReadPINSource(r.uri.PINSource)
	}
	if pass != nil {
		return pass(r.Name)
	}
	return nil, nil
}

// Identity returns the key as a decryption key: its PIN is read only
// when a stanza matches. A hybrid's ML-KEM half is opened with the token
// key then, and kept with the identity (see package hwhybrid).
func (r *Record) Identity(pass backend.Passphrase) backend.Key {
	load := func() (ecdh.KeyExchanger, error) {
		pin, err := r.PIN(pass)
		if err != nil {
			return nil, err
		}
		k, err := r.NewKey(pin)
		if err != nil {
			return nil, err // not a nil *Key in a non-nil interface
		}
		return k, nil
	}
	if r.Hybrid() {
		return hwhybrid.Identity(r.Name, r.Recipient, r.Half, load)
	}
	return p256.NewIdentity(r.Name, r.compressed, load)
}

// NewRecipient returns the key's recipient (no token needed).
func (r *Record) NewRecipient() (envelope.Recipient, error) {
	if r.Hybrid() {
		return pq.Parse(r.Recipient)
	}
	pub, err := r.PublicKey()
	if err != nil {
		return nil, err
	}
	return p256.NewRecipient(pub)
}
