//go:build darwin

package keychain_test

// The macOS flow of docs/macos.md against the real Keychain: run on a Mac
// with OCIKP_KEYCHAIN_TEST=1 (it creates and deletes keys in the login
// keychain; macOS may ask to allow ocikp to use them). With skopeo on PATH
// it also encrypts and decrypts an image (OCI layout directories, so no
// registry is needed).

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocikp/ocikp/internal/legacytest"
	"github.com/ocikp/ocikp/keys/keychain"
)

func TestKeychainOnMac(t *testing.T) {
	if os.Getenv("OCIKP_KEYCHAIN_TEST") != "1" {
		t.Skip("set OCIKP_KEYCHAIN_TEST=1 to use this Mac's Keychain")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "ocikp")
	build := exec.Command("go", "build", "-o", bin, "github.com/ocikp/ocikp/cmd/ocikp")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ks := filepath.Join(dir, "ks")
	ocikp := func(stdin []byte, args ...string) (string, string, error) {
		cmd := exec.Command(bin, append([]string{"--keystore", ks}, args...)...)
		if stdin != nil {
			cmd.Stdin = strings.NewReader(string(stdin))
		}
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	name := fmt.Sprintf("it%d", time.Now().UnixNano()%1e9)
	tag := "ocikp.test." + name

	recip, stderr, err := ocikp(nil, "keygen", "--backend", "keychain", "--tag", tag, name)
	if err != nil {
		t.Fatalf("keygen: %v\n%s", err, stderr)
	}
	recip = strings.TrimSpace(recip)
	t.Cleanup(func() { ocikp(nil, "delete", name) })
	if out, _, _ := ocikp(nil, "list"); !strings.Contains(out, name) || !strings.Contains(out, "keychain") {
		t.Fatalf("list: %s", out)
	}

	// Wrap for the Keychain key and unwrap with no parameters.
	opts := []byte(`{"symkey":"bWFj"}`)
	wrapReq, _ := json.Marshal(map[string]any{"op": "keywrap", "keywrapparams": map[string]any{
		"ec": map[string]any{"Parameters": map[string][][]byte{"ocikp": {[]byte(recip)}}}, "optsdata": opts}})
	out, stderr, err := ocikp(wrapReq, "keyprovider", "--name", "ocikp")
	if err != nil {
		t.Fatalf("wrap: %v\n%s", err, stderr)
	}
	var w struct {
		R struct{ Annotation []byte } `json:"keywrapresults"`
	}
	json.Unmarshal([]byte(out), &w)
	unwrap := func(ann []byte, params map[string][][]byte) (string, string, error) {
		req, _ := json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
			"dc": map[string]any{"Parameters": params}, "annotation": ann}})
		return ocikp(req, "keyprovider", "--name", "ocikp")
	}
	if out, stderr, err := unwrap(w.R.Annotation, nil); err != nil || !strings.Contains(out, base64.StdEncoding.EncodeToString(opts)) {
		t.Fatalf("unwrap: %v\n%s", err, stderr)
	}
	// Wrong key: a soft key alone cannot open it, and says so.
	ocikp(nil, "keygen", "other")
	if _, stderr, err := unwrap(w.R.Annotation, map[string][][]byte{"ocikp": {[]byte("other")}}); err == nil || !strings.Contains(stderr, "ocikp: error: no key can decrypt this layer") {
		t.Fatalf("wrong key: %v\n%s", err, stderr)
	}

	// A layer in the Apple provider's format, for this Keychain key,
	// opens through the seed's decryption URL.
	keys, err := keychain.System().Find(tag)
	if err != nil || len(keys) != 1 {
		t.Fatalf("find: %v", err)
	}
	blob, _ := legacytest.AppleBlob(t, keys[0].Public, opts, true)
	if _, stderr, err := unwrap(blob, map[string][][]byte{"ocikp": {[]byte("apple-se://se?mode=decrypt&tag=" + tag)}}); err != nil {
		t.Fatalf("seed blob: %v\n%s", err, stderr)
	}

	// The Secure Enclave: created when this binary is entitled, else the
	// explained refusal.
	_, stderr, err = ocikp(nil, "keygen", "--backend", "keychain", "--secure-enclave", "--tag", tag+".se", name+"se")
	if err == nil {
		t.Log("Secure Enclave key created (entitled binary)")
		ocikp(nil, "delete", name+"se")
	} else if !strings.Contains(stderr, "not code-signed") || !strings.Contains(stderr, "ocikp: hint: sign ocikp with a Developer ID") {
		t.Fatalf("Secure Enclave refusal not explained:\n%s", stderr)
	}

	if sk, err := exec.LookPath("skopeo"); err == nil {
		skopeoFlow(t, dir, bin, ks, sk, recip)
	} else {
		t.Log("skopeo not on PATH: image flow skipped")
	}

	if _, stderr, err := ocikp(nil, "delete", name); err != nil {
		t.Fatalf("delete: %v\n%s", err, stderr)
	}
	if _, err := keychain.System().Find(tag); err == nil {
		t.Fatal("the Keychain key survived delete")
	}
}

func skopeoFlow(t *testing.T, dir, bin, ks, skopeo, recip string) {
	cfg := filepath.Join(dir, "ocicrypt.json")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`{"key-providers":{"ocikp":{"cmd":{"path":%q,"args":["--keystore",%q,"keyprovider","--name","ocikp"]}}}}`, bin, ks)), 0o600)
	mk := exec.Command("go", "run", "github.com/ocikp/ocikp/internal/cmd/mkimage", "-layers", "2", filepath.Join(dir, "src"))
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("mkimage: %v\n%s", err, out)
	}
	run := func(args ...string) (string, error) {
		cmd := exec.Command(skopeo, args...)
		cmd.Env = append(os.Environ(), "OCICRYPT_KEYPROVIDER_CONFIG="+cfg)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	src, enc, dec := "oci:"+filepath.Join(dir, "src"), "oci:"+filepath.Join(dir, "enc"), "oci:"+filepath.Join(dir, "dec")
	if out, err := run("copy", "--encryption-key", "provider:ocikp:"+recip, src, enc); err != nil {
		t.Fatalf("skopeo encrypt: %v\n%s", err, out)
	}
	if out, err := run("copy", "--decryption-key", "provider:ocikp", enc, dec); err != nil {
		t.Fatalf("skopeo decrypt: %v\n%s", err, out)
	}
}
