package imagecli

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/legacy"
)

// appleSeed wraps secret for pub in the Apple keychain provider's format,
// which ocikp opens with a keystore key (legacy.Apple).
func appleSeed(t *testing.T, pub *ecdh.PublicKey, secret []byte) []byte {
	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := eph.ECDH(pub)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := aes.NewCipher(legacy.AppleKey(shared))
	g, _ := cipher.NewGCM(b)
	nonce := make([]byte, 12)
	rand.Read(nonce)
	blob, _ := json.Marshal(map[string]string{
		"KeyUrl":     "keychain://bob",
		"EphPub":     base64.StdEncoding.EncodeToString(eph.PublicKey().Bytes()),
		"WrappedKey": base64.StdEncoding.EncodeToString(g.Seal(nonce, nonce, secret, nil)),
		"WrapType":   "AES-GCM",
	})
	return blob
}

// A layer whose ocikp annotation holds, beside the envelope, an Apple
// seed blob for bob's key (what migrate --keep-old leaves, or what bob
// planted while he could push): --remove bob takes bob's stanza out of
// the envelope, but ocikp itself still opens the seed with bob's key. The
// removal must not be reported as verified; nothing is written.
func TestRewrapRemoveLegacySeed(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice, bob := newKey(t, st, "alice"), newKey(t, st, "bob")
	secret := []byte(`{"symkey":"x"}`)
	env, err := envelope.Seal(secret, alice, bob)
	if err != nil {
		t.Fatal(err)
	}
	bobPriv := privateKey(t, st, "bob")
	seed := appleSeed(t, bobPriv.PublicKey(), secret)
	a, err := legacy.ParseApple(seed)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Open(bobPriv); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the seed does not open with bob's key: %v", err)
	}

	dir := t.TempDir()
	put := layoutWriter(t, dir)
	cfg := put([]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	layer := put([]byte("layer"))
	ann := base64.StdEncoding.EncodeToString(seed) + "," + base64.StdEncoding.EncodeToString(env)
	m := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":1},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip+encrypted","digest":%q,"size":5,"annotations":{"org.opencontainers.image.enc.keys.provider.ocikp":%q}}]}`, cfg, layer, ann)
	md := put(m)
	idx := fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"annotations":{"org.opencontainers.image.ref.name":"img"}}]}`, md, len(m))
	os.WriteFile(filepath.Join(dir, "index.json"), []byte(idx), 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	img := "oci:" + dir + ":img"
	index0, _ := os.ReadFile(filepath.Join(dir, "index.json"))

	out, stderr, code := runMain("rewrap", "--keystore", ks, "--remove", "bob", img)
	checkError(t, stderr, code, "ocikp holds a wrapped key of the apple-keychain-provider (seed format), which names no recipient a removal can check; nothing was written")
	if b, _ := os.ReadFile(filepath.Join(dir, "index.json")); !bytes.Equal(b, index0) {
		t.Fatalf("index.json was written:\n%s%s", out, stderr)
	}
}

// A layer descriptor without a size (the OCI spec requires one) gave
// --rotate-layer-keys no bound on the blob it reads: a registry's endless
// body, or a layout blob linked to /dev/zero, was decrypted and written to
// a temporary file without end. It is refused before anything is read,
// and nothing is written.
func TestRotateUnsizedLayer(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice, bob := newKey(t, st, "alice"), newKey(t, st, "bob")
	dir, _ := encryptedLayout(t, func(opts []byte) map[string]string {
		blob, err := envelope.Seal(opts, alice, bob)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"org.opencontainers.image.enc.keys.provider.ocikp": base64.StdEncoding.EncodeToString(blob)}
	})
	var m map[string]any
	json.Unmarshal([]byte(readManifest(t, dir)), &m)
	delete(m["layers"].([]any)[0].(map[string]any), "size")
	raw, _ := json.Marshal(m)
	writeIndexJSON(t, dir, mtManifest, raw, layoutWriter(t, dir)(raw))
	index0, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	for _, extra := range [][]string{nil, {"--dry-run"}} {
		args := append([]string{"rewrap", "--keystore", ks, "--remove", alice.String(), "--rotate-layer-keys"}, extra...)
		out, stderr, code := runMain(append(args, "oci:"+dir+":img")...)
		if code != 1 || !strings.Contains(stderr, "no size") {
			t.Fatalf("%v: exit %d\n%s%s", extra, code, out, stderr)
		}
		checkError(t, stderr, code, "no size")
		if b, _ := os.ReadFile(filepath.Join(dir, "index.json")); !bytes.Equal(b, index0) {
			t.Fatalf("%v: index.json was written", extra)
		}
	}
}

// A stanza for the removed recipient under another provider name (which
// rewrap leaves as it is, and a runtime with that name configured still
// hands to its provider): on main the manifests and the tag were written
// first and only the read-back failed. Refused before anything is written.
func TestRewrapRemoveOtherProviderName(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice, bob := newKey(t, st, "alice"), newKey(t, st, "bob")
	secret := []byte(`{"symkey":"x"}`)
	ours, err := envelope.Seal(secret, alice, bob)
	if err != nil {
		t.Fatal(err)
	}
	other, err := envelope.Seal(secret, bob)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	put := layoutWriter(t, dir)
	cfg := put([]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	layer := put([]byte("layer"))
	m := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":1},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip+encrypted","digest":%q,"size":5,"annotations":{"org.opencontainers.image.enc.keys.provider.ocikp":%q,"org.opencontainers.image.enc.keys.provider.ocikp-old":%q}}]}`,
		cfg, layer, base64.StdEncoding.EncodeToString(ours), base64.StdEncoding.EncodeToString(other))
	md := put(m)
	os.WriteFile(filepath.Join(dir, "index.json"), fmt.Appendf(nil, `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"annotations":{"org.opencontainers.image.ref.name":"img"}}]}`, md, len(m)), 0o644)
	img := "oci:" + dir + ":img"
	index0, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	out, stderr, code := runMain("rewrap", "--keystore", ks, "--remove", "bob", img)
	checkError(t, stderr, code, "provider.ocikp-old")
	if b, _ := os.ReadFile(filepath.Join(dir, "index.json")); !bytes.Equal(b, index0) {
		t.Fatalf("index.json was written:\n%s%s", out, stderr)
	}
}
