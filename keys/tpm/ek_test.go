package tpm_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/keys/tpm/tpmtest"
)

// TestEKRecipient: a layer key sealed in software for one swtpm's EK
// opens in that swtpm (after a restart), and not in another one.
func TestEKRecipient(t *testing.T) {
	sw := tpmtest.Start(t)
	ek, err := tpm.EKPublic(sw.Socket)
	if err != nil {
		t.Fatal(err)
	}
	r, err := tpm.NewEKRecipient(ek, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 200)
	rand.Read(secret)
	blob, err := envelope.Seal(secret, r)
	if err != nil {
		t.Fatal(err)
	}
	sw.Restart()
	id, err := tpm.NewEKIdentity(sw.Socket)
	if err != nil {
		t.Fatal(err)
	}
	got, err := open(blob, id)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the EK's TPM: %v", err)
	}
	other := tpmtest.Start(t)
	oid, err := tpm.NewEKIdentity(other.Socket)
	if err != nil {
		t.Fatal(err)
	}
	_, err = open(blob, oid)
	var nie *envelope.NoIdentityError
	if !errors.As(err, &nie) || len(nie.Failures) > 0 {
		t.Fatalf("another TPM: got %v, want the stanza not to be its own", err)
	}
}

func TestEKRecipientPCRs(t *testing.T) {
	sw := tpmtest.Start(t)
	ek, err := tpm.EKPublic(sw.Socket)
	if err != nil {
		t.Fatal(err)
	}
	pcrs := []int{7, 23}
	values, err := tpm.ReadPCRs(sw.Socket, pcrs)
	if err != nil {
		t.Fatal(err)
	}
	r, err := tpm.NewEKRecipient(ek, pcrs, values)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := envelope.Seal([]byte("opts"), r)
	if err != nil {
		t.Fatal(err)
	}
	id, err := tpm.NewEKIdentity(sw.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := open(blob, id); err != nil || string(got) != "opts" {
		t.Fatalf("PCRs as expected: %v", err)
	}
	sw.ExtendPCR(23)
	if _, err := open(blob, id); !errors.Is(err, tpm.ErrPCRMismatch) {
		t.Fatalf("PCR 23 extended: got %v, want ErrPCRMismatch", err)
	}
}
