package pq_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"testing"

	"github.com/ocikp/ocikp/p256"
	"github.com/ocikp/ocikp/pq"
)

// The private-key work of one unwrap, by type: loading the key from its
// stored form (a KEM seed; a P-256 scalar) and opening one stanza. The
// exec provider pays both once per layer.
func BenchmarkLoadAndOpen(b *testing.B) {
	for _, k := range pq.Kinds() {
		b.Run(k.Type, func(b *testing.B) {
			seed, pub, _ := k.GenerateKey()
			r, _ := k.NewRecipient(pub)
			s, _ := r.Wrap(make([]byte, 32))
			for b.Loop() {
				id := k.NewIdentity("b", pub, func() (pq.Private, error) {
					priv, err := k.PrivateKey(seed)
					return pq.Private{Key: priv}, err
				})
				if _, err := id.Unwrap(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("p256", func(b *testing.B) {
		priv, _ := ecdh.P256().GenerateKey(rand.Reader)
		scalar := priv.Bytes()
		r, _ := p256.NewRecipient(priv.PublicKey())
		s, _ := r.Wrap(make([]byte, 32))
		comp := p256.Compress(priv.PublicKey())
		for b.Loop() {
			id := p256.NewIdentity("b", comp, func() (ecdh.KeyExchanger, error) { return ecdh.P256().NewPrivateKey(scalar) })
			if _, err := id.Unwrap(s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// One wrap: parse the recipient string, seal the file key.
func BenchmarkParseAndWrap(b *testing.B) {
	for _, k := range pq.Kinds() {
		b.Run(k.Type, func(b *testing.B) {
			_, pub, _ := k.GenerateKey()
			str := k.Format(pub)
			for b.Loop() {
				r, err := pq.Parse(str)
				if err != nil {
					b.Fatal(err)
				}
				r.Wrap(make([]byte, 32))
			}
		})
	}
	b.Run("p256", func(b *testing.B) {
		priv, _ := ecdh.P256().GenerateKey(rand.Reader)
		str := p256.Format(priv.PublicKey())
		for b.Loop() {
			r, err := p256.Parse(str)
			if err != nil {
				b.Fatal(err)
			}
			r.Wrap(make([]byte, 32))
		}
	})
}

// Checking a recipient string's Bech32m checksum: what key files avoid
// by keeping the public key in base64 too (see keys/soft).
func BenchmarkParsePublic(b *testing.B) {
	for _, k := range pq.Kinds() {
		b.Run(k.Type, func(b *testing.B) {
			_, pub, _ := k.GenerateKey()
			s := k.Format(pub)
			for b.Loop() {
				if _, _, err := pq.ParsePublic(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
