package tpm

import (
	"crypto/ecdh"
	"crypto/rand"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/ocikp/ocikp/keys/tpm/tpmtest"
	"github.com/ocikp/ocikp/p256"
)

// The unwrap of one stanza through the TPM identity (open the device,
// SRK, load, salted session, ZGen, flush: what each exec unwrap pays)
// against one bare TPM2_ECDH_ZGen of a key already loaded, with a
// password session, on the same swtpm.
//
//	go test ./keys/tpm -run '^$' -bench . -benchtime 200x
func BenchmarkTPM(b *testing.B) {
	sw := tpmtest.Start(b)
	c, err := Create(sw.Socket, Spec{})
	if err != nil {
		b.Fatal(err)
	}
	r, err := NewRecord("node", sw.Socket, c, Spec{})
	if err != nil {
		b.Fatal(err)
	}
	rcpt, _ := p256.NewRecipient(c.Public)
	s, err := rcpt.Wrap(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("unwrap", func(b *testing.B) {
		for b.Loop() {
			// A fresh identity each time, as a fresh exec process has.
			if _, err := r.Identity(nil).Unwrap(s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bare-zgen", func(b *testing.B) {
		t, err := open(sw.Socket)
		if err != nil {
			b.Fatal(err)
		}
		defer t.Close()
		k, err := createSRK(t)
		if err != nil {
			b.Fatal(err)
		}
		defer flush(t, k.handle)
		ld, err := tpm2.Load{
			ParentHandle: tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: tpm2.PasswordAuth(nil)},
			InPrivate:    r.priv, InPublic: r.pub,
		}.Execute(t)
		if err != nil {
			b.Fatal(err)
		}
		defer flush(t, ld.ObjectHandle)
		eph, _ := ecdh.P256().GenerateKey(rand.Reader)
		x, y, _ := tpm2.ECCPoint(eph.PublicKey())
		in := tpm2.New2B(tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: x.FillBytes(make([]byte, 32))},
			Y: tpm2.TPM2BECCParameter{Buffer: y.FillBytes(make([]byte, 32))},
		})
		for b.Loop() {
			if _, err := (tpm2.ECDHZGen{KeyHandle: tpm2.AuthHandle{Handle: ld.ObjectHandle, Name: ld.Name, Auth: tpm2.PasswordAuth(nil)}, InPoint: in}).Execute(t); err != nil {
				b.Fatal(err)
			}
		}
	})
}
