package keyprovider

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/protocol"
)

// A mistyped key name: a local caller is told the name and the closest
// key; a remote client (the service) learns neither the keystore's names
// nor which of its keys are locked.
func TestMistypedNameSuggestsLocallyOnly(t *testing.T) {
	f := newFixture(t, "alice", "bob")
	local := &Provider{Name: "ocikp", Store: f.st}
	remote := &Provider{Name: "ocikp", Store: f.st, Remote: true}
	ann := f.wrap(local, map[string][][]byte{"ocikp": vals(f.recip["alice"])})
	msg := func(err error) string { return err.Error() + " | " + strings.Join(hint.Of(err), " | ") }

	_, err := unwrap(local, ann, map[string][][]byte{"ocikp": vals("alcie")})
	if err == nil || !strings.Contains(err.Error(), `no key "alcie" in keystore `) || hint.Of(err)[0] != `did you mean "alice"?` {
		t.Errorf("local unwrap: %v", msg(err))
	}
	_, err = local.Wrap(nameWrapParams("alcie"))
	if err == nil || !strings.Contains(msg(err), `did you mean "alice"?`) {
		t.Errorf("local wrap: %v", err)
	}
	_, err = unwrap(remote, ann, map[string][][]byte{"ocikp": vals("alcie")})
	if err == nil || strings.Contains(msg(err), "alice") || !strings.Contains(err.Error(), "no key of that name in the service's keystore") {
		t.Errorf("remote unwrap: %v", msg(err))
	}
	_, err = remote.Wrap(nameWrapParams("alcie"))
	if err == nil || strings.Contains(msg(err), "alice") {
		t.Errorf("remote wrap: %v", err)
	}
}

// A sealed key whose tag matches leads the error, for a local caller; a
// remote client gets only the count.
func TestPassphraseFirst(t *testing.T) {
	f := newFixture(t, "alice", "bob")
	ann := f.wrap(&Provider{Name: "ocikp", Store: f.st}, map[string][][]byte{"ocikp": vals(f.recip["alice"])})
	os.Remove(filepath.Join(f.st.Dir, "alice.key"))
	if _, err := f.st.Create("alice", f.priv["alice"], []byte("pw")); err != nil {
		t.Fatal(err)
	}
	_, err := unwrap(&Provider{Name: "ocikp", Store: f.st}, ann, nil)
	var pe *PassphraseError
	if !errors.As(err, &pe) || pe.Key != "alice" || !pe.Tagged || pe.Wrong ||
		!strings.HasPrefix(err.Error(), `key "alice" can open this layer but needs its passphrase; it was encrypted for 1 recipient: p256 tag `) {
		t.Fatalf("no passphrase: %v", err)
	}
	_, err = unwrap(&Provider{Name: "ocikp", Store: f.st, Passphrase: func(string) ([]byte, error) { return []byte("nope"), nil }}, ann, nil)
	if !errors.As(err, &pe) || !pe.Wrong || !strings.Contains(err.Error(), "the passphrase given is wrong") {
		t.Fatalf("wrong passphrase: %v", err)
	}
	_, err = unwrap(&Provider{Name: "ocikp", Store: f.st, Remote: true}, ann, nil)
	if errors.As(err, &pe) || strings.Contains(err.Error(), "alice") {
		t.Fatalf("remote: %v", err)
	}
	if out, err := unwrap(&Provider{Name: "ocikp", Store: f.st, Passphrase: func(string) ([]byte, error) { return []byte("pw"), nil }}, ann, nil); err != nil || string(out) != string(opts) {
		t.Fatalf("right passphrase: %v", err)
	}
}

func nameWrapParams(v string) *protocol.KeyWrapParams {
	return &protocol.KeyWrapParams{EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{"ocikp": vals(v)}}, Optsdata: opts}
}
