package tpm

import (
	"crypto/ecdh"
	"errors"
	"time"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/p256"
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
			// The device's EK opens layers sealed to it (tpm-ek stanzas).
			if dev := EKFromDevice(); dev != "" {
				out = append(out, backend.StoredKey{Name: "tpm-ek", Key: NewLazyEKIdentity(dev)})
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
		Stamp: func(keystore string) (t time.Time) { return RecordsIn(keystore).Stamp() },
	})
}

// Key is a TPM key as an ecdh.KeyExchanger: each ECDH opens the TPM,
// loads the key and runs TPM2_ECDH_ZGen.
type Key struct {
	r   *Record
	pub *ecdh.PublicKey
	pin []byte
	// Path overrides the device (tests, --tpm); empty: Path("", recorded).
	Path string
}

// NewKey returns the record's key; pin is its PIN, if it has one.
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

// ECDH computes the shared secret in the TPM (ecdh.KeyExchanger).
func (k *Key) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	if peer.Curve() != ecdh.P256() {
		return nil, errors.New("tpm: peer key is not P-256")
	}
	return zgen(Path(k.Path, k.r.Device), k.r, k.pin, peer)
}

var _ ecdh.KeyExchanger = (*Key)(nil)

// Identity returns the key as a decryption key: its PIN is asked of pass
// only when a stanza matches.
func (r *Record) Identity(pass backend.Passphrase) backend.Key {
	return p256.NewIdentity(r.Name, r.compressed, func() (ecdh.KeyExchanger, error) {
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
			return nil, err
		}
		return k, nil
	})
}

// NewRecipient returns the key's recipient (no TPM needed).
func (r *Record) NewRecipient() (envelope.Recipient, error) {
	pub, err := r.PublicKey()
	if err != nil {
		return nil, err
	}
	return p256.NewRecipient(pub)
}
