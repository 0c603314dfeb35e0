package tpm_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/testprovider"
	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/keys/tpm/tpmdev"
	"github.com/ocikp/ocikp/keys/tpm/tpmtest"
)

// The provider core's requests as ocicrypt sends them.
var wrapReq, unwrapReq = testprovider.Wrap, testprovider.Unwrap

// TestProviderTPMBesideSoftware: one layer for a TPM key and a software
// key; each decrypts it alone through the provider core, with the empty
// decryption parameters containerd sends and by name, across a swtpm
// restart between wrap and unwrap.
func TestProviderTPMBesideSoftware(t *testing.T) {
	sw := tpmtest.Start(t)
	r, ks := newKey(t, sw, "node", tpm.Spec{PIN: []byte("2468")})
	st := &soft.Store{Dir: ks}
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	if _, err := st.Create("laptop", priv, nil); err != nil {
		t.Fatal(err)
	}
	p := &keyprovider.Provider{Store: st, Passphrase: pin("2468")}
	wp := &keyprovider.Provider{Name: "ocikp", Store: st}
	secret := []byte(`{"symkey":"layer key"}`)
	// The TPM key by recipient string, the software key by name.
	ann := wrapReq(t, wp, secret, r.RecipientString(), "laptop")

	sw.Restart()
	// Only the TPM key: the software key file is moved away.
	if err := os.Rename(filepath.Join(ks, "laptop.key"), filepath.Join(t.TempDir(), "laptop.key")); err != nil {
		t.Fatal(err)
	}
	got, err := unwrapReq(p, ann)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("TPM key alone, empty parameters: %v", err)
	}
	named := &keyprovider.Provider{Name: "ocikp", Store: st, Passphrase: pin("2468")}
	if got, err := unwrapReq(named, ann, "node"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("TPM key by name: %v", err)
	}
	// The wrong PIN: said so, without the PIN.
	wrong := &keyprovider.Provider{Store: st, Passphrase: pin("1357")}
	_, err = unwrapReq(wrong, ann)
	if !errors.Is(err, tpm.ErrBadPIN) || strings.Contains(err.Error(), "1357") || strings.Contains(err.Error(), "2468") {
		t.Fatalf("wrong PIN: %v", err)
	}

	// Only the software key: the TPM record removed, and a fresh keystore
	// with the software key alone.
	ks2 := t.TempDir()
	st2 := &soft.Store{Dir: ks2}
	if _, err := st2.Create("laptop", priv, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := unwrapReq(&keyprovider.Provider{Store: st2}, ann); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("software key alone: %v", err)
	}
}

// TestBusCarriesNoSecret records every byte between ocikp and the TPM
// during keygen and an unwrap: neither the PIN nor the shared point may
// appear (salted sessions, parameter encryption).
func TestBusCarriesNoSecret(t *testing.T) {
	sw := tpmtest.Start(t)
	proxy, bus := tapProxy(t, sw.Socket, false)
	secretPIN := []byte("PIN-8c1f0e7a")
	c, err := tpm.Create(proxy, tpm.Spec{PIN: secretPIN})
	if err != nil {
		t.Fatal(err)
	}
	r, err := tpm.NewRecord("node", proxy, c, tpm.Spec{PIN: secretPIN})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := r.NewKey(secretPIN)
	eph, _ := ecdh.P256().GenerateKey(rand.Reader)
	z, err := k.ECDH(eph.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := eph.ECDH(k.PublicKey())
	if !bytes.Equal(z, want) {
		t.Fatal("wrong shared secret")
	}
	seen := bus()
	if len(seen) < 500 {
		t.Fatalf("the tap saw only %d bytes", len(seen))
	}
	if !bytes.Contains(seen, eph.PublicKey().Bytes()[1:33]) {
		t.Fatal("the tap does not see the peer point (sent in clear): it records nothing useful")
	}
	if bytes.Contains(seen, secretPIN) {
		t.Error("the PIN crossed the bus in clear")
	}
	if bytes.Contains(seen, z[:16]) {
		t.Error("the shared point crossed the bus in clear")
	}
}

// tapProxy serves a unix socket that forwards to target and records every
// byte both ways; split sends the TPM's responses one byte per write.
func tapProxy(t *testing.T, target string, split bool) (string, func() []byte) {
	var mu sync.Mutex
	var bus bytes.Buffer
	proxy := filepath.Join(filepath.Dir(target), "proxy")
	l, err := net.Listen("unix", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	tap := func(dst, src net.Conn, split bool) {
		buf := make([]byte, 8192)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				mu.Lock()
				bus.Write(buf[:n])
				mu.Unlock()
				if split {
					for i := 0; i < n; i++ {
						dst.Write(buf[i : i+1])
						time.Sleep(10 * time.Microsecond)
					}
				} else {
					dst.Write(buf[:n])
				}
			}
			if err != nil {
				dst.Close()
				return
			}
		}
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("unix", target)
			if err != nil {
				c.Close()
				return
			}
			go tap(u, c, false)
			go tap(c, u, split)
		}
	}()
	return proxy, func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return bytes.Clone(bus.Bytes())
	}
}

