package tpm_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/keys/tpm/tpmtest"
)

func TestEKRecipientString(t *testing.T) {
	sw := tpmtest.Start(t)
	ek, err := tpm.EKPublic(sw.Socket)
	if err != nil {
		t.Fatal(err)
	}
	for _, pcrs := range [][]int{nil, {0, 7, 23}} {
		values := make([][]byte, len(pcrs))
		for i := range values {
			values[i] = bytes.Repeat([]byte{byte(i)}, 32)
		}
		r, err := tpm.NewEKRecipient(ek, pcrs, values)
		if err != nil {
			t.Fatal(err)
		}
		s := r.String()
		if !strings.HasPrefix(s, tpm.HRPEK+"1") {
			t.Fatalf("recipient %q", s)
		}
		back, err := backend.Recipient(backend.Background{}, s)
		if err != nil {
			t.Fatalf("parse %q: %v", s, err)
		}
		if back.(*tpm.EKRecipient).String() != s {
			t.Fatal("recipient string does not round-trip")
		}
		c := byte('q')
		if s[len(s)-3] == 'q' {
			c = 'p'
		}
		typo := s[:len(s)-3] + string(c) + s[len(s)-2:]
		if _, err := tpm.ParseEKRecipient(typo); err == nil {
			t.Fatalf("a mistyped recipient was accepted")
		}
	}
}

// TestEKThroughProvider: a layer for a device's EK (recipient string from
// its EK alone, wrapped with no TPM) and a software key; the device opens
// it with the empty parameters containerd sends, another TPM does not,
// and the software key opens it alone.
func TestEKThroughProvider(t *testing.T) {
	sw := tpmtest.Start(t)
	ek, err := tpm.EKPublic(sw.Socket)
	if err != nil {
		t.Fatal(err)
	}
	r, err := tpm.NewEKRecipient(ek, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The encrypting machine: no TPM, a keystore with a software key.
	t.Setenv(tpm.EnvTPM, "")
	builder := &soft.Store{Dir: t.TempDir()}
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	if _, err := builder.Create("laptop", priv, nil); err != nil {
		t.Fatal(err)
	}
	secret := []byte(`{"symkey":"EK"}`)
	ann := wrapReq(t, &keyprovider.Provider{Name: "ocikp", Store: builder}, secret, r.String(), "laptop")

	// The device: a keystore that enrolled its EKs, OCIKP_TPM at its
	// swtpm. Each unwrap starts the companion once (to unseal; the
	// enrolment tells its stanza): counted by a wrapper in its place.
	node := &keyprovider.Provider{Store: &soft.Store{Dir: enrol(t, sw.Socket)}}
	sw.Restart()
	t.Setenv(tpm.EnvTPM, sw.Socket)
	starts := countStarts(t)
	if got, err := unwrapReq(node, ann); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the EK's device: %v", err)
	}
	if n := starts(); n != 1 {
		t.Fatalf("%d companion starts for one EK unwrap, want 1", n)
	}
	other := tpmtest.Start(t)
	t.Setenv(tpm.EnvTPM, other.Socket)
	_, err = unwrapReq(&keyprovider.Provider{Store: &soft.Store{Dir: enrol(t, other.Socket)}}, ann)
	var nie *envelope.NoIdentityError
	if !errors.As(err, &nie) || len(nie.Failures) > 0 {
		t.Fatalf("another TPM: got %v, want the stanza not to be its own", err)
	}
	t.Setenv(tpm.EnvTPM, "")
	if got, err := unwrapReq(&keyprovider.Provider{Store: builder}, ann); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("software key alone: %v", err)
	}
}

// countStarts puts a wrapper that counts its starts in place of the
// companion in $OCIKP_PLUGIN_DIR; the function returns the count so far.
func countStarts(t *testing.T) func() int {
	t.Helper()
	real := filepath.Join(os.Getenv("OCIKP_PLUGIN_DIR"), tpm.Companion)
	dir, log := t.TempDir(), filepath.Join(t.TempDir(), "starts")
	script := "#!/bin/sh\necho >> '" + log + "'\nexec '" + real + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, tpm.Companion), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OCIKP_PLUGIN_DIR", dir)
	return func() int {
		b, _ := os.ReadFile(log)
		return bytes.Count(b, []byte("\n"))
	}
}
