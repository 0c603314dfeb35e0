package tpmdev

import (
	"crypto/ecdh"
	"crypto/rand"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/keys/tpm/tpmtest"
	"github.com/ocikp/ocikp/p256"
)

// The unwrap of one stanza through the TPM identity, as exec runs it (a
// fresh identity and one ocikp-tpm process: open the device, SRK, load,
// salted session, ZGen, flush) and as ocikp serve runs it (Kept: device,
// SRK, key and session kept), against one bare TPM2_ECDH_ZGen of a key
// already loaded, with a password session, on the same swtpm.
//
//	go test ./keys/tpm/tpmdev -run '^$' -bench . -benchtime 200x
func BenchmarkTPM(b *testing.B) {
	sw := tpmtest.Start(b)
	c, err := tpm.Create(sw.Socket, tpm.Spec{})
	if err != nil {
		b.Fatal(err)
	}
	r, err := tpm.NewRecord("node", sw.Socket, c, tpm.Spec{})
	if err != nil {
		b.Fatal(err)
	}
	rcpt, _ := p256.NewRecipient(c.Public)
	s, err := rcpt.Wrap(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("exec-unwrap", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.Identity(nil).Unwrap(s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("kept-unwrap", func(b *testing.B) {
		k := NewKept()
		defer k.Close()
		tpm.SetHandler(k.Handle)
		defer tpm.SetHandler(nil)
		id := r.Identity(nil)
		if _, err := id.Unwrap(s); err != nil { // opens the device
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := id.Unwrap(s); err != nil {
				b.Fatal(err)
			}
		}
		if k.Opens() != 1 {
			b.Fatalf("%d device opens", k.Opens())
		}
	})
	b.Run("bare-zgen", func(b *testing.B) {
		data, _ := r.Marshal()
		k, err := parseKey(data)
		if err != nil {
			b.Fatal(err)
		}
		cn, err := dial(sw.Socket, false)
		if err != nil {
			b.Fatal(err)
		}
		defer cn.close()
		srk, err := cn.getSRK()
		if err != nil {
			b.Fatal(err)
		}
		l, err := cn.load(srk, k)
		if err != nil {
			b.Fatal(err)
		}
		eph, _ := ecdh.P256().GenerateKey(rand.Reader)
		x, y, _ := tpm2.ECCPoint(eph.PublicKey())
		in := tpm2.New2B(tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: x.FillBytes(make([]byte, 32))},
			Y: tpm2.TPM2BECCParameter{Buffer: y.FillBytes(make([]byte, 32))},
		})
		b.Run("password", func(b *testing.B) {
			for b.Loop() {
				if _, err := (tpm2.ECDHZGen{KeyHandle: tpm2.AuthHandle{Handle: l.handle, Name: l.name, Auth: tpm2.PasswordAuth(nil)}, InPoint: in}).Execute(cn.t); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The same with the kept session the service uses: salted, the
		// shared point encrypted back (what the bus must not see).
		b.Run("salted", func(b *testing.B) {
			sess, err := l.session(cn.t, srk, nil)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := (tpm2.ECDHZGen{KeyHandle: tpm2.AuthHandle{Handle: l.handle, Name: l.name, Auth: sess}, InPoint: in}).Execute(cn.t); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
