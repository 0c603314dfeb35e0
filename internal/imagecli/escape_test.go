package imagecli

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/soft"
)

// hostile is what an image may carry in any string: a terminal escape
// (clear screen, window title), bidirectional controls, a C1 control,
// DEL, a line of its own and, where the field is not JSON-decoded first,
// invalid UTF-8.
func hostile(s string) string { return s + "\x1b[2J\x1b]0;TITLE\x07\u202e\u2066\u009b\x7f\nFORGED\t" }

const badUTF8 = "\xff\xfe"

// rawUnsafe returns the first character of out that must not reach a
// terminal raw: a control character other than newline and tab, DEL, a
// C1 control, a bidirectional control, or a byte of invalid UTF-8.
func rawUnsafe(out string) (string, bool) {
	for i, r := range out {
		switch {
		case r == utf8.RuneError:
			if _, n := utf8.DecodeRuneInString(out[i:]); n == 1 {
				return fmt.Sprintf("invalid UTF-8 at %d", i), true
			}
		case r < 0x20 && r != '\n' && r != '\t', r == 0x7f, r >= 0x80 && r < 0xa0,
			r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
			return fmt.Sprintf("%U at %d in %q", r, i, out[max(0, i-40):min(len(out), i+40)]), true
		}
	}
	return "", false
}

func checkClean(t *testing.T, what, out string) {
	t.Helper()
	if where, bad := rawUnsafe(out); bad {
		t.Errorf("%s: raw %s", what, where)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "FORGED") {
			t.Errorf("%s: a line of the image's own: %q", what, l)
		}
	}
}

// stanza is a recipient whose stanza carries hostile type and key id.
type stanza struct{ typ, kid string }

func (s stanza) Wrap(fk []byte) (*envelope.Stanza, error) {
	return &envelope.Stanza{Type: s.typ, KID: s.kid, Key: append([]byte(nil), fk...)}, nil
}

// hostileLayout writes a layout whose index entry, layer media type,
// key annotation names and envelope stanzas all carry hostile strings;
// alice opens the layer's ocikp envelope (and another provider's,
// under a hostile name, which migrate takes).
func hostileLayout(t *testing.T, alice envelope.Recipient) string {
	dir := t.TempDir()
	put := layoutWriter(t, dir)
	secret := []byte(`{"symkey":"x"}`)
	ours, err := envelope.Seal(secret, alice, stanza{hostile("gcpkms"), hostile("gcpkms://projects/p/") + "k"})
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := envelope.Seal(secret, alice)
	if err != nil {
		t.Fatal(err)
	}
	ann, _ := json.Marshal(map[string]string{
		"org.opencontainers.image.enc.keys.provider.ocikp":              base64.StdEncoding.EncodeToString(ours),
		"org.opencontainers.image.enc.keys.provider." + hostile("a"):    base64.StdEncoding.EncodeToString(theirs),
		"org.opencontainers.image.enc.keys." + hostile("jwe") + badUTF8: "QUJD",
	})
	mt, _ := json.Marshal("application/vnd.oci.image.layer.v1.tar" + hostile("") + badUTF8 + "+encrypted")
	cfg := put([]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	m := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":1},"layers":[{"mediaType":%s,"digest":%q,"size":5,"annotations":%s}]}`,
		cfg, mt, put([]byte("layer")), ann)
	md := put(m)
	platform, _ := json.Marshal(map[string]string{"os": hostile("linux"), "architecture": hostile("amd64") + badUTF8, "variant": hostile("v8")})
	index := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"platform":%s}]}`, md, len(m), platform)
	id := put(index)
	os.WriteFile(filepath.Join(dir, "index.json"), fmt.Appendf(nil, `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":%q,"size":%d,"annotations":{"org.opencontainers.image.ref.name":"img"}}]}`, id, len(index)), 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	return dir
}

