package keychain

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/p256"
	"github.com/ocikp/ocikp/pq"
)

// MLKEMHalf is the software ML-KEM-768 half of a hardware-bound hybrid
// key: its 64-byte seed, in clear or sealed under a passphrase (as key
// files seal theirs, bound to the hybrid recipient string).
type MLKEMHalf struct {
	Private   string       `json:"private,omitempty"`
	Encrypted *soft.Sealed `json:"encrypted,omitempty"`
}

func (h *MLKEMHalf) check() error {
	switch {
	case h.Private != "" && h.Encrypted == nil:
		raw, err := base64.StdEncoding.Strict().DecodeString(h.Private)
		if err != nil || len(raw) != pq.MLKEMSeedSize {
			return fmt.Errorf("the ML-KEM half is not %d bytes of base64", pq.MLKEMSeedSize)
		}
		return nil
	case h.Private == "" && h.Encrypted != nil:
		return h.Encrypted.Check(pq.MLKEMSeedSize)
	}
	return errors.New(`the ML-KEM half needs exactly one of "private" and "encrypted"`)
}

// Hybrid reports whether the reference is a hybrid key: P-256 half in the
// Keychain, ML-KEM half in the record.
func (r *Ref) Hybrid() bool { return r.Type == pq.MLKEMP256 }

// Protected reports whether the record's ML-KEM half is sealed.
func (r *Ref) Protected() bool { return r.MLKEM != nil && r.MLKEM.Encrypted != nil }

// KeyType is the key's type for listings: "p256" or "mlkem768p256".
func (r *Ref) KeyType() string {
	if r.Hybrid() {
		return r.Type
	}
	return "p256"
}

// mlkemKey opens the ML-KEM half.
func (r *Ref) mlkemKey(passphrase []byte) (*mlkem.DecapsulationKey768, error) {
	var seed []byte
	if r.MLKEM.Encrypted != nil {
		if len(passphrase) == 0 {
			return nil, soft.ErrPassphraseNeeded
		}
		var err error
		if seed, err = r.MLKEM.Encrypted.Open(passphrase, r.Recipient); err != nil {
			return nil, err
		}
	} else {
		seed, _ = base64.StdEncoding.DecodeString(r.MLKEM.Private)
	}
	return mlkem.NewDecapsulationKey768(seed)
}

// NewRecipient returns the key's recipient.
func (r *Ref) NewRecipient() (envelope.Recipient, error) {
	if r.Hybrid() {
		return pq.Parse(r.Recipient)
	}
	pub, err := r.PublicKey()
	if err != nil {
		return nil, err
	}
	return p256.NewRecipient(pub)
}

// Identity returns the recorded key as a decryption key: matched by its
// recorded public key, the Keychain asked only for the ECDH (and, for a
// hybrid, the ML-KEM half opened, with passphrase if sealed) when a stanza
// matches.
func (r *Ref) Identity(kc *Keychain, passphrase func(keyName string) ([]byte, error)) backend.Key {
	if !r.Hybrid() {
		return p256.NewIdentity(r.Name, r.Compressed(), func() (ecdh.KeyExchanger, error) {
			k, err := r.keychainKey(kc)
			if err != nil {
				return nil, err // not a nil *Key in a non-nil interface
			}
			return k, nil
		})
	}
	return pq.KindOf(r.Type).NewIdentity(r.Name, r.hybridPub, func() (pq.Private, error) {
		var pass []byte
		if r.Protected() && passphrase != nil {
			var err error
			if pass, err = passphrase(r.Name); err != nil {
				return pq.Private{}, err
			}
		}
		return r.Private(kc, pass)
	})
}

// keychainKey finds the recorded Keychain key by its tag and public key.
func (r *Ref) keychainKey(kc *Keychain) (*Key, error) {
	pub, err := r.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", r.Name, err)
	}
	k, err := kc.Select(r.Tag, pub)
	if err != nil {
		return nil, fmt.Errorf("key %q (%s): %w", r.Name, r.Kind(), err)
	}
	return k, nil
}

// Private returns a hybrid's two halves: the ML-KEM key opened (with
// passphrase if sealed) and the Keychain key.
func (r *Ref) Private(kc *Keychain, passphrase []byte) (pq.Private, error) {
	if !r.Hybrid() {
		return pq.Private{}, fmt.Errorf("key %q is not a hybrid key", r.Name)
	}
	dk, err := r.mlkemKey(passphrase)
	if err != nil {
		return pq.Private{}, soft.KeyError(r.Name, fmt.Errorf("ML-KEM half: %w", err))
	}
	k, err := r.keychainKey(kc)
	if err != nil {
		return pq.Private{}, err
	}
	return pq.Private{MLKEM: dk, Classical: k}, nil
}

// CreateHybrid makes a hardware-bound ML-KEM-768 + P-256 key: the P-256
// half a new Keychain (or Secure Enclave) key as s describes, the ML-KEM
// half a fresh software key kept in the returned record, sealed under
// passphrase if one is given. The caller stores the record (Refs.Put) and,
// if that fails, deletes the returned Keychain key.
func (kc *Keychain) CreateHybrid(name string, s Spec, passphrase []byte) (*Ref, *Key, error) {
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		return nil, nil, err
	}
	key, err := kc.Create(s)
	if err != nil {
		return nil, nil, err
	}
	r, err := pq.NewHybridRecipient(dk.EncapsulationKey(), key.Public)
	if err != nil {
		key.Delete()
		return nil, nil, err
	}
	ref := &Ref{Name: name, Type: pq.MLKEMP256, Tag: s.Tag, SecureEnclave: s.SecureEnclave, RequirePresence: s.RequirePresence,
		Classical: p256.Format(key.Public), Recipient: r.String(), Created: time.Now().UTC().Truncate(time.Second),
		MLKEM: &MLKEMHalf{}}
	if len(passphrase) == 0 {
		ref.MLKEM.Private = base64.StdEncoding.EncodeToString(dk.Bytes())
	} else if ref.MLKEM.Encrypted, err = soft.Seal(dk.Bytes(), passphrase, ref.Recipient); err != nil {
		key.Delete()
		return nil, nil, err
	}
	// Read back as a reader would, so no record is written that cannot be used.
	data, err := ref.Marshal()
	if err == nil {
		ref, err = ParseRef(data)
	}
	if err != nil {
		key.Delete()
		return nil, nil, err
	}
	return ref, key, nil
}
