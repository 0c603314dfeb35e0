package keychain

import (
	"fmt"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/p256"
)

// Env is what the Keychain backend needs of the provider: the Keychain
// to search (nil: this machine's).
type Env interface{ Keychain() *Keychain }

// The Apple key provider's URLs, both directions:
// apple-se://se?mode=encrypt&pub=… is a P-256 recipient;
// apple-se://se?mode=decrypt[&tag=TAG] selects the Keychain keys of a tag.
func init() {
	backend.Register("apple-se", backend.Backend{
		Recipient: func(_ backend.Env, s string) (envelope.Recipient, error) { return p256.Parse(s) },
		Decrypt:   decrypt,
		IsDecrypt: IsDecryptURL,
	})
}

func decrypt(env backend.Env, s string) (backend.Selection, error) {
	tag, err := ParseDecryptURL(s)
	if err != nil {
		return backend.Selection{}, err
	}
	kc := System()
	if e, ok := env.(Env); ok && e.Keychain() != nil {
		kc = e.Keychain()
	}
	keys, err := kc.Find(tag)
	if err != nil {
		return backend.Selection{}, err
	}
	var sel backend.Selection
	for _, k := range keys {
		sel.Keys = append(sel.Keys, p256.NewIdentityFromKey(fmt.Sprintf("keychain tag %q", tag), k))
	}
	return sel, nil
}
