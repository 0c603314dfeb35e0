// Package keychaintest is an in-memory stand-in for Security.framework,
// for tests on any OS: it keeps P-256 keys by tag, answers the calls of
// keychain.Security as macOS documents them, records the dictionaries it
// was given, and counts handles not yet released.
package keychaintest

import (
	"crypto/ecdh"
	"crypto/rand"
	"sync"

	"github.com/ocikp/ocikp/keys/keychain"
)

// Call is one recorded call.
type Call struct {
	Func string
	Dict keychain.Dict
}

type item struct {
	tag  string
	priv *ecdh.PrivateKey
	dp   bool // in the data-protection keychain
}

// Fake implements keychain.Security.
type Fake struct {
	// Entitled opens the data-protection keychain, where Secure Enclave
	// and access-controlled keys live; without it, as for an unsigned
	// binary, creating or looking for such keys fails with
	// errSecMissingEntitlement.
	Entitled bool
	// Fail makes a function ("SecKeyCopyKeyExchangeResult", …) fail with
	// this OSStatus.
	Fail map[string]int32

	mu      sync.Mutex
	items   []*item
	handles map[keychain.Handle]*item
	next    keychain.Handle
	Calls   []Call
	ECDHs   int
}

// Add stores a key under tag, as another program (the Apple provider's
// starter) would have, and returns it.
func (f *Fake) Add(tag string) *ecdh.PrivateKey {
	f.mu.Lock()
	defer f.mu.Unlock()
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	f.items = append(f.items, &item{tag: tag, priv: priv})
	return priv
}

// Len is the number of stored keys.
func (f *Fake) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.items)
}

// Outstanding is the number of handles given out and not released.
func (f *Fake) Outstanding() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.handles)
}

func (f *Fake) record(fn string, d keychain.Dict) error {
	f.Calls = append(f.Calls, Call{fn, d})
	if code, ok := f.Fail[fn]; ok {
		return &keychain.Status{Func: fn, Code: code, Desc: "injected"}
	}
	return nil
}

func (f *Fake) handle(it *item) keychain.Handle {
	if f.handles == nil {
		f.handles = map[keychain.Handle]*item{}
	}
	f.next++
	f.handles[f.next] = it
	return f.next
}

// CreateRandomKey implements keychain.Security.
func (f *Fake) CreateRandomKey(params keychain.Dict) (keychain.Handle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("SecKeyCreateRandomKey", params); err != nil {
		return 0, err
	}
	priv, _ := params.Get("kSecPrivateKeyAttrs").(keychain.Dict)
	_, ac := priv.Get("kSecAttrAccessControl").(keychain.AccessControl)
	if (params.Get("kSecAttrTokenID") != nil || ac) && !f.Entitled {
		return 0, &keychain.Status{Func: "SecKeyCreateRandomKey", Code: -34018, Desc: "A required entitlement isn't present."}
	}
	tag, _ := priv.Get("kSecAttrApplicationTag").([]byte)
	k, _ := ecdh.P256().GenerateKey(rand.Reader)
	it := &item{tag: string(tag), priv: k, dp: params.Get("kSecUseDataProtectionKeychain") == true}
	f.items = append(f.items, it)
	return f.handle(it), nil
}

// CopyMatching implements keychain.Security.
func (f *Fake) CopyMatching(q keychain.Dict) ([]keychain.Handle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("SecItemCopyMatching", q); err != nil {
		return nil, err
	}
	dp := q.Get("kSecUseDataProtectionKeychain") == true
	if dp && !f.Entitled {
		return nil, &keychain.Status{Func: "SecItemCopyMatching", Code: -34018, Desc: "A required entitlement isn't present."}
	}
	tag, _ := q.Get("kSecAttrApplicationTag").([]byte)
	var hs []keychain.Handle
	for _, it := range f.items {
		if it.tag == string(tag) && it.dp == dp {
			hs = append(hs, f.handle(it))
		}
	}
	return hs, nil
}

// Delete implements keychain.Security.
func (f *Fake) Delete(q keychain.Dict) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("SecItemDelete", q); err != nil {
		return err
	}
	h, _ := q.Get("kSecValueRef").(keychain.Handle)
	it := f.handles[h]
	for i, x := range f.items {
		if x == it {
			f.items = append(f.items[:i], f.items[i+1:]...)
			return nil
		}
	}
	return &keychain.Status{Func: "SecItemDelete", Code: -25300, Desc: "not found"}
}

// PublicKey implements keychain.Security.
func (f *Fake) PublicKey(h keychain.Handle) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("SecKeyCopyExternalRepresentation", nil); err != nil {
		return nil, err
	}
	return f.handles[h].priv.PublicKey().Bytes(), nil
}

// KeyExchange implements keychain.Security.
func (f *Fake) KeyExchange(h keychain.Handle, peer []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("SecKeyCopyKeyExchangeResult", nil); err != nil {
		return nil, err
	}
	pub, err := ecdh.P256().NewPublicKey(peer)
	if err != nil {
		return nil, &keychain.Status{Func: "SecKeyCreateWithData", Code: -50, Desc: "bad key"}
	}
	f.ECDHs++
	return f.handles[h].priv.ECDH(pub)
}

// Release implements keychain.Security.
func (f *Fake) Release(h keychain.Handle) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.handles, h)
}