// Every string from the image reaches text and JSON output of inspect,
// rewrap and migrate escaped: no control character, bidirectional
// control or invalid UTF-8 raw. JSON keeps the exact values (the
// characters are \u escapes a decoder reads back).
func TestImageStringsEscaped(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice := newKey(t, st, "alice")
	newKey(t, st, "bob")
	img := "oci:" + hostileLayout(t, alice) + ":img"

	run := func(what string, wantCode int, args ...string) string {
		t.Helper()
		out, stderr, code := runMain(args...)
		if code != wantCode {
			t.Fatalf("%s: exit %d, want %d\n%s%s", what, code, wantCode, out, stderr)
		}
		checkClean(t, what+" stdout", out)
		checkClean(t, what+" stderr", stderr)
		return out
	}

	text := run("inspect", 0, "inspect", "--keystore", ks, "--keys", img)
	for _, want := range []string{`linux\x1b[2J`, `tar\x1b[2J\x1b]0;TITLE\x07\u202e`, `jwe\x1b[2J`, `gcpkms\x1b[2J`} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect: no %q in\n%s", want, text)
		}
	}
	js := run("inspect --json", 0, "inspect", "--keystore", ks, "--keys", "--json", img)
	var reports []struct {
		Platforms []struct {
			Platform string
			Layers   []struct {
				MediaType string
				Wrappings []struct {
					Annotation string
					Blobs      []struct{ Recipients []struct{ Type, KID string } }
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(js), &reports); err != nil || len(reports) != 1 {
		t.Fatalf("inspect --json: %v\n%s", err, js)
	}
	// Exact values, but for invalid UTF-8 (JSON strings are UTF-8).
	p := reports[0].Platforms[0]
	if p.Platform != hostile("linux")+"/"+hostile("amd64")+"\ufffd\ufffd/"+hostile("v8") {
		t.Errorf("inspect --json platform %q", p.Platform)
	}
	if !strings.HasPrefix(p.Layers[0].MediaType, "application/vnd.oci.image.layer.v1.tar"+hostile("")) {
		t.Errorf("inspect --json media type %q", p.Layers[0].MediaType)
	}

	run("rewrap --dry-run", 0, "rewrap", "--keystore", ks, "--add", "bob", "--dry-run", img)
	run("rewrap --dry-run --json", 0, "rewrap", "--keystore", ks, "--add", "bob", "--dry-run", "--json", img)
	run("rewrap", 0, "rewrap", "--keystore", ks, "--add", "bob", img)
	// A migrate that fails (no key here opens the layer): its error names
	// the platform and the hostile annotations.
	bobOnly := filepath.Join(t.TempDir(), "keys")
	bob := newKey(t, &soft.Store{Dir: bobOnly}, "bob")
	run("migrate (fails)", 1, "migrate", "--keystore", bobOnly, "--name", "other", "--recipient", bob.String(), img)
	run("migrate --json (fails)", 1, "migrate", "--keystore", bobOnly, "--name", "other", "--recipient", bob.String(), "--json", img)
	run("migrate --dry-run --json", 0, "migrate", "--keystore", ks, "--name", "other", "--recipient", "bob", "--dry-run", "--json", img)
	run("migrate", 0, "migrate", "--keystore", ks, "--name", "other", "--recipient", "bob", "--keep-old", img)
	run("inspect after", 0, "inspect", "--keystore", ks, img)
	run("inspect --json after", 0, "inspect", "--keystore", ks, "--json", img)
}

// Tag names and error text from a registry are escaped too, in text and
// JSON.
func TestRegistryStringsEscaped(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	newKey(t, &soft.Store{Dir: ks}, "bob")
	tags, _ := json.Marshal(map[string]any{"name": "app", "tags": []string{"v1", hostile("v2"), "\u202egpj.exe"}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(200)
		case strings.HasSuffix(r.URL.Path, "/tags/list"):
			w.Header().Set("Content-Type", "application/json")
			w.Write(tags)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400) // a code and status kept as the registry says them
			fmt.Fprintf(w, `{"errors":[{"code":"UNSUPPORTED","message":%q}]}`, hostile("no such manifest")+badUTF8)
		}
	}))
	defer srv.Close()
	repo := "docker://" + strings.TrimPrefix(srv.URL, "http://") + "/app"
	for _, args := range [][]string{
		{"inspect", "--tls-verify=false", repo + ":v1"},
		{"rewrap", "--tls-verify=false", "--keystore", ks, "--add", "bob", repo + ":v1"},
		{"rewrap", "--tls-verify=false", "--keystore", ks, "--add", "bob", "--json", repo + ":v1"},
		{"rewrap", "--tls-verify=false", "--keystore", ks, "--add", "bob", "--all-tags", repo},
		{"rewrap", "--tls-verify=false", "--keystore", ks, "--add", "bob", "--all-tags", "--json", repo},
		{"migrate", "--tls-verify=false", "--keystore", ks, "--recipient", "bob", repo + ":v1"},
		{"migrate", "--tls-verify=false", "--keystore", ks, "--recipient", "bob", "--json", repo + ":v1", repo + ":v1"},
	} {
		out, stderr, code := runMain(args...)
		what := strings.Join(args[:len(args)-1], " ")
		if code != 1 || !strings.Contains(out+stderr, "UNSUPPORTED") {
			t.Errorf("%s: exit %d, want 1 and the registry's error\n%s%s", what, code, out, stderr)
		}
		checkClean(t, what+" stdout", out)
		checkClean(t, what+" stderr", stderr)
	}
}
