package tpm

import (
	"crypto/ecdh"
	"crypto/rand"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/ocikp/ocikp/envelope"
)

// FuzzParseEKStanza: a tpm-ek stanza comes from an image; whatever it
// holds, parsing neither panics nor accepts an object Wrap would not make.
func FuzzParseEKStanza(f *testing.F) {
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	x, y, _ := tpm2.ECCPoint(priv.PublicKey())
	ek := tpm2.ECCEKTemplate
	ek.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: x.FillBytes(make([]byte, 32))},
		Y: tpm2.TPM2BECCParameter{Buffer: y.FillBytes(make([]byte, 32))},
	})
	for _, pcrs := range [][]int{nil, {7, 11}} {
		values := make([][]byte, len(pcrs))
		for i := range values {
			values[i] = make([]byte, 32)
		}
		r, err := NewEKRecipient(&ek, pcrs, values)
		if err != nil {
			f.Fatal(err)
		}
		s, err := r.Wrap(make([]byte, 32))
		if err != nil {
			f.Fatal(err)
		}
		if _, err := parseEKStanza(s); err != nil {
			f.Fatalf("Wrap's own stanza: %v", err)
		}
		f.Add(s.Enc, s.Key)
	}
	f.Fuzz(func(t *testing.T, enc, key []byte) {
		st, err := parseEKStanza(&envelope.Stanza{Type: StanzaEK, Enc: enc, Key: key})
		if err != nil {
			return
		}
		if st.pub.Type != tpm2.TPMAlgKeyedHash || st.pub.ObjectAttributes.FixedTPM || checkPCRs(st.pcrs) != nil {
			t.Fatalf("accepted %+v", st.pub)
		}
	})
}
