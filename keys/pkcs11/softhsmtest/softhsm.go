// Package softhsmtest gives tests a SoftHSM2 token of their own: a token
// directory and SOFTHSM2_CONF in t.TempDir(), initialised with
// softhsm2-util, and the ocikp-pkcs11 companion built (with cgo) and found
// through OCIKP_PLUGIN_DIR.
package softhsmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Module is Debian's SoftHSM2 PKCS#11 module.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// Token is one initialised token.
type Token struct {
	Label, PIN, SOPIN string
	Conf              string // its SOFTHSM2_CONF
}

// URI returns a pkcs11: URI of an object on the token (no PIN).
func (tk *Token) URI(object string) string {
	return "pkcs11:token=" + tk.Label + ";object=" + object + "?module-path=" + Module
}

// Start initialises a token labelled label with PIN pin, sets
// SOFTHSM2_CONF and OCIKP_PLUGIN_DIR for the test, or skips the test when
// softhsm2 is not installed and OCIKP_E2E is unset (scripts/test.sh sets
// it and installs softhsm2).
func Start(t testing.TB, label, pin string) *Token {
	t.Helper()
	if _, err := exec.LookPath("softhsm2-util"); err != nil || !exists(Module) {
		if os.Getenv("OCIKP_E2E") == "" {
			t.Skip("softhsm2 is not installed (scripts/install-tools.sh hardware installs it); set OCIKP_E2E=1 to fail instead")
		}
		t.Fatal("softhsm2 is not installed: run scripts/install-tools.sh hardware")
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	data := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(conf, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	tk := &Token{Label: label, PIN: pin, SOPIN: "so-" + pin, Conf: conf}
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", tk.SOPIN).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	t.Setenv("OCIKP_PLUGIN_DIR", Companion(t))
	return tk
}

// Companion builds ocikp-pkcs11 (with cgo) into a directory of the test's
// own and returns it; Go's build cache makes every build after the first a
// link.
func Companion(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	cmd := exec.Command("go", "build", "-o", filepath.Join(d, "ocikp-pkcs11"), "./cmd/ocikp-pkcs11")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building ocikp-pkcs11: %v\n%s", err, out)
	}
	return d
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
