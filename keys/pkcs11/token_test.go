package pkcs11_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/testprovider"
	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/pkcs11"
	"github.com/ocikp/ocikp/keys/pkcs11/softhsmtest"
	"github.com/ocikp/ocikp/keys/soft"
)

const testPIN = "PIN-5c2e91d0"

func mustParse(t *testing.T, s string) *pkcs11.URI {
	t.Helper()
	u, err := pkcs11.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// newKey generates a token key and records it in a new keystore.
func newKey(t *testing.T, tk *softhsmtest.Token, name string) (*pkcs11.Record, string) {
	t.Helper()
	pub, found, err := pkcs11.Generate(mustParse(t, tk.URI(name)), []byte(tk.PIN))
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	r, err := pkcs11.NewRecord(name, found, pub)
	if err != nil {
		t.Fatal(err)
	}
	ks := t.TempDir()
	if err := pkcs11.RecordsIn(ks).Put(r); err != nil {
		t.Fatal(err)
	}
	return r, ks
}

// TestECDHMatchesSoftware: the token's CKM_ECDH1_DERIVE gives what
// crypto/ecdh gives (the x-coordinate HPKE's DHKEM takes), and an
// existing key is found again by its URI with the same public key.
func TestECDHMatchesSoftware(t *testing.T) {
	tk := softhsmtest.Start(t, "node", testPIN)
	r, _ := newKey(t, tk, "ocikp-node")
	k, err := r.NewKey([]byte(testPIN))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		eph, _ := ecdh.P256().GenerateKey(rand.Reader)
		z, err := k.ECDH(eph.PublicKey())
		if err != nil {
			t.Fatalf("ECDH: %v", err)
		}
		want, _ := eph.ECDH(k.PublicKey())
		if !bytes.Equal(z, want) {
			t.Fatal("token ECDH differs from crypto/ecdh")
		}
	}
	pub, err := pkcs11.Existing(mustParse(t, tk.URI("ocikp-node")), []byte(testPIN))
	if err != nil || !pub.Equal(k.PublicKey()) {
		t.Fatalf("Existing: %v", err)
	}
	// A second key under the same label is refused.
	if _, _, err := pkcs11.Generate(mustParse(t, tk.URI("ocikp-node")), []byte(testPIN)); !errors.Is(err, pkcs11.ErrExists) {
		t.Fatalf("second keygen under one label: %v", err)
	}
}

// TestErrors: a wrong PIN, an absent token, a missing or disallowed
// module each fail with their own error, which names the module path
// tried and never the PIN.
func TestErrors(t *testing.T) {
	tk := softhsmtest.Start(t, "node", testPIN)
	r, _ := newKey(t, tk, "k")
	wrong := "PIN-wrong-77aa"
	k, _ := r.NewKey([]byte(wrong))
	eph, _ := ecdh.P256().GenerateKey(rand.Reader)
	_, err := k.ECDH(eph.PublicKey())
	if !errors.Is(err, pkcs11.ErrPINIncorrect) {
		t.Fatalf("wrong PIN: %v", err)
	}
	noLeak(t, err, wrong)

	_, err = pkcs11.Existing(mustParse(t, "pkcs11:token=absent;object=k?module-path="+softhsmtest.Module), []byte(testPIN))
	if !errors.Is(err, pkcs11.ErrTokenAbsent) || !strings.Contains(err.Error(), `"absent"`) {
		t.Fatalf("token absent: %v", err)
	}
	noLeak(t, err, testPIN)

	missing := "/usr/lib/softhsm/libnothere.so"
	_, err = pkcs11.Existing(mustParse(t, "pkcs11:token=node;object=k?module-path="+missing), []byte(testPIN))
	if !errors.Is(err, pkcs11.ErrModule) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing module: %v", err)
	}

	// A file in an allowed directory that is no PKCS#11 module: the
	// companion says which path it tried.
	_, err = pkcs11.Existing(mustParse(t, "pkcs11:token=node;object=k?module-path=/usr/lib/os-release"), []byte(testPIN))
	if !errors.Is(err, pkcs11.ErrModule) || !strings.Contains(err.Error(), "/usr/lib/os-release") {
		t.Fatalf("not a module: %v", err)
	}
	noLeak(t, err, testPIN)

	// Outside the allowed directories: refused before anything is loaded.
	own := filepath.Join(t.TempDir(), "evil.so")
	os.WriteFile(own, []byte("x"), 0o644)
	_, err = pkcs11.Existing(mustParse(t, "pkcs11:token=node;object=k?module-path="+own), nil)
	if !errors.Is(err, pkcs11.ErrModule) || !strings.Contains(err.Error(), "not in an allowed module directory") {
		t.Fatalf("module outside the allowed directories: %v", err)
	}
	t.Setenv(pkcs11.EnvModuleDirs, filepath.Dir(own))
	if _, err := pkcs11.CheckModule(mustParse(t, "pkcs11:object=k?module-path="+own)); err != nil {
		t.Fatalf("with its directory in %s: %v", pkcs11.EnvModuleDirs, err)
	}
}

func noLeak(t *testing.T, err error, pin string) {
	t.Helper()
	if strings.Contains(err.Error(), pin) {
		t.Fatalf("the error shows the PIN: %v", err)
	}
}

// The provider core's requests as ocicrypt sends them.
var wrapReq, unwrapReq = testprovider.Wrap, testprovider.Unwrap

