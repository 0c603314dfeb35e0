package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/keys/keychain"
	"github.com/ocikp/ocikp/keys/keychain/keychaintest"
)

// privateField returns the base64 private key a key file or Keychain
// record holds in clear.
func privateField(t *testing.T, path string, nested string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	json.Unmarshal(data, &m)
	if nested != "" {
		json.Unmarshal(m[nested], &m)
	}
	var s string
	json.Unmarshal(m["private"], &s)
	if len(s) < 40 {
		t.Fatalf("%s: no private key in clear", path)
	}
	return s
}

// The post-quantum key files' seeds, a hybrid Keychain record's ML-KEM
// half, and a passphrase never reach stdout or stderr: not when keys are
// made, listed or printed, not in a failing wrap or unwrap.
func TestPostQuantumSecretsNeverLeak(t *testing.T) {
	ks := t.TempDir()
	t.Setenv("OCIKP_KEYSTORE", ks)
	pass := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(pass, []byte(marker+"\n"), 0o600)
	var outputs bytes.Buffer
	run := func(stdin string, args ...string) (int, string) {
		code, stdout, stderr := runMain(t, stdin, args...)
		outputs.WriteString(stdout + stderr)
		return code, strings.TrimSpace(stdout)
	}
	_, xw := run("", "keygen", "--type", "mlkem768x25519", "xw")
	_, mp := run("", "keygen", "--type", "mlkem768p256", "--passphrase-file", pass, "mp")
	_, classic := run("", "keygen", "classic")
	fake := &keychaintest.Fake{}
	e := &env{stdin: strings.NewReader(""), stdout: &outputs, stderr: &outputs, kc: keychain.New(fake)}
	if code := mainEnv(e, []string{"keygen", "--backend", "keychain", "--type", "mlkem768p256", "mac"}); code != 0 {
		t.Fatalf("keychain hybrid keygen: %s", outputs.String())
	}
	secrets := []string{marker, privateField(t, filepath.Join(ks, "xw.key"), ""),
		privateField(t, filepath.Join(ks, "keychain", "mac.json"), "mlkem")}
	for _, args := range [][]string{{"list"}, {"list", "--json"}, {"recipient", "xw"}, {"recipient", "mp"}, {"recipient", "mac"}} {
		if code, _ := run("", args...); code != 0 {
			t.Fatalf("%v failed", args)
		}
	}
	wrap := func(vals ...string) string {
		var enc []string
		for _, v := range vals {
			enc = append(enc, b64(v))
		}
		return req(t, map[string]any{"op": "keywrap", "keywrapparams": map[string]any{
			"ec": map[string]any{"Parameters": map[string][]string{"ocikp": enc}}, "optsdata": b64(`{"symkey":"` + marker + `"}`)}})
	}
	for name, in := range map[string]string{
		"mixed":      wrap(xw, classic),
		"typo":       wrap(typo(xw, 40)),
		"truncated":  wrap(mp[:200]),
		"mixed, kms": wrap(mp, "azurekms://v.vault.azure.net/keys/k"),
	} {
		if code, _ := run(in, "keyprovider", "--name", "ocikp"); code == 0 {
			t.Errorf("%s: succeeded", name)
		}
	}
	// A layer for mp, unwrapped without its passphrase: the wrong-key path.
	code, good := run(wrap(mp), "keyprovider", "--name", "ocikp")
	if code != 0 {
		t.Fatal("wrap for mp failed")
	}
	var reply struct {
		R struct{ Annotation []byte } `json:"keywrapresults"`
	}
	json.Unmarshal([]byte(good), &reply)
	unwrap := req(t, map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
		"dc": map[string]any{"Parameters": map[string][]string{}}, "annotation": b64(string(reply.R.Annotation))}})
	if code, _ := run(unwrap, "keyprovider"); code == 0 {
		t.Error("unwrap without the passphrase succeeded")
	}
	if code, _ := run(unwrap, "keyprovider", "--passphrase-file", pass); code != 0 {
		t.Error("unwrap with the passphrase failed")
	}
	for _, s := range secrets {
		if strings.Contains(outputs.String(), s) {
			t.Fatalf("a secret reached the output:\n%s", outputs.String())
		}
	}
	if !strings.Contains(outputs.String(), "mlkem768p256 (keychain") {
		t.Fatalf("list does not show the hybrid Keychain key:\n%s", outputs.String())
	}
}

// typo changes the character at i to another of the Bech32 alphabet.
func typo(s string, i int) string {
	c := "q"
	if s[i] == 'q' {
		c = "p"
	}
	return s[:i] + c + s[i+1:]
}
