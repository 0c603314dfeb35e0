package tpm_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/keys/tpm/tpmtest"
	"github.com/ocikp/ocikp/p256"
)

// newKey creates a TPM key in sw and records it in a fresh keystore.
func newKey(t *testing.T, sw *tpmtest.SWTPM, name string, s tpm.Spec) (*tpm.Record, string) {
	t.Helper()
	c, err := tpm.Create(sw.Socket, s)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	r, err := tpm.NewRecord(name, sw.Socket, c, s)
	if err != nil {
		t.Fatalf("NewRecord: %v", err)
	}
	ks := t.TempDir()
	if err := tpm.RecordsIn(ks).Put(r); err != nil {
		t.Fatal(err)
	}
	return r, ks
}

// seal wraps a file key for the record's recipient, in software.
func seal(t *testing.T, r *tpm.Record) ([]byte, []byte) {
	t.Helper()
	rcpt, err := p256.Parse(r.RecipientString())
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("optsdata " + r.Name)
	blob, err := envelope.Seal(secret, rcpt)
	if err != nil {
		t.Fatal(err)
	}
	return blob, secret
}

func open(blob []byte, id envelope.Identity) ([]byte, error) {
	env, err := envelope.Parse(blob)
	if err != nil {
		return nil, err
	}
	fk, err := env.UnwrapFileKey(id)
	if err != nil {
		return nil, err
	}
	return env.OpenPayload(fk)
}

func pin(p string) func(string) ([]byte, error) {
	return func(string) ([]byte, error) { return []byte(p), nil }
}