func pin(p string) func(string) ([]byte, error) {
	return func(string) ([]byte, error) { return []byte(p), nil }
}

// TestProviderTokenBesideSoftware: one layer for a token key and a
// software key, wrapped with no token (the companion is not even
// findable); each decrypts alone through the provider core, with the
// empty parameters containerd sends and by name; a wrong PIN is said so
// without the PIN.
func TestProviderTokenBesideSoftware(t *testing.T) {
	tk := softhsmtest.Start(t, "node", testPIN)
	r, ks := newKey(t, tk, "node")
	st := &soft.Store{Dir: ks}
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	if _, err := st.Create("laptop", priv, nil); err != nil {
		t.Fatal(err)
	}
	secret := []byte(`{"symkey":"layer key"}`)
	companion := os.Getenv("OCIKP_PLUGIN_DIR")
	t.Setenv("OCIKP_PLUGIN_DIR", t.TempDir())
	t.Setenv("SOFTHSM2_CONF", "/nonexistent")
	// The token key by name and by recipient string, the software key by name.
	wp := &keyprovider.Provider{Name: "ocikp", Store: st}
	ann := wrapReq(t, wp, secret, "node", "laptop")
	ann2 := wrapReq(t, wp, secret, r.Recipient)
	t.Setenv("OCIKP_PLUGIN_DIR", companion)
	t.Setenv("SOFTHSM2_CONF", tk.Conf)

	if err := os.Rename(filepath.Join(ks, "laptop.key"), filepath.Join(t.TempDir(), "laptop.key")); err != nil {
		t.Fatal(err)
	}
	for _, a := range [][]byte{ann, ann2} {
		got, err := unwrapReq(&keyprovider.Provider{Store: st, Passphrase: pin(testPIN)}, a)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("token key alone, empty parameters: %v", err)
		}
	}
	named := &keyprovider.Provider{Name: "ocikp", Store: st, Passphrase: pin(testPIN)}
	if got, err := unwrapReq(named, ann, "node"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("token key by name: %v", err)
	}
	// As ocikp serve runs it: keys cached between requests, a remote
	// caller; each unwrap runs the companion anew.
	served := &keyprovider.Provider{Store: st, Passphrase: pin(testPIN), CacheKeys: true, Remote: true}
	for range 2 {
		if got, err := unwrapReq(served, ann); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("service provider: %v", err)
		}
	}
	// The token goes away and comes back: the service reports it, then
	// unwraps again without a restart.
	t.Setenv("SOFTHSM2_CONF", filepath.Join(t.TempDir(), "none.conf"))
	if _, err := unwrapReq(served, ann); err == nil {
		t.Fatal("unwrapped with the token gone")
	} else {
		t.Logf("token gone: %v", err)
	}
	t.Setenv("SOFTHSM2_CONF", tk.Conf)
	if got, err := unwrapReq(served, ann); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("service provider, token back: %v", err)
	}
	wrongPIN := "PIN-wrong-31f0"
	_, err := unwrapReq(&keyprovider.Provider{Store: st, Passphrase: pin(wrongPIN)}, ann)
	if !errors.Is(err, pkcs11.ErrPINIncorrect) {
		t.Fatalf("wrong PIN: %v", err)
	}
	noLeak(t, err, wrongPIN)
	noLeak(t, err, testPIN)

	// The software key alone, in a keystore without the token key.
	st2 := &soft.Store{Dir: t.TempDir()}
	if _, err := st2.Create("laptop", priv, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := unwrapReq(&keyprovider.Provider{Store: st2}, ann); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("software key alone: %v", err)
	}
}

// TestPINSource: a record whose URI has pin-source reads the PIN from
// that file, which must be private.
func TestPINSource(t *testing.T) {
	tk := softhsmtest.Start(t, "node", testPIN)
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(testPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u := mustParse(t, tk.URI("k")+"&pin-source=file:"+pinFile)
	pub, found, err := pkcs11.Generate(u, []byte(testPIN))
	if err != nil {
		t.Fatal(err)
	}
	r, err := pkcs11.NewRecord("k", found, pub)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.PIN(nil)
	if err != nil || string(got) != testPIN {
		t.Fatalf("PIN from pin-source: %v", err)
	}
	os.Chmod(pinFile, 0o644)
	if _, err := r.PIN(nil); err == nil {
		t.Fatal("a PIN file others can read was used")
	}
}

// TestCompanionWithoutCgo: an ocikp-pkcs11 built without cgo says so,
// with the command that builds a working one.
func TestCompanionWithoutCgo(t *testing.T) {
	if _, err := os.Stat("/usr/lib/os-release"); err != nil {
		t.Skip("no /usr/lib/os-release to stand in for a module")
	}
	d := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(d, "ocikp-pkcs11"), "github.com/ocikp/ocikp/cmd/ocikp-pkcs11")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Setenv("OCIKP_PLUGIN_DIR", d)
	_, err := pkcs11.Existing(mustParse(t, "pkcs11:token=x;object=k?module-path=/usr/lib/os-release"), nil)
	if !errors.Is(err, pkcs11.ErrNoSupport) || !strings.Contains(strings.Join(hint.Of(err), " "), "CGO_ENABLED=1") {
		t.Fatalf("companion without cgo: %v (hints %q)", err, hint.Of(err))
	}
}
