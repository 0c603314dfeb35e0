package tpm_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/keys/tpm/tpmdev"
	"github.com/ocikp/ocikp/keys/tpm/tpmtest"
)

// enrol records the ECC and RSA EKs of the TPM at path in a new keystore.
func enrol(t *testing.T, path string) string {
	t.Helper()
	ks := t.TempDir()
	for _, typ := range []string{tpm.EKECC, tpm.EKRSA} {
		en, err := tpm.ReadEnrolment(path, typ)
		if err != nil {
			t.Fatal(err)
		}
		if err := tpm.EnrolmentsIn(ks).Put(en); err != nil {
			t.Fatal(err)
		}
		if err := tpm.EnrolmentsIn(ks).Put(en); err == nil {
			t.Fatalf("%s enrolment replaced", typ)
		}
		fi, err := os.Stat(tpm.EnrolmentsIn(ks).Path(typ))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s enrolment file: %v %v", typ, fi.Mode(), err)
		}
	}
	return ks
}

// TestEnrolledNodeOpensItsEKStanzas: a node that enrolled its ECC and RSA
// EKs opens layers sealed to each, in exec (one ocikp-tpm start per
// layer, however many other TPMs' stanzas it holds) and kept as ocikp
// serve runs it; a keystore copied to another TPM gets "not the enrolled
// EK" from that TPM, with what to do.
func TestEnrolledNodeOpensItsEKStanzas(t *testing.T) {
	node, other := tpmtest.Start(t), tpmtest.Start(t)
	mine, theirs := ekRecipients(t, node.Socket), ekRecipients(t, other.Socket)
	ks := enrol(t, node.Socket)
	var anns [][]byte
	for i, r := range mine {
		anns = append(anns, encryptForEK(t, mustParseEK(t, r), []byte("layer "+r[:12])))
		// Another TPM's stanzas first, in the same layer: not tried.
		t.Setenv(tpm.EnvTPM, "")
		anns = append(anns, wrapReq(t, &keyprovider.Provider{Name: "ocikp", Store: &soft.Store{Dir: t.TempDir()}},
			[]byte("layer "+r[:12]), theirs[0], theirs[1], mine[i]))
	}
	t.Setenv(tpm.EnvTPM, node.Socket)
	starts := countStarts(t)
	p := &keyprovider.Provider{Store: &soft.Store{Dir: ks}}
	for i, ann := range anns {
		want := "layer " + mine[i/2][:12]
		if got, err := unwrapReq(p, ann); err != nil || string(got) != want {
			t.Fatalf("layer %d, exec: %q, %v", i, got, err)
		}
		if n := starts(); n != i+1 {
			t.Fatalf("layer %d: %d ocikp-tpm starts in all, want %d", i, n, i+1)
		}
	}
	kept := tpmdev.NewKept()
	tpm.SetHandler(kept.Handle)
	kp := &keyprovider.Provider{Store: &soft.Store{Dir: ks}, CacheKeys: true}
	for round := range 2 {
		for i, ann := range anns {
			if got, err := unwrapReq(kp, ann); err != nil || string(got) != "layer "+mine[i/2][:12] {
				t.Fatalf("round %d, layer %d, kept: %v", round, i, err)
			}
		}
	}
	tpm.SetHandler(nil)
	kept.Close()

	// The keystore, copied to a machine with another TPM.
	t.Setenv(tpm.EnvTPM, other.Socket)
	for i, ann := range anns[:1] {
		_, err := unwrapReq(p, ann)
		if !errors.Is(err, tpm.ErrOtherEK) {
			t.Fatalf("layer %d on another TPM: got %v, want ErrOtherEK", i, err)
		}
		if h := hint.Of(err); len(h) == 0 || len(h) > 2 || !strings.Contains(strings.Join(h, "\n"), "ocikp tpm enroll") {
			t.Fatalf("hints %q", h)
		}
	}
}

// TestParseEnrolment: a record reads back; anything else is refused.
func TestParseEnrolment(t *testing.T) {
	sw := tpmtest.Start(t)
	en, err := tpm.ReadEnrolment(sw.Socket, tpm.EKECC)
	if err != nil {
		t.Fatal(err)
	}
	data, err := en.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := tpm.ParseEnrolment(data)
	if err != nil || !back.Same(en) || back.Device != sw.Socket {
		t.Fatalf("read back: %v", err)
	}
	ek, err := tpm.ReadEK(sw.Socket, tpm.EKECC)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := tpm.NewEKRecipientFor(ek, nil, nil); back.Recipient() != r.String() {
		t.Fatalf("recipient %s, want %s", back.Recipient(), r)
	}
	for what, edit := range map[string][2]string{
		"version":       {`"v": 1`, `"v": 2`},
		"unknown field": {`"type"`, `"kind"`},
		"type":          {`"type": "ecc"`, `"type": "rsa"`},
		"relative dev":  {`"device": "/`, `"device": "`},
		"name":          {`"name": "`, `"name": "AAAA`},
	} {
		bad := bytes.Replace(data, []byte(edit[0]), []byte(edit[1]), 1)
		if bytes.Equal(bad, data) {
			t.Fatalf("%s: edit did not apply", what)
		}
		if _, err := tpm.ParseEnrolment(bad); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
}

// FuzzParseEnrolment: an enrolment file is read strictly or refused,
// never a panic; what is accepted encodes back to a file read the same.
func FuzzParseEnrolment(f *testing.F) {
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	name := append([]byte{0, 0x0b}, make([]byte, 32)...)
	en, err := tpm.NewEnrolment(&tpm.EK{Type: tpm.EKECC, Key: priv.PublicKey().Bytes()}, name, "/dev/tpmrm0")
	if err != nil {
		f.Fatal(err)
	}
	data, _ := en.Marshal()
	f.Add(data)
	f.Add([]byte(`{"v":1,"type":"rsa","ek":"","name":"","device":"","enrolled":"2026-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		en, err := tpm.ParseEnrolment(data)
		if err != nil {
			return
		}
		again, err := en.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := tpm.ParseEnrolment(again)
		if err != nil || !back.Same(en) || back.Recipient() != en.Recipient() {
			t.Fatalf("an accepted enrolment does not read back: %v", err)
		}
	})
}