func TestECDHMatchesSoftware(t *testing.T) {
	sw := tpmtest.Start(t)
	r, _ := newKey(t, sw, "node", tpm.Spec{})
	k, err := r.NewKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	eph, _ := ecdh.P256().GenerateKey(rand.Reader)
	want, err := eph.ECDH(k.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.ECDH(eph.PublicKey())
	if err != nil {
		t.Fatalf("TPM ECDH: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("TPM ECDH = %x, software = %x", got, want)
	}
}

func TestUnwrapAfterRestart(t *testing.T) {
	sw := tpmtest.Start(t)
	r, ks := newKey(t, sw, "node", tpm.Spec{})
	blob, secret := seal(t, r)
	sw.Restart()
	r2, err := tpm.RecordsIn(ks).Get("node")
	if err != nil {
		t.Fatal(err)
	}
	got, err := open(blob, r2.Identity(nil))
	if err != nil {
		t.Fatalf("unwrap after restarting swtpm: %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatal("wrong secret")
	}
}

func TestPIN(t *testing.T) {
	sw := tpmtest.Start(t)
	r, _ := newKey(t, sw, "node", tpm.Spec{PIN: []byte("1234")})
	blob, secret := seal(t, r)

	got, err := open(blob, r.Identity(pin("1234")))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("right PIN: %v", err)
	}
	_, err = open(blob, r.Identity(pin("9999")))
	if !errors.Is(err, tpm.ErrBadPIN) {
		t.Fatalf("wrong PIN: got %v, want ErrBadPIN", err)
	}
	if strings.Contains(err.Error(), "9999") || strings.Contains(err.Error(), "1234") {
		t.Fatalf("error shows the PIN: %v", err)
	}
	_, err = open(blob, r.Identity(nil))
	if !errors.Is(err, tpm.ErrPINNeeded) {
		t.Fatalf("no PIN: got %v, want ErrPINNeeded", err)
	}
}

func TestLockout(t *testing.T) {
	sw := tpmtest.Start(t)
	// Two failures lock the TPM out for 10 minutes.
	sw.Tool("tpm2_dictionarylockout", "--setup-parameters", "--max-tries=2", "--recovery-time=600", "--lockout-recovery-time=600")
	r, _ := newKey(t, sw, "node", tpm.Spec{PIN: []byte("1234")})
	blob, _ := seal(t, r)
	var err error
	for i := 0; i < 3; i++ {
		// A different wrong PIN each time: a PIN refused once is not sent again.
		_, err = open(blob, r.Identity(pin("000"+strconv.Itoa(i))))
		if errors.Is(err, tpm.ErrLockout) {
			break
		}
		if !errors.Is(err, tpm.ErrBadPIN) {
			t.Fatalf("attempt %d: got %v, want ErrBadPIN", i+1, err)
		}
	}
	if !errors.Is(err, tpm.ErrLockout) {
		t.Fatalf("after 3 wrong PINs: got %v, want ErrLockout", err)
	}
	// The right PIN is refused too while locked out, and says why.
	_, err = open(blob, r.Identity(pin("1234")))
	if !errors.Is(err, tpm.ErrLockout) {
		t.Fatalf("right PIN in lockout: got %v, want ErrLockout", err)
	}
	if h := hint.Of(err); len(h) == 0 || !strings.Contains(h[0], "lockout") {
		t.Fatalf("lockout hint: %q", h)
	}
	t.Logf("lockout: %v; hint: %s", err, hint.Of(err)[0])
}

func TestPCRPolicy(t *testing.T) {
	for _, withPIN := range []bool{false, true} {
		t.Run(map[bool]string{false: "pcrs", true: "pcrs+pin"}[withPIN], func(t *testing.T) {
			sw := tpmtest.Start(t)
			s := tpm.Spec{PCRs: []int{7, 23}}
			pass := pin("")
			if withPIN {
				s.PIN, pass = []byte("4321"), pin("4321")
			}
			r, _ := newKey(t, sw, "node", s)
			blob, secret := seal(t, r)
			got, err := open(blob, r.Identity(pass))
			if err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("PCRs unchanged: %v", err)
			}
			if withPIN {
				if _, err := open(blob, r.Identity(pin("0000"))); !errors.Is(err, tpm.ErrBadPIN) {
					t.Fatalf("PCRs unchanged, wrong PIN: got %v, want ErrBadPIN", err)
				}
			}
			sw.ExtendPCR(23)
			_, err = open(blob, r.Identity(pass))
			if !errors.Is(err, tpm.ErrPCRMismatch) {
				t.Fatalf("PCR 23 extended: got %v, want ErrPCRMismatch", err)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func TestOtherTPM(t *testing.T) {
	sw := tpmtest.Start(t)
	r, _ := newKey(t, sw, "node", tpm.Spec{})
	blob, _ := seal(t, r)
	other := tpmtest.Start(t)
	k, _ := r.NewKey(nil)
	k.Path = other.Socket
	_, err := open(blob, p256.NewIdentityFromKey("node", k))
	if !errors.Is(err, tpm.ErrOtherTPM) {
		t.Fatalf("key of another TPM: got %v, want ErrOtherTPM", err)
	}
}

func TestNoDevice(t *testing.T) {
	tpmtest.Companion(t)
	dir := t.TempDir()
	plain := filepath.Join(dir, "file")
	os.WriteFile(plain, nil, 0o600)
	for _, path := range []string{filepath.Join(dir, "missing"), plain} {
		_, err := tpm.Create(path, tpm.Spec{})
		if !errors.Is(err, tpm.ErrNoDevice) {
			t.Errorf("%s: got %v, want ErrNoDevice", path, err)
		}
	}
}

func TestSpecChecked(t *testing.T) {
	for _, pcrs := range [][]int{{24}, {-1}, {7, 7}, {11, 7}} {
		if _, err := tpm.Create("/nonexistent", tpm.Spec{PCRs: pcrs}); err == nil || errors.Is(err, tpm.ErrNoDevice) {
			t.Errorf("PCRs %v: got %v, want a refusal before the device is opened", pcrs, err)
		}
	}
}

func TestCheck(t *testing.T) {
	sw := tpmtest.Start(t)
	plain, _ := newKey(t, sw, "plain", tpm.Spec{PIN: []byte("1")})
	bound, _ := newKey(t, sw, "bound", tpm.Spec{PCRs: []int{23}})
	for _, r := range []*tpm.Record{plain, bound} {
		if err := tpm.Check(sw.Socket, r); err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
	}
	sw.ExtendPCR(23)
	if err := tpm.Check(sw.Socket, plain); err != nil {
		t.Fatalf("plain after PCR 23 changed: %v", err)
	}
	if err := tpm.Check(sw.Socket, bound); !errors.Is(err, tpm.ErrPCRMismatch) {
		t.Fatalf("bound after PCR 23 changed: got %v, want ErrPCRMismatch", err)
	}
	other := tpmtest.Start(t)
	if err := tpm.Check(other.Socket, plain); !errors.Is(err, tpm.ErrOtherTPM) {
		t.Fatalf("another TPM: got %v, want ErrOtherTPM", err)
	}
	sw.Stop()
	if err := tpm.Check(sw.Socket, plain); !errors.Is(err, tpm.ErrNoDevice) {
		t.Fatalf("TPM gone: got %v, want ErrNoDevice", err)
	}
}
