package keyprovider

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"testing"

	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/pq"
	"github.com/ocikp/ocikp/protocol"
)

// BenchmarkServiceUnwrap is the service's per-call work without the gRPC
// transport: decode the request bytes, unwrap with the cached keys, encode
// the reply. One key, as in scripts/load-serve.sh.
func BenchmarkServiceUnwrap(b *testing.B) {
	st := &soft.Store{Dir: b.TempDir()}
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	k, err := st.Create("load", priv, nil)
	if err != nil {
		b.Fatal(err)
	}
	p := &Provider{Name: "ocikp", Store: st, CacheKeys: true}
	ann, err := p.Wrap(&protocol.KeyWrapParams{EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{"ocikp": {[]byte(k.Recipient)}}}, Optsdata: make([]byte, 200)})
	if err != nil {
		b.Fatal(err)
	}
	req, _ := json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
		"dc": map[string]any{"Parameters": map[string]any{}}, "annotation": ann}})
	b.ReportAllocs()
	for b.Loop() {
		r, err := protocol.DecodeRequest(req)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := p.HandleBackend(r); err != nil {
			b.Fatal(err)
		}
	}
}

// benchTyped is a provider whose keystore holds two keys of typ, and the
// recipient of the second.
func benchTyped(b *testing.B, typ string) (*Provider, []byte) {
	st := &soft.Store{Dir: b.TempDir()}
	var rec string
	for _, n := range []string{"alice", "bob"} {
		var k *soft.KeyFile
		var err error
		if kind := pq.KindOf(typ); kind != nil {
			seed, _, _ := kind.GenerateKey()
			k, err = soft.NewHybridKeyFile(n, kind, seed, nil)
		} else {
			priv, _ := ecdh.P256().GenerateKey(rand.Reader)
			k, err = soft.NewKeyFile(n, priv, nil)
		}
		if err == nil {
			err = st.Put(n, k)
		}
		if err != nil {
			b.Fatal(err)
		}
		rec = k.RecipientString()
	}
	return &Provider{Name: "ocikp", Store: st}, []byte(rec)
}

var benchTypes = []string{"p256", pq.XWing, pq.MLKEMP256}

// BenchmarkWrapByType: one wrap (parse the recipient, seal) per key type,
// in the same run.
func BenchmarkWrapByType(b *testing.B) {
	for _, typ := range benchTypes {
		b.Run(typ, func(b *testing.B) {
			p, rec := benchTyped(b, typ)
			params := &protocol.KeyWrapParams{EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{"ocikp": {rec}}}, Optsdata: make([]byte, 200)}
			for b.Loop() {
				if _, err := p.Wrap(params); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnwrapByType: one unwrap with no decryption parameters (list
// the keystore, match tags, one private-key operation) per key type.
func BenchmarkUnwrapByType(b *testing.B) {
	for _, typ := range benchTypes {
		b.Run(typ, func(b *testing.B) {
			p, rec := benchTyped(b, typ)
			ann, err := p.Wrap(&protocol.KeyWrapParams{EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{"ocikp": {rec}}}, Optsdata: make([]byte, 200)})
			if err != nil {
				b.Fatal(err)
			}
			u := &protocol.KeyUnwrapParams{DC: &protocol.DecryptConfig{}, Annotation: ann}
			for b.Loop() {
				if _, err := p.Unwrap(u); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
