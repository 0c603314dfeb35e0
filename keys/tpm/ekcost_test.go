package tpm_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/keys/tpm/tpmtest"
)

// ekRecipients returns recipients for the ECC and the RSA EK of the TPM
// at path.
func ekRecipients(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for _, typ := range []string{tpm.EKECC, tpm.EKRSA} {
		ek, err := tpm.ReadEK(path, typ)
		if err != nil {
			t.Fatal(err)
		}
		r, err := tpm.NewEKRecipientFor(ek, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r.String())
	}
	return out
}

// TestOtherTPMsEKStanzasCostNothing: an image with a tpm-ek and a
// tpm-ek-rsa stanza for another TPM, and a software key's: on a node with
// a TPM (OCIKP_TPM set), the software key opens it and ocikp-tpm is never
// started. The image's stanzas must not choose the work the node does
// (creating an RSA EK takes seconds on a real TPM).
func TestOtherTPMsEKStanzasCostNothing(t *testing.T) {
	other := tpmtest.Start(t)
	node := tpmtest.Start(t)
	recipients := ekRecipients(t, other.Socket)
	t.Setenv(tpm.EnvTPM, "")
	ks := &soft.Store{Dir: t.TempDir()}
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	k, err := ks.Create("laptop", priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte(`{"symkey":"software"}`)
	ann := wrapReq(t, &keyprovider.Provider{Name: "ocikp", Store: ks}, secret, append(recipients, k.RecipientString())...)

	t.Setenv(tpm.EnvTPM, node.Socket)
	starts := countStarts(t)
	if got, err := unwrapReq(&keyprovider.Provider{Store: ks}, ann); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("software key beside another TPM's EK stanzas: %v", err)
	}
	if n := starts(); n != 0 {
		t.Fatalf("ocikp-tpm started %d times for stanzas of another TPM's EKs, want 0", n)
	}
}

// TestUnenrolledNodeGetsEnrolHint: a layer sealed only to this TPM's EK,
// on a node that has not enrolled it: not opened (the EK is opt-in), no
// companion started, and the error says to enrol.
func TestUnenrolledNodeGetsEnrolHint(t *testing.T) {
	sw := tpmtest.Start(t)
	recipients := ekRecipients(t, sw.Socket)
	for i, typ := range []string{"ECC", "RSA"} {
		ann := encryptForEK(t, mustParseEK(t, recipients[i]), []byte("opts"))
		t.Setenv(tpm.EnvTPM, sw.Socket)
		starts := countStarts(t)
		_, err := unwrapReq(&keyprovider.Provider{Store: &soft.Store{Dir: t.TempDir()}}, ann)
		if err == nil {
			t.Fatalf("%s EK: an unenrolled node opened a layer for its EK", typ)
		}
		if n := starts(); n != 0 {
			t.Fatalf("%s EK: ocikp-tpm started %d times on an unenrolled node, want 0", typ, n)
		}
		h := hint.Of(err)
		if len(h) == 0 || len(h) > 2 || !strings.Contains(strings.Join(h, "\n"), "ocikp tpm enroll") {
			t.Fatalf("%s EK: hints %q, want at most two, one naming ocikp tpm enroll", typ, h)
		}
	}
}

func mustParseEK(t *testing.T, s string) *tpm.EKRecipient {
	t.Helper()
	r, err := tpm.ParseEKRecipient(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// BenchmarkOtherTPMsEKStanzas: one unwrap, as exec runs it per layer, of
// a layer with a tpm-ek and a tpm-ek-rsa stanza for another TPM and a
// software key's, on a node whose TPM is swtpm: what such an image costs
// the node beyond the software unwrap.
func BenchmarkOtherTPMsEKStanzas(b *testing.B) {
	other, node := tpmtest.Start(b), tpmtest.Start(b)
	var recipients []string
	for _, typ := range []string{tpm.EKECC, tpm.EKRSA} {
		ek, err := tpm.ReadEK(other.Socket, typ)
		if err != nil {
			b.Fatal(err)
		}
		r, err := tpm.NewEKRecipientFor(ek, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		recipients = append(recipients, r.String())
	}
	ks := &soft.Store{Dir: b.TempDir()}
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	k, err := ks.Create("laptop", priv, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Setenv(tpm.EnvTPM, "")
	ann := wrapReq(b, &keyprovider.Provider{Name: "ocikp", Store: ks}, []byte("x"), append(recipients, k.RecipientString())...)
	b.Setenv(tpm.EnvTPM, node.Socket)
	b.ResetTimer()
	for range b.N {
		if _, err := unwrapReq(&keyprovider.Provider{Store: ks}, ann); err != nil {
			b.Fatal(err)
		}
	}
}
