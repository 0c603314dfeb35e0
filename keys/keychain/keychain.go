package keychain

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"fmt"
	"sync"
)

// Security is the Security.framework surface ocikp uses, one method per
// call. Handles returned must be given back to Release.
type Security interface {
	CreateRandomKey(params Dict) (Handle, error)       // SecKeyCreateRandomKey
	CopyMatching(query Dict) ([]Handle, error)         // SecItemCopyMatching, references
	Delete(query Dict) error                           // SecItemDelete
	PublicKey(h Handle) ([]byte, error)                // SecKeyCopyPublicKey + SecKeyCopyExternalRepresentation
	KeyExchange(h Handle, peer []byte) ([]byte, error) // SecKeyCopyKeyExchangeResult, ECDH standard
	Release(h Handle)                                  // CFRelease
}

// DefaultTag is the tag of the Apple key provider's keys (its `starter`).
const DefaultTag = "se.ocicrypt.default.tag"

// Keychain is the key store of this Mac (or of a fake, in tests).
type Keychain struct {
	sec Security
}

var (
	sysOnce sync.Once
	sys     *Keychain
)

// System returns this machine's Keychain; elsewhere than macOS every call
// fails with ErrUnavailable. Security.framework is loaded on first use.
func System() *Keychain {
	sysOnce.Do(func() { sys = &Keychain{sec: system()} })
	return sys
}

// New returns a Keychain over sec (tests use a fake).
func New(sec Security) *Keychain { return &Keychain{sec: sec} }

// Key is one Keychain key found by tag.
type Key struct {
	Tag    string
	Public *ecdh.PublicKey
	kc     *Keychain
}

// Create makes a new P-256 key. A tag that already names a key is refused:
// tags are how keys are found, and two keys under one tag make it
// ambiguous.
func (kc *Keychain) Create(s Spec) (*Key, error) {
	what := "creating a Keychain key"
	if s.SecureEnclave {
		what = "creating a Secure Enclave key"
	}
	switch _, err := kc.Find(s.Tag); {
	case err == nil:
		return nil, explain(what, &Status{Func: "SecKeyCreateRandomKey", Code: errSecDuplicateItem, Desc: fmt.Sprintf("tag %q is taken", s.Tag)})
	case errors.Is(err, ErrUnavailable):
		return nil, fmt.Errorf("%s: %w", what, ErrUnavailable)
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}
	h, err := kc.sec.CreateRandomKey(createParams(s))
	if err != nil {
		return nil, explain(what, err)
	}
	defer kc.sec.Release(h)
	return kc.key(s.Tag, h)
}

func (kc *Keychain) key(tag string, h Handle) (*Key, error) {
	raw, err := kc.sec.PublicKey(h)
	if err != nil {
		return nil, explain("reading the key's public key", err)
	}
	pub, err := ecdh.P256().NewPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("the Keychain key with tag %q is not a P-256 key", tag)
	}
	return &Key{Tag: tag, Public: pub, kc: kc}, nil
}

// Find returns the P-256 private keys with tag (several Keychain items may
// share one). It needs no user approval: only public keys are read.
func (kc *Keychain) Find(tag string) ([]*Key, error) {
	hs, err := kc.matching(tag)
	if err != nil {
		return nil, explain(fmt.Sprintf("looking up Keychain keys with tag %q", tag), err)
	}
	defer kc.release(hs)
	if len(hs) == 0 {
		return nil, fmt.Errorf("tag %q: %w", tag, ErrNotFound)
	}
	var keys []*Key
	for _, h := range hs {
		k, err := kc.key(tag, h)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// matching returns references to the keys with tag in both keychains. A
// binary without the entitlements of the data-protection keychain cannot
// have keys there: that refusal means none.
func (kc *Keychain) matching(tag string) ([]Handle, error) {
	var all []Handle
	for i, q := range tagQueries(tag) {
		hs, err := kc.sec.CopyMatching(q)
		var st *Status
		if i > 0 && errors.As(err, &st) && st.Code == errSecMissingEntitlement {
			continue
		}
		if err != nil {
			kc.release(all)
			return nil, err
		}
		all = append(all, hs...)
	}
	return all, nil
}

func (kc *Keychain) release(hs []Handle) {
	for _, h := range hs {
		kc.sec.Release(h)
	}
}

// Select returns the key with tag and public key pub.
func (kc *Keychain) Select(tag string, pub *ecdh.PublicKey) (*Key, error) {
	keys, err := kc.Find(tag)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if k.Public.Equal(pub) {
			return k, nil
		}
	}
	return nil, fmt.Errorf("tag %q: %w with the recorded public key (%d other key(s) have the tag)", tag, ErrNotFound, len(keys))
}

// withHandle runs f on this key's Keychain item: the item with its tag and
// public key, looked up afresh (references are not kept between calls, so
// a key deleted or replaced meanwhile is noticed).
func (k *Key) withHandle(what string, f func(Handle) error) error {
	hs, err := k.kc.matching(k.Tag)
	if err != nil {
		return explain(what, err)
	}
	defer k.kc.release(hs)
	for _, h := range hs {
		raw, err := k.kc.sec.PublicKey(h)
		if err == nil && bytes.Equal(raw, k.Public.Bytes()) {
			return f(h)
		}
	}
	return fmt.Errorf("%s: tag %q: %w", what, k.Tag, ErrNotFound)
}

// Delete removes the key from the Keychain.
func (k *Key) Delete() error {
	return k.withHandle("deleting the Keychain key", func(h Handle) error {
		if err := k.kc.sec.Delete(deleteQuery(h)); err != nil {
			return explain("deleting the Keychain key", err)
		}
		return nil
	})
}

// PublicKey is the key's public half (ecdh.KeyExchanger).
func (k *Key) PublicKey() *ecdh.PublicKey { return k.Public }

// Curve is P-256 (ecdh.KeyExchanger).
func (k *Key) Curve() ecdh.Curve { return ecdh.P256() }

// ECDH computes the shared secret with the Keychain or Secure Enclave
// private key, which never leaves it (ecdh.KeyExchanger).
func (k *Key) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	if peer.Curve() != ecdh.P256() {
		return nil, errors.New("keychain: peer key is not P-256")
	}
	var out []byte
	err := k.withHandle("ECDH with the Keychain key", func(h Handle) error {
		s, err := k.kc.sec.KeyExchange(h, peer.Bytes())
		if err != nil {
			return explain("ECDH with the Keychain key", err)
		}
		out = s
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) != 32 {
		return nil, fmt.Errorf("keychain: ECDH returned %d bytes, want 32", len(out))
	}
	return out, nil
}

var _ ecdh.KeyExchanger = (*Key)(nil)
