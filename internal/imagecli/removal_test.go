package imagecli

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/p256"
)

// testRegistry serves an in-process registry over plain HTTP, its
// handler wrapped by wrap (nil: as it is), and returns its host.
func testRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	var h http.Handler = registry.New(registry.Logger(logDiscard()))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

type rawManifestT struct {
	raw []byte
	mt  string
}

func (m rawManifestT) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifestT) MediaType() (types.MediaType, error) { return types.MediaType(m.mt), nil }

// pushImage pushes an image whose one layer is encrypted for recipients
// to host/app:1 and returns its name for ocikp and its manifest digest.
func pushImage(t *testing.T, host string, recipients ...envelope.Recipient) (string, string) {
	return pushTag(t, host, "1", recipients...)
}

// pushTag pushes as pushImage does, to host/app:TAG.
func pushTag(t *testing.T, host, tag string, recipients ...envelope.Recipient) (string, string) {
	ref, err := name.ParseReference(host+"/app:"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	put := func(b []byte, mt string) string {
		l := static.NewLayer(b, types.MediaType(mt))
		if err := remote.WriteLayer(ref.Context(), l); err != nil {
			t.Fatal(err)
		}
		d, _ := l.Digest()
		return d.String()
	}
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	cfgD := put(cfg, "application/vnd.oci.image.config.v1+json")
	layerMT := "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
	layerD := put([]byte("layer"), layerMT)
	blob, err := envelope.Seal([]byte(`{"symkey":"x"}`), recipients...)
	if err != nil {
		t.Fatal(err)
	}
	m := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":%q,"digest":%q,"size":5,"annotations":{"org.opencontainers.image.enc.keys.provider.ocikp":%q}}]}`,
		cfgD, len(cfg), layerMT, layerD, base64.StdEncoding.EncodeToString(blob))
	if err := remote.Put(ref, rawManifestT{m, "application/vnd.oci.image.manifest.v1+json"}); err != nil {
		t.Fatal(err)
	}
	return "docker://" + ref.String(), fmt.Sprintf("sha256:%x", sha256.Sum256(m))
}

// tagDigest is the digest app:1 points at now.
func tagDigest(t *testing.T, host string) string { return remoteDigest(t, host, "1") }

func remoteDigest(t *testing.T, host, tag string) string {
	ref, _ := name.ParseReference(host+"/app:"+tag, name.Insecure)
	d, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	return d.Digest.String()
}

func logDiscard() *log.Logger { return log.New(io.Discard, "", 0) }

