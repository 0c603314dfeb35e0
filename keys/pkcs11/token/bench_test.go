//go:build cgo

package token

import (
	"crypto/ecdh"
	"crypto/rand"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/ocikp/ocikp/keys/pkcs11"
	"github.com/ocikp/ocikp/keys/pkcs11/softhsmtest"
)

// The per-unwrap costs behind the choice of a companion (docs/pkcs11.md):
//
//	go test ./keys/pkcs11/token -run '^$' -bench . -benchtime 200x
//
// BenchmarkDerive is the bare hardware operation: one C_DeriveKey (and
// reading and destroying the derived secret) in an open, logged-in
// session. BenchmarkInProcess is what an exec of ocikp would pay with the
// module loaded in-process: load, C_Initialize, find the token, log in,
// derive, finalize. BenchmarkCompanion is what ocikp pays today: the same
// in a fresh ocikp-pkcs11 process.

const benchPIN = "bench-1234"

func setup(b *testing.B) (*softhsmtest.Token, *pkcs11.URI, *ecdh.PublicKey) {
	tk := softhsmtest.Start(b, "bench", benchPIN)
	u, err := pkcs11.Parse(tk.URI("k"))
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := pkcs11.Generate(u, []byte(benchPIN)); err != nil {
		b.Fatal(err)
	}
	eph, _ := ecdh.P256().GenerateKey(rand.Reader)
	return tk, u, eph.PublicKey()
}

func BenchmarkDerive(b *testing.B) {
	_, u, peer := setup(b)
	ctx := p11.New(softhsmtest.Module)
	if err := ctx.Initialize(); err != nil {
		b.Fatal(err)
	}
	defer ctx.Destroy()
	defer ctx.Finalize()
	s, err := open(ctx, u, benchPIN, false)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.ecdh(peer.Bytes()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkInProcess(b *testing.B) {
	_, u, peer := setup(b)
	req := &pkcs11.Request{Op: "ecdh", Module: softhsmtest.Module, URI: u.String(), PIN: benchPIN, Peer: peer.Bytes()}
	b.ResetTimer()
	for b.Loop() {
		if rep := do(req); rep.Error != "" {
			b.Fatal(rep.Error)
		}
	}
}

func BenchmarkCompanion(b *testing.B) {
	_, u, peer := setup(b)
	req := &pkcs11.Request{Op: "ecdh", Module: softhsmtest.Module, URI: u.String(), PIN: benchPIN, Peer: peer.Bytes()}
	b.ResetTimer()
	for b.Loop() {
		if _, err := pkcs11.Call(req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKept is an unwrap's token cost in ocikp serve: one request to
// the kept companion, whose session stays open.
func BenchmarkKept(b *testing.B) {
	_, u, peer := setup(b)
	pkcs11.KeepCompanion()
	b.Cleanup(pkcs11.StopCompanion)
	req := &pkcs11.Request{Op: "ecdh", Module: softhsmtest.Module, URI: u.String(), PIN: benchPIN, Peer: peer.Bytes()}
	if _, err := pkcs11.Call(req); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := pkcs11.Call(req); err != nil {
			b.Fatal(err)
		}
	}
}
