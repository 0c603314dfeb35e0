package imagecli

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/p256"
)

// layout writes an OCI layout holding one image named "img" whose one
// layer is encrypted for recipients (none: a plain layer) and returns its
// directory.
func layout(t *testing.T, manifestOverride []byte, recipients ...envelope.Recipient) string {
	dir := t.TempDir()
	put := layoutWriter(t, dir)
	cfg := put([]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	layer := put([]byte("layer"))
	mt := "application/vnd.oci.image.layer.v1.tar+gzip"
	ann := ""
	if len(recipients) > 0 {
		blob, err := envelope.Seal([]byte(`{"symkey":"x"}`), recipients...)
		if err != nil {
			t.Fatal(err)
		}
		mt += "+encrypted"
		ann = fmt.Sprintf(`,"annotations":{"org.opencontainers.image.enc.keys.provider.ocikp":%q,"org.opencontainers.image.enc.keys.jwe":"QUJD"}`, base64.StdEncoding.EncodeToString(blob))
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":1},"layers":[{"mediaType":%q,"digest":%q,"size":5%s}]}`, cfg, mt, layer, ann))
	if manifestOverride != nil {
		m = manifestOverride
	}
	md := put(m)
	idx := fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"annotations":{"org.opencontainers.image.ref.name":"img"}}]}`, md, len(m))
	os.WriteFile(filepath.Join(dir, "index.json"), []byte(idx), 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	return dir
}

// layoutWriter returns a function that stores a blob in dir's layout and
// returns its digest.
func layoutWriter(t *testing.T, dir string) func([]byte) string {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	return func(b []byte) string {
		d := fmt.Sprintf("%x", sha256.Sum256(b))
		os.WriteFile(filepath.Join(blobs, d), b, 0o644)
		return "sha256:" + d
	}
}

type kidRecipient string

func (k kidRecipient) Wrap(fk []byte) (*envelope.Stanza, error) {
	return &envelope.Stanza{Type: "gcpkms", KID: string(k), Key: append([]byte(nil), fk...)}, nil
}

func newKey(t *testing.T, st *soft.Store, name string) *p256.Recipient {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(name, priv, nil); err != nil {
		t.Fatal(err)
	}
	r, err := p256.NewRecipient(priv.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func runMain(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// One error line (and at most two hints), exit 1, for what cannot be read.
func checkError(t *testing.T, stderr string, code int, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if code != 1 || !strings.HasPrefix(lines[0], "ocikp: error: ") || !strings.Contains(lines[0], want) || len(lines) > 3 {
		t.Fatalf("exit %d, stderr:\n%s\nwant one error line with %q", code, stderr, want)
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "ocikp: hint: ") {
			t.Fatalf("stderr line %q", l)
		}
	}
}

func TestRewrapLayout(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice, bob := newKey(t, st, "alice"), newKey(t, st, "bob")
	dir := layout(t, nil, alice)
	img := "oci:" + dir + ":img"
	index0, _ := os.ReadFile(filepath.Join(dir, "index.json"))

	out, stderr, code := runMain("rewrap", "--keystore", ks, "--add", bob.String(), "--dry-run", img)
	if code != 0 || !strings.Contains(out, "planned") {
		t.Fatalf("dry run: %d\n%s%s", code, out, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "index.json")); !bytes.Equal(b, index0) {
		t.Fatal("the dry run wrote index.json")
	}
	out, stderr, code = runMain("rewrap", "--keystore", ks, "--add", "bob", img)
	if code != 0 || !strings.Contains(out, "rewrapped") {
		t.Fatalf("rewrap --add bob (by key name): %d\n%s%s", code, out, stderr)
	}
	out, _, code = runMain("inspect", "--keystore", ks, "--keys", "--json", img)
	var reports []struct {
		Platforms []struct {
			Layers []struct {
				Keys      []string
				Wrappings []struct {
					Scheme string
					Blobs  []struct{ Recipients []struct{ Kind string } }
				}
			}
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &reports) != nil {
		t.Fatalf("inspect: %d\n%s", code, out)
	}
	l := reports[0].Platforms[0].Layers[0]
	if strings.Join(l.Keys, ",") != "alice,bob" || len(l.Wrappings) != 2 || len(l.Wrappings[1].Blobs[0].Recipients) != 2 {
		t.Fatalf("after the rewrap: %+v", l)
	}
	// The JWE annotation beside it kept its bytes.
	if !strings.Contains(readManifest(t, dir), `"org.opencontainers.image.enc.keys.jwe":"QUJD"`) {
		t.Fatal("the JWE annotation changed")
	}
	// Remove alice by her recipient: bob's keystore alone opens it.
	os.Remove(filepath.Join(ks, "alice.key"))
	out, stderr, code = runMain("rewrap", "--keystore", ks, "--remove", alice.String(), img)
	if code != 0 {
		t.Fatalf("rewrap --remove alice: %d\n%s%s", code, out, stderr)
	}
	out, _, _ = runMain("inspect", "--keystore", ks, img)
	if strings.Count(out, "p256 tag") != 1 {
		t.Fatalf("after removing alice:\n%s", out)
	}
}

func readManifest(t *testing.T, dir string) string {
	var idx struct{ Manifests []struct{ Digest string } }
	b, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	json.Unmarshal(b, &idx)
	m, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(idx.Manifests[0].Digest, "sha256:")))
	if err != nil {
		t.Fatal(err)
	}
	return string(m)
}

func TestBadImages(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice := newKey(t, st, "alice")
	other, _ := ecdh.P256().GenerateKey(rand.Reader)
	stranger, _ := p256.NewRecipient(other.PublicKey())

	_, stderr, code := runMain("inspect", "oci:"+layout(t, []byte(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":7}`))+":img")
	checkError(t, stderr, code, "unreadable manifest")

	_, stderr, code = runMain("rewrap", "--keystore", ks, "--add", alice.String(), "oci:"+layout(t, nil)+":img")
	checkError(t, stderr, code, "no layer of the image is encrypted")

	dir := layout(t, nil, stranger)
	index0, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	_, stderr, code = runMain("rewrap", "--keystore", ks, "--add", alice.String(), "oci:"+dir+":img")
	checkError(t, stderr, code, "layer 0 (sha256:")
	if !strings.Contains(stderr, "no key can decrypt this layer") {
		t.Fatalf("stderr: %s", stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "index.json")); !bytes.Equal(b, index0) {
		t.Fatal("a failed rewrap wrote index.json")
	}

	_, stderr, code = runMain("inspect", "oci:"+dir+":nope")
	checkError(t, stderr, code, `no image named "nope"`)
	_, stderr, code = runMain("inspect", "dir:/x")
	checkError(t, stderr, code, "unknown transport")
	_, stderr, code = runMain("rewrap", "oci:"+dir+":img")
	if code != 2 || !strings.Contains(stderr, "needs --add, --remove or --rotate-layer-keys") {
		t.Fatalf("rewrap without changes: %d %s", code, stderr)
	}
	_, stderr, code = runMain("rewrap", "--keystore", ks, "--add", "ocikp1p2561notarecipient", "oci:"+dir+":img")
	checkError(t, stderr, code, "--add 1 of 1")
}

func p256Identity(priv *ecdh.PrivateKey) envelope.Identity {
	return p256.NewIdentityFromKey("k", priv)
}

func rsaPair(t *testing.T) (privPEM, pubPEM []byte) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
}