func stranger(t *testing.T) *p256.Recipient {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r, err := p256.NewRecipient(k.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkNames reports whether text names recipient r as output shows
// recipients: both ends of it, whatever is cut from the middle.
func checkNames(t *testing.T, text, r string) {
	t.Helper()
	if !strings.Contains(text, r[:40]) || !strings.Contains(text, r[len(r)-16:]) {
		t.Fatalf("the output does not name %s:\n%s", r, text)
	}
}

// --remove of a recipient that no layer holds is an error naming it, and
// nothing is written: in a layout and at a registry, dry run or not.
func TestRewrapRemoveStranger(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice, bob := newKey(t, st, "alice"), newKey(t, st, "bob")
	mallory := stranger(t).String()

	dir := layout(t, nil, alice, bob)
	img := "oci:" + dir + ":img"
	index0, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	for _, extra := range [][]string{nil, {"--dry-run"}, {"--add", "bob"}, {"--rotate-layer-keys"}} {
		args := append([]string{"rewrap", "--keystore", ks, "--remove", mallory}, extra...)
		_, stderr, code := runMain(append(args, img)...)
		checkError(t, stderr, code, "no layer of "+img+" holds a stanza for it")
		checkNames(t, stderr, mallory)
		if b, _ := os.ReadFile(filepath.Join(dir, "index.json")); !bytes.Equal(b, index0) {
			t.Fatalf("%v: index.json was written", extra)
		}
	}
	// Together with one that is there: still nothing written.
	_, stderr, code := runMain("rewrap", "--keystore", ks, "--remove", bob.String(), "--remove", mallory, img)
	checkError(t, stderr, code, "holds a stanza for it")
	if b, _ := os.ReadFile(filepath.Join(dir, "index.json")); !bytes.Equal(b, index0) {
		t.Fatal("index.json was written")
	}

	host := testRegistry(t, nil)
	ref, d0 := pushImage(t, host, alice, bob)
	_, stderr, code = runMain("rewrap", "--keystore", ks, "--tls-verify=false", "--remove", mallory, ref)
	checkError(t, stderr, code, "no layer of "+ref+" holds a stanza for it")
	checkNames(t, stderr, mallory)
	if d := tagDigest(t, host); d != d0 {
		t.Fatalf("the tag moved from %s to %s", d0, d)
	}
}

// After writing, rewrap reads the tag back and says that no layer it
// reaches holds a removed recipient; in JSON too.
func TestRewrapVerifiesRemoval(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice, bob := newKey(t, st, "alice"), newKey(t, st, "bob")
	dir := layout(t, nil, alice, bob)
	img := "oci:" + dir + ":img"
	out, stderr, code := runMain("rewrap", "--keystore", ks, "--remove", alice.String(), img)
	if code != 0 {
		t.Fatalf("rewrap --remove alice: %d\n%s%s", code, out, stderr)
	}
	if !strings.Contains(out+stderr, "verified: no layer reachable from "+img+" holds a stanza for ") {
		t.Fatalf("no verification line:\n%s%s", out, stderr)
	}
	checkNames(t, out+stderr, alice.String())

	host := testRegistry(t, nil)
	ref, _ := pushImage(t, host, alice, bob)
	out, stderr, code = runMain("rewrap", "--keystore", ks, "--tls-verify=false", "--json", "--remove", "alice", ref)
	var res []struct {
		Status   string
		Verified []string
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res) != 1 || res[0].Status != "rewrapped" ||
		len(res[0].Verified) != 1 || !strings.Contains(res[0].Verified[0], "no layer reachable from "+ref+" holds a stanza for alice") {
		t.Fatalf("rewrap --json --remove alice: %d\n%s%s", code, out, stderr)
	}
	// The dry run writes nothing, so it claims nothing.
	_, stderr, _ = runMain("rewrap", "--keystore", ks, "--tls-verify=false", "--dry-run", "--remove", "bob", "--add", alice.String(), ref)
	if strings.Contains(stderr, "verified") {
		t.Fatalf("a dry run claims a verification:\n%s", stderr)
	}
}

// A registry that answers the tag's write and drops it: the read-back
// finds the removed recipient still there, and rewrap fails.
func TestRewrapVerificationFails(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice, bob := newKey(t, st, "alice"), newKey(t, st, "bob")
	var drop atomic.Bool
	var dropped atomic.Int32
	host := testRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if drop.Load() && r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") && !strings.Contains(r.URL.Path, "sha256:") {
				b, _ := io.ReadAll(r.Body)
				dropped.Add(1)
				w.Header().Set("Docker-Content-Digest", fmt.Sprintf("sha256:%x", sha256.Sum256(b)))
				w.WriteHeader(http.StatusCreated)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	ref, d0 := pushImage(t, host, alice, bob)
	drop.Store(true)
	out, stderr, code := runMain("rewrap", "--keystore", ks, "--tls-verify=false", "--remove", alice.String(), ref)
	if dropped.Load() != 1 {
		t.Fatalf("%d tag writes dropped\n%s%s", dropped.Load(), out, stderr)
	}
	checkError(t, stderr, code, "still holds a stanza for")
	if !strings.Contains(stderr, d0) {
		t.Fatalf("the error does not say where the tag points:\n%s", stderr)
	}
}

// --all-tags: a tag without R is left as the rest of the plan says; R
// that no tag holds fails the run, naming R.
func TestRewrapRemoveAllTags(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice, bob := newKey(t, st, "alice"), newKey(t, st, "bob")
	host := testRegistry(t, nil)
	_, d1 := pushTag(t, host, "1", alice, bob)
	_, d2 := pushTag(t, host, "2", bob)
	mallory := stranger(t).String()
	// With another change beside it: still nothing written.
	out, stderr, code := runMain("rewrap", "--keystore", ks, "--tls-verify=false", "--all-tags", "--remove", mallory, "--add", stranger(t).String(), "docker://"+host+"/app")
	checkError(t, stderr, code, "no tag of the repositories holds a stanza for it; nothing was written")
	checkNames(t, stderr, mallory)
	if remoteDigest(t, host, "1") != d1 || remoteDigest(t, host, "2") != d2 {
		t.Fatalf("--all-tags --remove of a stranger wrote:\n%s%s", out, stderr)
	}
	out, stderr, code = runMain("rewrap", "--keystore", ks, "--tls-verify=false", "--all-tags", "--remove", "alice", "docker://"+host+"/app")
	if code != 0 || strings.Count(out, " rewrapped ") != 1 || strings.Count(out, " up to date ") != 1 ||
		!strings.Contains(stderr, "verified: no layer reachable from docker://"+host+"/app:1 holds a stanza for alice") {
		t.Fatalf("--all-tags --remove alice: %d\n%s%s", code, out, stderr)
	}
	if d := remoteDigest(t, host, "2"); d != d2 {
		t.Fatal("app:2, which never held alice, was written")
	}
}
