package tpm_test

import (
	"errors"
	"regexp"
	"strconv"
	"testing"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/keys/tpm/tpmtest"
	"github.com/ocikp/ocikp/pq"
)

// lockoutCounter reads the TPM's count of authorisation failures
// (TPM2_PT_LOCKOUT_COUNTER): what dictionary-attack lockout counts.
func lockoutCounter(t *testing.T, sw *tpmtest.SWTPM) int {
	t.Helper()
	out := sw.Tool("tpm2_getcap", "properties-variable")
	m := regexp.MustCompile(`TPM2_PT_LOCKOUT_COUNTER:\s*(0x[0-9a-fA-F]+|\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no lockout counter in tpm2_getcap's output:\n%s", out)
	}
	n, err := strconv.ParseInt(m[1], 0, 32)
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// manyStanzas is blob's envelope with its one stanza repeated n times: a
// layer anyone who knows the recipient can push (tags are computable
// from the recipient; the header MAC is checked only after an unwrap).
func manyStanzas(t *testing.T, blob []byte, n int) *envelope.Envelope {
	t.Helper()
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

// TestWrongPINTriedOnce: with a wrong PIN, a layer of many stanzas for a
// PIN-protected TPM key, and the same layer again (the service keeps its
// identities between requests), cost the TPM one authorisation failure,
// not one per stanza: each counts toward dictionary-attack lockout, which
// then refuses every DA-protected key of the TPM, the right PIN too.
func TestWrongPINTriedOnce(t *testing.T) {
	sw := tpmtest.Start(t)
	sw.Tool("tpm2_dictionarylockout", "--setup-parameters", "--max-tries=32", "--recovery-time=600", "--lockout-recovery-time=600")
	r, _ := newKey(t, sw, "node", tpm.Spec{PIN: []byte("1234")})
	hy, _ := newHybrid(t, sw, "pqnode", tpm.Spec{PIN: []byte("5150")})
	blob, secret := seal(t, r)
	hr, err := pq.Parse(hy.RecipientString())
	if err != nil {
		t.Fatal(err)
	}
	hblob, err := envelope.Seal(secret, hr)
	if err != nil {
		t.Fatal(err)
	}
	before := lockoutCounter(t, sw)
	for _, c := range []struct {
		name string
		id   backend.Key
		blob []byte
	}{
		{"p256", r.Identity(pin("0000")), blob},
		{"mlkem768p256", hy.Identity(pin("0000")), hblob},
	} {
		for req := range 2 {
			_, err := manyStanzas(t, c.blob, 16).UnwrapFileKey(c.id)
			if !errors.Is(err, tpm.ErrBadPIN) {
				t.Fatalf("%s, request %d: got %v, want ErrBadPIN", c.name, req+1, err)
			}
		}
	}
	failures := lockoutCounter(t, sw) - before
	t.Logf("authorisation failures for 2 keys × 2 layers × 16 stanzas with a wrong PIN: %d", failures)
	if failures > 2 {
		t.Fatalf("a wrong PIN cost the TPM %d authorisation failures (2 keys, 2 layers of 16 stanzas each); want one per key", failures)
	}
	// The right PIN still opens both keys.
	for _, c := range []struct {
		id   backend.Key
		blob []byte
	}{{r.Identity(pin("1234")), blob}, {hy.Identity(pin("5150")), hblob}} {
		if _, err := open(c.blob, c.id); err != nil {
			t.Fatalf("right PIN after wrong ones: %v", err)
		}
	}
}
