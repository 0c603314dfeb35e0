// Package fastpath answers the requests an exec key provider gets once per
// layer, with software keys, without the rest of ocikp: on a node, unwrap
// this layer's key with the keystore's keys; where images are encrypted,
// wrap it for recipients given as recipient strings. ocikp-unwrap links
// only this (protocol, envelope, software keys), so each layer's process
// starts in less time than ocikp's; every other request, and every one
// this package cannot answer the way "ocikp keyprovider" would, it
// declines, and ocikp-unwrap hands the request to ocikp unchanged.
//
// Reply answers an unwrap only when ocikp keyprovider would give the same
// reply from the same request, keystore and flags (the tests hold the two
// side by side): no key named in the decryption parameters; the
// annotation an ocikp envelope; a keystore directory of nothing but key
// files; and the first key that matches a stanza unsealed and opening it.
// It answers a wrap only when ocikp would wrap for the same recipients in
// the same order with the same code (envelope.Seal): --name given; every
// value under it a P-256 or post-quantum recipient string, none in a
// deprecated form; no post-quantum and classical-only recipients mixed.
// Everything else, and every error, is declined, so error messages,
// warnings and hints come from ocikp alone.
package fastpath

import (
	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/soft"
	_ "github.com/ocikp/ocikp/p256" // the stanza types of software keys
	_ "github.com/ocikp/ocikp/pq"
	"github.com/ocikp/ocikp/protocol"
)

// Reply returns the reply to request (one ocicrypt request, as read from
// stdin) for the keystore dir, under --name name (may be empty), or ok
// false when ocikp keyprovider must answer it.
func Reply(dir, name string, request []byte) (reply []byte, ok bool) {
	req, err := protocol.DecodeRequest(request)
	if err != nil {
		return nil, false
	}
	switch req.Op {
	case protocol.OpKeyUnwrap:
		return unwrap(dir, name, req.KeyUnwrapParams)
	case protocol.OpKeyWrap:
		return wrap(name, req.KeyWrapParams)
	}
	return nil, false
}

// wrap seals optsdata for the recipients under name. Without --name,
// keyprovider takes the one entry whose values are all recipients of any
// backend it links (KMS key URLs, TPM EKs…), which this package cannot
// tell: it declines.
func wrap(name string, w *protocol.KeyWrapParams) ([]byte, bool) {
	if name == "" || len(w.Optsdata) == 0 {
		return nil, false
	}
	values := w.EC.Parameters[name]
	if len(values) == 0 {
		return nil, false
	}
	rs := make([]envelope.Recipient, 0, len(values))
	seen := map[backend.Strength]bool{}
	for _, v := range values {
		// Only p256 and pq register here: a key name, a file, a KMS URL
		// or another binary's recipient is unknown, and declined.
		r, err := backend.Recipient(backend.Background{}, string(v))
		if err != nil {
			return nil, false
		}
		if d, ok := r.(interface{ Deprecated() string }); ok && d.Deprecated() != "" {
			return nil, false // ocikp warns about it
		}
		seen[backend.StrengthOf(r)] = true
		rs = append(rs, r)
	}
	if seen[backend.PostQuantum] && seen[backend.Classical] {
		return nil, false // ocikp refuses the mix, or with --allow-classical allows it
	}
	ann, err := envelope.Seal(w.Optsdata, rs...)
	if err != nil {
		return nil, false
	}
	reply, err := protocol.EncodeWrapResponse(ann)
	return reply, err == nil
}

func unwrap(dir, name string, u *protocol.KeyUnwrapParams) ([]byte, bool) {
	if u.DC != nil && namesKeys(u.DC.Parameters, name) {
		return nil, false
	}
	env, err := envelope.Parse(u.Annotation)
	if err != nil {
		return nil, false
	}
	ids, ok := identities(dir)
	if !ok {
		return nil, false
	}
	// Once declined, no key opens anything: UnwrapStanza fails.
	fk, _, err := env.UnwrapStanza(ids.list...)
	if err != nil {
		return nil, false
	}
	opts, err := env.OpenPayload(fk)
	if err != nil {
		return nil, false
	}
	reply, err := protocol.EncodeUnwrapResponse(opts)
	return reply, err == nil
}

// namesKeys reports whether the decryption parameters that keyprovider
// would read name keys: with --name, that provider's entry; without, any
// entry (keyprovider takes as its own an entry whose values all name its
// keys, which this package does not look up).
func namesKeys(params map[string][][]byte, name string) bool {
	names := func(vs [][]byte) bool {
		for _, v := range vs {
			if len(v) > 0 && string(v) != protocol.Enabled {
				return true
			}
		}
		return false
	}
	if name != "" {
		return names(params[name])
	}
	for _, vs := range params {
		if names(vs) {
			return true
		}
	}
	return false
}

// keySet is the keystore's keys as keyprovider lists them, in its order;
// declined ends every key's attempts (firstTry).
type keySet struct {
	list     []envelope.Identity
	declined bool
}

// identities lists the keystore like keyprovider, or declines when the
// directory holds anything besides key files (Keychain references, TPM
// and PKCS#11 records, KMS caches: other identities that keyprovider
// would add after these).
func identities(dir string) (*keySet, bool) {
	entries, others, err := (&soft.Store{Dir: dir}).ListOthers()
	if err != nil || others > 0 {
		return nil, false
	}
	set := &keySet{}
	for _, e := range entries {
		if e.Err != nil {
			continue // keyprovider skips it too; it only names it in errors
		}
		set.list = append(set.list, &firstTry{Key: e.Key.Identity(nil), sealed: e.Key.Protected(), set: set})
	}
	return set, true
}

// firstTry is a key that the fast path tries on the first stanza it
// matches only: the pair (stanza, key) that keyprovider tries first too,
// since both walk the same stanzas and keys in the same order. If that
// attempt opens the stanza, keyprovider's does too, and both go on to the
// same header check; anything else declines the request: a sealed key
// (keyprovider may hold its passphrase, and its stanza may carry another
// file key), or a failed attempt (keyprovider would go on trying, up to
// its budget, and the fast path would add its own attempts to those).
type firstTry struct {
	backend.Key
	sealed bool
	set    *keySet
}

func (k *firstTry) Unwrap(s *envelope.Stanza) ([]byte, error) {
	if k.set.declined || !k.Matches(s) {
		return nil, envelope.ErrIncorrectIdentity
	}
	if k.sealed {
		k.set.declined = true
		return nil, envelope.ErrIncorrectIdentity
	}
	fk, err := k.Key.Unwrap(s)
	if err != nil {
		k.set.declined = true
		return nil, envelope.ErrIncorrectIdentity
	}
	return fk, nil
}
