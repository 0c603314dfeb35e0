package tpmdev

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/tpm"
)

// FuzzParseEKStanza: a tpm-ek stanza comes from an image; whatever it
// holds, parsing neither panics nor accepts an object seal would not make.
func FuzzParseEKStanza(f *testing.F) {
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	for _, pcrs := range [][]int{nil, {7, 11}} {
		var policy []byte
		if len(pcrs) > 0 {
			var err error
			if policy, err = pcrPolicy(pcrs, [][]byte{make([]byte, 32), make([]byte, 32)}); err != nil {
				f.Fatal(err)
			}
		}
		s, err := seal("", priv.PublicKey().Bytes(), pcrs, policy, make([]byte, 32))
		if err != nil {
			f.Fatal(err)
		}
		if _, err := parseEKStanza(s); err != nil {
			f.Fatalf("seal's own stanza: %v", err)
		}
		f.Add(s.Enc, s.Key)
	}
	// An RSA EK's stanza: the seed is RSA-OAEP encrypted (256 bytes).
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	s, err := seal(tpm.EKRSA, rk.N.FillBytes(make([]byte, 256)), nil, nil, make([]byte, 32))
	if err != nil {
		f.Fatal(err)
	}
	if _, err := parseEKStanza(s); err != nil || s.Type != tpm.StanzaEKRSA {
		f.Fatalf("seal's own RSA stanza (%s): %v", s.Type, err)
	}
	f.Add(s.Enc, s.Key)
	f.Fuzz(func(t *testing.T, enc, key []byte) {
		st, err := parseEKStanza(&envelope.Stanza{Type: tpm.StanzaEK, Enc: enc, Key: key})
		if err != nil {
			return
		}
		if st.pub.Type != tpm2.TPMAlgKeyedHash || st.pub.ObjectAttributes.FixedTPM || tpm.CheckPCRs(st.pcrs) != nil {
			t.Fatalf("accepted %+v", st.pub)
		}
	})
}
