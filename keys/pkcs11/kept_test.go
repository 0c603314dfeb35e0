package pkcs11_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/pkcs11"
	"github.com/ocikp/ocikp/keys/pkcs11/softhsmtest"
	"github.com/ocikp/ocikp/keys/soft"
)

// TestKeptCompanion: as ocikp serve runs it, one companion serves every
// unwrap with its session kept; when it dies, the next unwrap starts
// another; a wrong PIN is still said so, without the PIN.
func TestKeptCompanion(t *testing.T) {
	tk := softhsmtest.Start(t, "node", testPIN)
	r, ks := newKey(t, tk, "node")
	pkcs11.SetKeep(true)
	t.Cleanup(func() { pkcs11.SetKeep(false) })
	base := pkcs11.KeptStarts()
	st := &soft.Store{Dir: ks}
	secret := []byte(`{"symkey":"kept"}`)
	ann := wrapReq(t, &keyprovider.Provider{Name: "ocikp", Store: st}, secret, r.Recipient)
	served := &keyprovider.Provider{Store: st, Passphrase: pin(testPIN), CacheKeys: true, Remote: true}
	for range 3 {
		if got, err := unwrapReq(served, ann); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("kept unwrap: %v", err)
		}
	}
	if n := pkcs11.KeptStarts() - base; n != 1 {
		t.Fatalf("%d companion starts for 3 unwraps, want 1", n)
	}
	pid := pkcs11.KeptPID()
	if pid == 0 {
		t.Fatal("no kept companion")
	}
	syscall.Kill(pid, syscall.SIGKILL)
	if got, err := unwrapReq(served, ann); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("unwrap after the companion died: %v", err)
	}
	if n := pkcs11.KeptStarts() - base; n != 2 {
		t.Fatalf("%d companion starts after one died, want 2", n)
	}
	wrong := "PIN-kept-wrong-9e"
	k, _ := r.NewKey([]byte(wrong))
	eph, _ := ecdh.P256().GenerateKey(rand.Reader)
	_, err := k.ECDH(eph.PublicKey())
	if !errors.Is(err, pkcs11.ErrPINIncorrect) {
		t.Fatalf("wrong PIN, kept companion: %v", err)
	}
	noLeak(t, err, wrong)
	// The same wrong PIN again is refused without the token's seeing it.
	_, err = k.ECDH(eph.PublicKey())
	if !errors.Is(err, pkcs11.ErrPINIncorrect) || !strings.Contains(err.Error(), "not tried again") {
		t.Fatalf("wrong PIN again, kept companion: %v", err)
	}
	noLeak(t, err, wrong)
	// The right PIN still works after the wrong one.
	if got, err := unwrapReq(served, ann); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("unwrap after a wrong PIN: %v", err)
	}
}
