package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func runMain(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	t.Setenv("OCIKP_KEYSTORE", t.TempDir())
	runMain(t, "", "keygen", "alice")
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"version"}, 0},
		{[]string{"help"}, 0},
		{[]string{"list"}, 0},
		{[]string{"frobnicate"}, 2},
		{[]string{"keygen"}, 2},
		{[]string{"list", "--bogus"}, 2},
		{[]string{"--keystore"}, 2},
		{[]string{"recipient", "nobody"}, 1},
		{[]string{"recipient", "../x"}, 2},
		{[]string{"keygen", "bad name"}, 2},
		{[]string{"delete", "nobody"}, 1}, // no such key: said before asking for --force
		{[]string{"delete", "alice"}, 2},  // not a terminal: needs --force
		{[]string{"kms", "--help"}, 0},
		{[]string{"help", "list"}, 0},
		{[]string{"keyprovider"}, 1}, // empty stdin
	} {
		code, _, stderr := runMain(t, "", c.args...)
		if code != c.want {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, code, c.want, stderr)
		}
		if code != 0 {
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			if !strings.HasPrefix(lines[0], "ocikp: error: ") || len(lines) > 3 {
				t.Errorf("%v: stderr is not one error and at most two hints:\n%s", c.args, stderr)
			}
			for _, l := range lines[1:] {
				if !strings.HasPrefix(l, "ocikp: hint: ") {
					t.Errorf("%v: stray stderr line %q", c.args, l)
				}
			}
		}
	}
}

const marker = "MARKERSECRET7f3a9c"

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func req(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// No failing request may put a secret (optsdata, another provider's key
// material, a key value we were passed) on stdout, stderr or the debug log.
func TestSecretsNeverLeak(t *testing.T) {
	ks := t.TempDir()
	t.Setenv("OCIKP_KEYSTORE", ks)
	t.Setenv("OCIKP_LOG", "debug")
	_, rec, _ := runMain(t, "", "keygen", "alice")
	_ = rec
	code, alice, _ := runMain(t, "", "recipient", "alice")
	if code != 0 {
		t.Fatal("no key")
	}
	alice = strings.TrimSpace(alice)
	secretOpts := `{"symkey":"` + marker + `"}`
	otherKey := "-----BEGIN PRIVATE KEY-----" + marker
	wrap := func(params map[string][]string, opts string) string {
		return req(t, map[string]any{"op": "keywrap", "keywrapparams": map[string]any{
			"ec": map[string]any{"Parameters": params}, "optsdata": b64(opts)}})
	}
	unwrap := func(params map[string][]string, ann string) string {
		return req(t, map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
			"dc": map[string]any{"Parameters": params}, "annotation": b64(ann)}})
	}
	// A good blob for alice, to try with wrong keys.
	code, good, _ := runMain(t, wrap(map[string][]string{"ocikp": {b64(alice)}}, secretOpts), "keyprovider", "--name", "ocikp")
	if code != 0 {
		t.Fatal("wrap failed")
	}
	var reply struct {
		R struct{ Annotation []byte } `json:"keywrapresults"`
	}
	json.Unmarshal([]byte(good), &reply)
	blob := string(reply.R.Annotation)

	failing := map[string]string{
		"bad recipient":         wrap(map[string][]string{"ocikp": {b64("ocikp-p256:" + marker)}, "pgp": {b64(otherKey)}}, secretOpts),
		"recipient is marker":   wrap(map[string][]string{"ocikp": {b64(marker)}}, secretOpts),
		"no entry for us":       wrap(map[string][]string{"jwe": {b64(otherKey)}}, secretOpts),
		"unknown scheme":        wrap(map[string][]string{"ocikp": {b64("gcpkms://" + marker)}}, secretOpts),
		"kms with secret opts":  wrap(map[string][]string{"ocikp": {b64(alice), b64("awskms://" + marker)}}, secretOpts),
		"wrong key name":        unwrap(map[string][]string{"ocikp": {b64(marker)}, "privkeys": {b64(otherKey)}}, blob),
		"wrong key path":        unwrap(map[string][]string{"ocikp": {b64("/tmp/" + marker)}}, blob),
		"garbage annotation":    unwrap(map[string][]string{"privkeys": {b64(otherKey)}}, marker),
		"tampered annotation":   unwrap(nil, strings.Replace(blob, `"mac":"`, `"mac":"A`, 1)),
		"legacy-looking marker": unwrap(nil, `{"KeyUrl":"`+marker+`","EphPub":"`+marker+`","WrappedKey":"","WrapType":"AES-GCM"}`),
		"bad op":                `{"op":"` + marker + `"}`,
		"truncated":             wrap(map[string][]string{"ocikp": {b64(alice)}}, secretOpts)[:60],
		"wrong type":            `{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"x":"` + marker + `"}},"optsdata":"` + b64(secretOpts) + `"}}`,
		"bad base64":            `{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{}},"optsdata":"` + marker + `!"}}`,
	}
	secrets := []string{marker, b64(secretOpts), b64(otherKey)}
	// Without --name these entries are not recognised as ours, and the
	// unwrap rightly succeeds with every key.
	nameOnly := map[string]bool{"wrong key name": true, "wrong key path": true}
	keyName := map[string]bool{"wrong key name": true, "recipient is marker": true}
	for name, in := range failing {
		for _, args := range [][]string{{"keyprovider", "--name", "ocikp"}, {"keyprovider"}} {
			if nameOnly[name] && len(args) == 1 {
				continue
			}
			code, stdout, stderr := runMain(t, in, args...)
			if code == 0 {
				t.Errorf("%s %v: succeeded", name, args)
			}
			if keyName[name] && len(args) > 1 {
				// A key name the keystore lacks is repeated to the local
				// user who gave it (issue 21), and only as that name; the
				// service never repeats one (keyprovider's tests).
				stderr = strings.ReplaceAll(stderr, `no key "`+marker+`" in keystore`, "")
			}
			for _, s := range secrets {
				if strings.Contains(stdout, s) || strings.Contains(stderr, s) {
					t.Errorf("%s %v: secret on output:\nstdout: %s\nstderr: %s", name, args, stdout, stderr)
				}
			}
		}
	}
	// Another keystore: the wrong-key path, with a passphrase in the environment.
	t.Setenv("OCIKP_KEYSTORE", t.TempDir())
	t.Setenv("OCIKP_PASSPHRASE", marker)
	runMain(t, "", "keygen", "bob")
	code, stdout, stderr := runMain(t, unwrap(map[string][]string{"privkeys": {b64(otherKey)}}, blob), "keyprovider")
	if code == 0 || strings.Contains(stdout+stderr, marker) {
		t.Errorf("wrong keystore: exit %d, output %s %s", code, stdout, stderr)
	}
}

// stdin from /dev/null (a character device, not a terminal) is input: with
// no command, ocikp answers it as a request rather than printing usage.
func TestDevNullIsNotATerminal(t *testing.T) {
	t.Setenv("OCIKP_KEYSTORE", t.TempDir())
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	var out, errb bytes.Buffer
	code := Main(nil, null, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "malformed key provider request: empty input") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}