// TestSplitResponses: a stream socket may deliver a response in pieces;
// go-tpm reads it with one Read, so the socket transport reassembles it.
func TestSplitResponses(t *testing.T) {
	sw := tpmtest.Start(t)
	proxy, _ := tapProxy(t, sw.Socket, true)
	c, err := tpm.Create(proxy, tpm.Spec{})
	if err != nil {
		t.Fatalf("Create through a socket that splits responses: %v", err)
	}
	r, err := tpm.NewRecord("node", proxy, c, tpm.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := r.NewKey(nil)
	eph, _ := ecdh.P256().GenerateKey(rand.Reader)
	if _, err := k.ECDH(eph.PublicKey()); err != nil {
		t.Fatalf("ECDH through a socket that splits responses: %v", err)
	}
}

// TestProviderServiceMode: the long-lived provider of ocikp serve
// (CacheKeys) keeps the TPM identity between requests, and the device
// with it (tpmdev.Kept: opened once for many unwraps); a TPM that went
// away is an error for that request only, and the next one after it is
// back succeeds. Without Kept (as exec), each unwrap runs the companion.
func TestProviderServiceMode(t *testing.T) {
	for _, kept := range []bool{false, true} {
		t.Run(map[bool]string{false: "companion", true: "kept"}[kept], func(t *testing.T) {
			sw := tpmtest.Start(t)
			r, ks := newKey(t, sw, "node", tpm.Spec{})
			var k *tpmdev.Kept
			if kept {
				k = tpmdev.NewKept()
				tpm.SetHandler(k.Handle)
				t.Cleanup(func() { tpm.SetHandler(nil); k.Close() })
			}
			p := &keyprovider.Provider{Store: &soft.Store{Dir: ks}, CacheKeys: true}
			secret := []byte(`{"symkey":"S"}`)
			ann := wrapReq(t, &keyprovider.Provider{Store: p.Store}, secret, r.RecipientString())
			for i := 0; i < 3; i++ {
				if got, err := unwrapReq(p, ann); err != nil || !bytes.Equal(got, secret) {
					t.Fatalf("request %d: %v", i+1, err)
				}
			}
			if kept && k.Opens() != 1 {
				t.Fatalf("%d device opens for 3 unwraps, want 1", k.Opens())
			}
			sw.Stop()
			_, err := unwrapReq(p, ann)
			if !errors.Is(err, tpm.ErrNoDevice) {
				t.Fatalf("TPM gone: got %v, want ErrNoDevice", err)
			}
			if len(hint.Of(err)) == 0 {
				t.Fatalf("TPM gone: no hint in %v", err)
			}
			sw.Restart()
			if got, err := unwrapReq(p, ann); err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("TPM back: %v", err)
			}
			// Restarted while kept open: the kept connection fails, the
			// request is tried once more on a fresh one.
			sw.Restart()
			if got, err := unwrapReq(p, ann); err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("TPM restarted under a kept connection: %v", err)
			}
		})
	}
}

// TestKeptKeyAndEK: the service's kept device serves layers for a TPM key
// and layers for the EK in turn; what it keeps (SRK, key, EK) would fill
// swtpm's three object slots, so it is flushed when the TPM says so and
// the request succeeds on the same connection.
func TestKeptKeyAndEK(t *testing.T) {
	sw := tpmtest.Start(t)
	ek, err := tpm.EKPublic(sw.Socket)
	if err != nil {
		t.Fatal(err)
	}
	er, err := tpm.NewEKRecipient(ek, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, ks := newKey(t, sw, "node", tpm.Spec{})
	en, err := tpm.ReadEnrolment(sw.Socket, tpm.EKECC)
	if err != nil {
		t.Fatal(err)
	}
	if err := tpm.EnrolmentsIn(ks).Put(en); err != nil {
		t.Fatal(err)
	}
	k := tpmdev.NewKept()
	tpm.SetHandler(k.Handle)
	t.Cleanup(func() { tpm.SetHandler(nil); k.Close() })
	t.Setenv(tpm.EnvTPM, sw.Socket)
	p := &keyprovider.Provider{Store: &soft.Store{Dir: ks}, CacheKeys: true}
	byKey := wrapReq(t, &keyprovider.Provider{Store: p.Store}, []byte("key layer"), r.RecipientString())
	byEK := wrapReq(t, &keyprovider.Provider{Store: p.Store}, []byte("EK layer"), er.String())
	for i := 0; i < 2; i++ {
		for ann, want := range map[*[]byte]string{&byKey: "key layer", &byEK: "EK layer"} {
			if got, err := unwrapReq(p, *ann); err != nil || string(got) != want {
				t.Fatalf("round %d, %s: %v", i+1, want, err)
			}
		}
	}
	if k.Opens() != 1 {
		t.Fatalf("%d device opens, want 1", k.Opens())
	}
}
