package pkcs11_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/pkcs11"
	"github.com/ocikp/ocikp/keys/pkcs11/softhsmtest"
	"github.com/ocikp/ocikp/p256"
	"github.com/ocikp/ocikp/pq"
)

// countRuns puts a wrapper around the companion that counts its runs
// (each is one request, each ECDH one C_Login with the PIN).
func countRuns(t *testing.T) func() int {
	t.Helper()
	real := filepath.Join(os.Getenv("OCIKP_PLUGIN_DIR"), pkcs11.Companion)
	d := t.TempDir()
	log := filepath.Join(d, "runs")
	script := "#!/bin/sh\necho run >> '" + log + "'\nexec '" + real + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(d, pkcs11.Companion), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OCIKP_PLUGIN_DIR", d)
	return func() int {
		b, _ := os.ReadFile(log)
		return bytes.Count(b, []byte("run\n"))
	}
}

// repeated is a layer whose one stanza is repeated n times: anyone who
// knows the recipient can push it (the tag is computable from the
// recipient; the header MAC is checked only after an unwrap).
func repeated(t *testing.T, rcpt envelope.Recipient, n int) *envelope.Envelope {
	t.Helper()
	blob, err := envelope.Seal([]byte("optsdata"), rcpt)
	if err != nil {
		t.Fatal(err)
	}
	env, err := envelope.Parse(blob)
	if err != nil {
		t.Fatal(err)
	}
	s := env.Recipients[0]
	env.Recipients = nil
	for range n {
		env.Recipients = append(env.Recipients, s)
	}
	return env
}

// TestWrongPINSentOnce: in exec (a fresh companion per ECDH), a wrong PIN
// reaches the token once per key, not once per matching stanza of a layer
// (a YubiKey's PIV PIN locks after three wrong ones), and not again for
// the next layer the same identities see.
func TestWrongPINSentOnce(t *testing.T) {
	tk := softhsmtest.Start(t, "node", testPIN)
	r, _ := newKey(t, tk, "p256")
	hy := newHybrid(t, tk, "pq")
	runs := countRuns(t)
	pr, err := p256.Parse(r.Recipient)
	if err != nil {
		t.Fatal(err)
	}
	hr, err := pq.Parse(hy.Recipient)
	if err != nil {
		t.Fatal(err)
	}
	wrong := pin("PIN-wrong-31c4")
	for _, c := range []struct {
		name string
		id   backend.Key
		rcpt envelope.Recipient
	}{{"p256", r.Identity(wrong), pr}, {"mlkem768p256", hy.Identity(wrong), hr}} {
		before := runs()
		for layer := range 2 {
			_, err := repeated(t, c.rcpt, 16).UnwrapFileKey(c.id)
			if !errors.Is(err, pkcs11.ErrPINIncorrect) {
				t.Fatalf("%s, layer %d: got %v, want ErrPINIncorrect", c.name, layer+1, err)
			}
		}
		n := runs() - before
		t.Logf("%s: the wrong PIN reached the token %d times for 2 layers of 16 stanzas", c.name, n)
		if n > 1 {
			t.Fatalf("%s: the wrong PIN reached the token %d times for 2 layers of 16 stanzas, want once", c.name, n)
		}
	}
	if _, err := repeated(t, pr, 2).UnwrapFileKey(r.Identity(pin(testPIN))); err != nil && !errors.Is(err, envelope.ErrTampered) {
		t.Fatalf("right PIN after a wrong one: %v", err)
	}
}
