package tpm

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"time"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/hwhybrid"
	"github.com/ocikp/ocikp/p256"
	"github.com/ocikp/ocikp/pq"
)

func init() {
	backend.RegisterStored("tpm", backend.Stored{
		List: func(keystore string, pass backend.Passphrase) []backend.StoredKey {
			var out []backend.StoredKey
			for _, e := range RecordsIn(keystore).List() {
				sk := backend.StoredKey{Name: e.Name, Err: e.Err}
				if e.Record != nil {
					sk.Key = e.Record.Identity(pass)
				}
				out = append(out, sk)
			}
			// An enrolled EK opens layers sealed to it (tpm-ek stanzas);
			// without an enrolment, no stanza for an EK reaches the TPM.
			for _, e := range EnrolmentsIn(keystore).List() {
				sk := backend.StoredKey{Name: EKStanzaType(e.Type), Err: e.Err}
				if e.Enrolment != nil {
					sk.Key = e.Enrolment.Identity()
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
		Stamp: func(keystore string) (t time.Time) {
			t = RecordsIn(keystore).Stamp()
			if e := EnrolmentsIn(keystore).Stamp(); e.After(t) {
				t = e
			}
			return t
		},
	})
}

// Spec says how to protect a new key.
type Spec struct {
	PIN  []byte // the key's authValue; empty for none
	PCRs []int  // PCRs of the sha256 bank the key is bound to; none for no policy
}

// Created is a new key as the TPM returned it.
type Created struct {
	Public  *ecdh.PublicKey
	Pub     []byte // TPM2B_PUBLIC
	Priv    []byte // TPM2B_PRIVATE, encrypted by the TPM under the SRK
	SRKName []byte
}

// Create makes a new P-256 ECDH key in the TPM at path under its SRK.
func Create(path string, s Spec) (*Created, error) {
	if err := CheckPCRs(s.PCRs); err != nil {
		return nil, err
	}
	rep, err := call(&Request{Op: OpCreate, Device: path, PIN: s.PIN, PCRs: s.PCRs}, "a TPM key")
	if err != nil {
		return nil, err
	}
	pub, err := ecdh.P256().NewPublicKey(rep.Public)
	if err != nil {
		return nil, errors.New("the TPM returned no P-256 public key")
	}
	return &Created{Public: pub, Pub: rep.Pub, Priv: rep.Priv, SRKName: rep.SRK}, nil
}

// Check tells, without the PIN, whether the key can be used in the TPM at
// path now: the TPM is there, its SRK is the one the key was made under,
// the TPM loads the key, and a PCR-bound key's PCRs still hold the values
// it was bound to.
func Check(path string, r *Record) error {
	data, err := r.Marshal()
	if err != nil {
		return err
	}
	_, err = call(&Request{Op: OpCheck, Device: path, Record: data}, "a TPM key")
	return err
}

// Key is a TPM key as an ecdh.KeyExchanger: each ECDH has the TPM run
// TPM2_ECDH_ZGen (in the companion, or in this process's handler).
type Key struct {
	r    *Record
	pub  *ecdh.PublicKey
	pin  []byte
	data []byte // r as stored, sent with each request
	// Path overrides the device (tests, --tpm); empty: Path("", recorded).
	Path string
}

// NewKey returns the record's key; pin is its PIN, if it has one.
func (r *Record) NewKey(pin []byte) (*Key, error) {
	pub, err := r.PublicKey()
	if err != nil {
		return nil, err
	}
	data, err := r.Marshal()
	if err != nil {
		return nil, err
	}
	return &Key{r: r, pub: pub, pin: pin, data: data}, nil
}

// PublicKey is the key's public half (ecdh.KeyExchanger).
func (k *Key) PublicKey() *ecdh.PublicKey { return k.pub }

// Curve is P-256 (ecdh.KeyExchanger).
func (k *Key) Curve() ecdh.Curve { return ecdh.P256() }

// ECDH computes the shared secret in the TPM (ecdh.KeyExchanger).
func (k *Key) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	if peer.Curve() != ecdh.P256() {
		return nil, errors.New("tpm: peer key is not P-256")
	}
	if k.r.PIN && len(k.pin) == 0 {
		return nil, Explain(ErrPINNeeded)
	}
	rep, err := call(&Request{Op: OpZGen, Device: Path(k.Path, k.r.Device), Record: k.data, PIN: k.pin, Peer: peer.Bytes()}, "a TPM key")
	if err != nil {
		return nil, err
	}
	if len(rep.Secret) != 32 {
		return nil, fmt.Errorf("tpm: ECDH returned %d bytes, want 32", len(rep.Secret))
	}
	return rep.Secret, nil
}

// ECDHMany computes the shared secrets with several peers in one request
// (one companion start in exec): a hybrid's seed and its stanza.
func (k *Key) ECDHMany(peers []*ecdh.PublicKey) ([][]byte, error) {
	if len(peers) == 0 || len(peers) > MaxPeers {
		return nil, fmt.Errorf("tpm: 1 to %d peer keys, not %d", MaxPeers, len(peers))
	}
	var raw [][]byte
	for _, p := range peers {
		if p.Curve() != ecdh.P256() {
			return nil, errors.New("tpm: peer key is not P-256")
		}
		raw = append(raw, p.Bytes())
	}
	if k.r.PIN && len(k.pin) == 0 {
		return nil, Explain(ErrPINNeeded)
	}
	rep, err := call(&Request{Op: OpZGen, Device: Path(k.Path, k.r.Device), Record: k.data, PIN: k.pin, Peers: raw}, "a TPM key")
	if err != nil {
		return nil, err
	}
	if err := hwhybrid.CheckSecrets("tpm", rep.Secrets, len(peers)); err != nil {
		return nil, err
	}
	return rep.Secrets, nil
}

var _ hwhybrid.ManyExchanger = (*Key)(nil)

// Identity returns the key as a decryption key: its PIN is asked of pass
// only when a stanza matches. A hybrid's ML-KEM half is opened with the
// TPM key then, and kept with the identity (see package hwhybrid).
func (r *Record) Identity(pass backend.Passphrase) backend.Key {
	load := func() (ecdh.KeyExchanger, error) {
		var pin []byte
		if r.PIN && pass != nil {
			p, err := pass(r.Name)
			if err != nil {
				return nil, err
			}
			pin = p
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

// NewRecipient returns the key's recipient (no TPM needed).
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
