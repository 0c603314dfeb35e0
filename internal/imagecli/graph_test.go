package imagecli

import (
	"archive/tar"
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"crypto/sha512"
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
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/soft"
)

const (
	mtIndex    = "application/vnd.oci.image.index.v1+json"
	mtManifest = "application/vnd.oci.image.manifest.v1+json"
)

// encManifest is an image manifest whose one layer (content) is encrypted
// for recipients.
func encManifest(t *testing.T, put func([]byte) string, content string, recipients ...envelope.Recipient) []byte {
	blob, err := envelope.Seal([]byte(`{"symkey":"x"}`), recipients...)
	if err != nil {
		t.Fatal(err)
	}
	cfg := put([]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":1},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip+encrypted","digest":%q,"size":%d,"annotations":{"org.opencontainers.image.enc.keys.provider.ocikp":%q}}]}`,
		mtManifest, cfg, put([]byte(content)), len(content), base64.StdEncoding.EncodeToString(blob))
}

func entryOf(mt string, raw []byte, digest, extra string) string {
	return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d%s}`, mt, digest, len(raw), extra)
}

func indexOf(entries ...string) []byte {
	return []byte(`{"schemaVersion":2,"mediaType":"` + mtIndex + `","manifests":[` + strings.Join(entries, ",") + `]}`)
}

// nestedImage is an index listing one manifest, its layer encrypted for
// top, and a nested index that lists another, its layer encrypted for
// nested; it returns the top index, stored by put.
func nestedImage(t *testing.T, put func([]byte) string, top, nested []envelope.Recipient) []byte {
	a := encManifest(t, put, "layer a", top...)
	b := encManifest(t, put, "layer b", nested...)
	x := indexOf(entryOf(mtManifest, b, put(b), `,"platform":{"os":"linux","architecture":"arm64"}`))
	return indexOf(entryOf(mtManifest, a, put(a), `,"platform":{"os":"linux","architecture":"amd64"}`), entryOf(mtIndex, x, put(x), ""))
}

// nestedLayout writes nestedImage into a new layout as "img".
func nestedLayout(t *testing.T, top, nested []envelope.Recipient) string {
	dir := t.TempDir()
	put := layoutWriter(t, dir)
	x := nestedImage(t, put, top, nested)
	writeIndexJSON(t, dir, mtIndex, x, put(x))
	return dir
}

func writeIndexJSON(t *testing.T, dir, mt string, raw []byte, digest string) {
	os.WriteFile(filepath.Join(dir, "index.json"), indexOf(entryOf(mt, raw, digest, `,"annotations":{"org.opencontainers.image.ref.name":"img"}`)), 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

// reachable walks the graph from the tag's manifest, as a runtime does,
// following every index (independently of imagekeys), and returns every
// layer's annotations.
func reachable(t *testing.T, fetch func(digest string) []byte, raw []byte) []map[string]string {
	var doc struct {
		MediaType string
		Manifests []struct{ Digest string }
		Layers    []struct{ Annotations map[string]string }
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, l := range doc.Layers {
		out = append(out, l.Annotations)
	}
	for _, m := range doc.Manifests {
		out = append(out, reachable(t, fetch, fetch(m.Digest))...)
	}
	return out
}

func layoutFetch(t *testing.T, dir string) func(string) []byte {
	return func(d string) []byte {
		alg, hex, _ := strings.Cut(d, ":")
		b, err := os.ReadFile(filepath.Join(dir, "blobs", alg, hex))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

// opens reports how many of the layers open with priv's key.
func opens(t *testing.T, layers []map[string]string, priv *ecdh.PrivateKey) int {
	n := 0
	for _, ann := range layers {
		blob, _ := base64.StdEncoding.DecodeString(ann["org.opencontainers.image.enc.keys.provider.ocikp"])
		env, err := envelope.Parse(blob)
		if err != nil {
			t.Fatalf("layer envelope: %v", err)
		}
		if _, err := env.Open(p256Identity(priv)); err == nil {
			n++
		}
	}
	return n
}

func privateKey(t *testing.T, st *soft.Store, name string) *ecdh.PrivateKey {
	k, err := st.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := k.PrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// inspectPlatforms runs inspect --json and returns the platforms' layer
// digests.
func inspectPlatforms(t *testing.T, args ...string) [][]string {
	out, stderr, code := runMain(append([]string{"inspect", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("inspect: %d %s", code, stderr)
	}
	var reports []struct {
		Platforms []struct{ Layers []struct{ Digest string } }
	}
	if err := json.Unmarshal([]byte(out), &reports); err != nil {
		t.Fatal(err)
	}
	var ps [][]string
	for _, p := range reports[0].Platforms {
		var ds []string
		for _, l := range p.Layers {
			ds = append(ds, l.Digest)
		}
		ps = append(ps, ds)
	}
	return ps
}

// A layer reached through a nested index is part of the image: inspect
// shows it, and rewrap --remove of a key whose only stanza sits under the
// nested index leaves no layer the tag reaches that the removed key opens.
func TestNestedIndexLayout(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice, bob := newKey(t, st, "alice"), newKey(t, st, "bob")
	dir := nestedLayout(t, []envelope.Recipient{alice}, []envelope.Recipient{alice, bob})
	img := "oci:" + dir + ":img"

	if ps := inspectPlatforms(t, img); len(ps) != 2 {
		t.Fatalf("inspect shows %d image manifests, want 2 (one under the nested index): %v", len(ps), ps)
	}
	out, stderr, code := runMain("rewrap", "--keystore", ks, "--remove", bob.String(), img)
	var idx struct{ Manifests []struct{ Digest string } }
	b, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	json.Unmarshal(b, &idx)
	fetch := layoutFetch(t, dir)
	layers := reachable(t, fetch, fetch(idx.Manifests[0].Digest))
	if n := opens(t, layers, privateKey(t, st, "bob")); n != 0 {
		t.Fatalf("rewrap --remove bob: exit %d\n%s%s\nbob still opens %d of the %d layers the tag reaches", code, out, stderr, n, len(layers))
	}
	if code != 0 || len(layers) != 2 || opens(t, layers, privateKey(t, st, "alice")) != 2 {
		t.Fatalf("rewrap --remove bob: exit %d\n%s%s", code, out, stderr)
	}
}

// The same image in a registry: children are pushed before their parents
// (the registry checks that an index's entries exist).
func TestNestedIndexRegistry(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice, bob := newKey(t, st, "alice"), newKey(t, st, "bob")
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	var order []string
	docs := map[string][]byte{}
	put := func(b []byte) string {
		d := fmt.Sprintf("sha256:%x", sha256.Sum256(b))
		if _, ok := docs[d]; !ok && bytes.Contains(b, []byte(`"schemaVersion"`)) {
			order = append(order, d)
		}
		docs[d] = b
		return d
	}
	top := nestedImage(t, put, []envelope.Recipient{alice}, []envelope.Recipient{alice, bob})
	for _, d := range order { // children were stored first
		pushManifest(t, srv.URL, d, docs[d])
	}
	pushManifest(t, srv.URL, "1", top)
	img := "docker://" + host + "/app:1"

	if ps := inspectPlatforms(t, "--tls-verify=false", img); len(ps) != 2 {
		t.Fatalf("inspect shows %d image manifests, want 2: %v", len(ps), ps)
	}
	out, stderr, code := runMain("rewrap", "--tls-verify=false", "--keystore", ks, "--remove", bob.String(), img)
	fetch := func(d string) []byte { return getManifest(t, srv.URL, d) }
	layers := reachable(t, fetch, fetch("1"))
	if n := opens(t, layers, privateKey(t, st, "bob")); n != 0 {
		t.Fatalf("rewrap --remove bob: exit %d\n%s%s\nbob still opens %d of the %d layers the tag reaches", code, out, stderr, n, len(layers))
	}
	if code != 0 || len(layers) != 2 || opens(t, layers, privateKey(t, st, "alice")) != 2 {
		t.Fatalf("rewrap --remove bob: exit %d\n%s%s", code, out, stderr)
	}
}

func pushManifest(t *testing.T, base, ref string, raw []byte) {
	var probe struct{ MediaType string }
	json.Unmarshal(raw, &probe)
	req, _ := http.NewRequest(http.MethodPut, base+"/v2/app/manifests/"+ref, bytes.NewReader(raw))
	req.Header.Set("Content-Type", probe.MediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s: %s", ref, resp.Status)
	}
}

func getManifest(t *testing.T, base, ref string) []byte {
	req, _ := http.NewRequest(http.MethodGet, base+"/v2/app/manifests/"+ref, nil)
	req.Header.Set("Accept", mtIndex+","+mtManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", ref, resp.Status)
	}
	return b
}

// Indexes nested deeper than the bound: one clear error, nothing read
// past it, nothing written.
func TestNestedIndexDepth(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	alice := newKey(t, &soft.Store{Dir: ks}, "alice")
	dir := t.TempDir()
	put := layoutWriter(t, dir)
	x := indexOf(entryOf(mtManifest, nil, put(encManifest(t, put, "l", alice)), ""))
	for range 4 { // five levels with the tag's own
		x = indexOf(entryOf(mtIndex, x, put(x), ""))
	}
	writeIndexJSON(t, dir, mtIndex, x, put(x))
	// entryOf(…, nil, …) left a wrong size on the innermost entry: the
	// depth is refused before that entry is read.
	_, stderr, code := runMain("inspect", "oci:"+dir+":img")
	checkError(t, stderr, code, "nest more than 4 deep")
	index0, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	_, stderr, code = runMain("rewrap", "--keystore", ks, "--add", newKey(t, &soft.Store{Dir: ks}, "bob").String(), "oci:"+dir+":img")
	checkError(t, stderr, code, "nest more than 4 deep")
	if b, _ := os.ReadFile(filepath.Join(dir, "index.json")); !bytes.Equal(b, index0) {
		t.Fatal("a refused image was written")
	}
}

// sha512layout writes a layout whose image manifest is named by its
// SHA-512 digest and holds stored (the manifest itself, or a forgery).
func sha512layout(t *testing.T, forge bool, recipients ...envelope.Recipient) string {
	dir := t.TempDir()
	put := layoutWriter(t, dir)
	m := encManifest(t, put, "layer", recipients...)
	stored := m
	if forge {
		stored = encManifest(t, put, "other", recipients...) // same length, other layer
	}
	hex := fmt.Sprintf("%x", sha512.Sum512(m))
	os.MkdirAll(filepath.Join(dir, "blobs", "sha512"), 0o755)
	os.WriteFile(filepath.Join(dir, "blobs", "sha512", hex), stored, 0o644)
	writeIndexJSON(t, dir, mtManifest, m, "sha512:"+hex)
	return dir
}

// A blob named sha512:… is checked with SHA-512: a forgery is refused in
// a layout (nothing written) and an archive; the real one is rewrapped
// (and written back as sha256).
func TestSHA512Layout(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice, bob := newKey(t, st, "alice"), newKey(t, st, "bob")

	dir := sha512layout(t, true, alice)
	index0, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	blobs0, _ := filepath.Glob(filepath.Join(dir, "blobs", "*", "*"))
	_, stderr, code := runMain("rewrap", "--keystore", ks, "--add", bob.String(), "oci:"+dir+":img")
	checkError(t, stderr, code, "does not match its digest")
	blobs1, _ := filepath.Glob(filepath.Join(dir, "blobs", "*", "*"))
	if b, _ := os.ReadFile(filepath.Join(dir, "index.json")); !bytes.Equal(b, index0) || len(blobs1) != len(blobs0) {
		t.Fatal("a forged blob was rewritten")
	}
	_, stderr, code = runMain("inspect", "oci-archive:"+tarLayout(t, dir)+":img")
	checkError(t, stderr, code, "does not match its digest")

	dir = sha512layout(t, false, alice)
	if _, stderr, code := runMain("inspect", "oci-archive:"+tarLayout(t, dir)+":img"); code != 0 {
		t.Fatalf("inspect of a true sha512 manifest in an archive: %d %s", code, stderr)
	}
	out, stderr, code := runMain("rewrap", "--keystore", ks, "--add", bob.String(), "oci:"+dir+":img")
	if code != 0 || !strings.Contains(out, "rewrapped") {
		t.Fatalf("rewrap of a true sha512 manifest: %d\n%s%s", code, out, stderr)
	}
	if !strings.Contains(readManifest(t, dir), "ocikp") {
		t.Fatal("the rewrapped manifest was not written")
	}
}

func tarLayout(t *testing.T, dir string) string {
	path := filepath.Join(t.TempDir(), "img.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, _ := os.ReadFile(p)
		tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
		return nil
	})
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// A registry that answers a manifest by digest with other content, a
// schema-1 media type and the asked digest in its header (which
// go-containerregistry takes on trust for schema 1) is refused.
func TestRegistryForgedManifest(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	alice := newKey(t, &soft.Store{Dir: ks}, "alice")
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	docs := map[string][]byte{}
	put := func(b []byte) string {
		d := fmt.Sprintf("sha256:%x", sha256.Sum256(b))
		docs[d] = b
		return d
	}
	real := encManifest(t, put, "layer", alice)
	forged := encManifest(t, put, "other", alice)
	rd := put(real)
	top := indexOf(entryOf(mtManifest, real, rd, ""))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/manifests/"+rd) {
			w.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v1+prettyjws")
			w.Header().Set("Docker-Content-Digest", rd)
			w.Write(forged)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	pushManifest(t, srv.URL, rd, real)
	pushManifest(t, srv.URL, "1", top)
	_, stderr, code := runMain("inspect", "--tls-verify=false", "docker://"+strings.TrimPrefix(srv.URL, "http://")+"/app:1")
	checkError(t, stderr, code, "does not match its digest")
	if strings.Contains(stderr, "hint: check the name") {
		t.Fatalf("a forgery is not a network problem: %s", stderr)
	}
}

// --rotate-layer-keys reaches a layer under a nested index: the new blob
// and envelope are written, and every index up to the tag points at them.
func TestRotateNested(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice, bob := newKey(t, st, "alice"), newKey(t, st, "bob")
	dir, plain := encryptedLayout(t, func(opts []byte) map[string]string {
		blob, err := envelope.Seal(opts, alice, bob)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"org.opencontainers.image.enc.keys.provider.ocikp": base64.StdEncoding.EncodeToString(blob)}
	})
	var idx struct {
		Manifests []struct {
			Digest string
			Size   int
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	json.Unmarshal(b, &idx)
	m := idx.Manifests[0]
	put := layoutWriter(t, dir)
	nested := indexOf(fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, mtManifest, m.Digest, m.Size))
	top := indexOf(entryOf(mtIndex, nested, put(nested), ""))
	writeIndexJSON(t, dir, mtIndex, top, put(top))

	out, stderr, code := runMain("rewrap", "--keystore", ks, "--remove", alice.String(), "--rotate-layer-keys", "oci:"+dir+":img")
	if code != 0 {
		t.Fatalf("rotate: %d\n%s%s", code, out, stderr)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "index.json"))
	json.Unmarshal(b, &idx)
	fetch := layoutFetch(t, dir)
	var walk func(raw []byte) (string, map[string]string)
	walk = func(raw []byte) (string, map[string]string) {
		var doc struct {
			Manifests []struct{ Digest string }
			Layers    []struct {
				Digest      string
				Annotations map[string]string
			}
		}
		json.Unmarshal(raw, &doc)
		if len(doc.Layers) > 0 {
			return doc.Layers[0].Digest, doc.Layers[0].Annotations
		}
		return walk(fetch(doc.Manifests[0].Digest))
	}
	digest, ann := walk(fetch(idx.Manifests[0].Digest))
	if opens(t, []map[string]string{ann}, privateKey(t, st, "alice")) != 0 {
		t.Fatal("alice opens the rotated nested layer")
	}
	blob, _ := base64.StdEncoding.DecodeString(ann["org.opencontainers.image.enc.keys.provider.ocikp"])
	env, _ := envelope.Parse(blob)
	opts, err := env.Open(p256Identity(privateKey(t, st, "bob")))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decryptBlob(t, dir, digest, opts, ann); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("bob's view of the rotated nested layer: %v", err)
	}
}

// The text output names the nested index a manifest is reached through
// and lists what was passed over (the JSON is the golden file's).
func TestInspectTextNested(t *testing.T) {
	out, stderr, code := runMain("inspect", "oci:"+filepath.Join("testdata", "layout")+":nested")
	if code != 0 {
		t.Fatalf("inspect: %d %s", code, stderr)
	}
	for _, want := range []string{
		"  platform linux/amd64  sha256:0685eb09f8226df3a62fa3d46d415ba702cb3260b4bd786f8818be538962ff9f  via index sha256:defb5bd17691\n",
		"    layer 1  sha256:c806cd9c716c  application/vnd.oci.image.layer.v1.tar+gzip+encrypted  encrypted, classical\n",
		"  passed over sha256:ffc9a9e2551af430388d9b191f0f07684a7d4dccd5fe64e48e763ecf96efdf8b  application/vnd.oci.image.manifest.v1+json  attestation manifest\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}
}

// A layer whose descriptor gives another size than its blob's is refused
// by --rotate-layer-keys, and nothing is written.
func TestRotateWrongSize(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice, bob := newKey(t, st, "alice"), newKey(t, st, "bob")
	for _, delta := range []int{-1, 1} {
		dir, _ := encryptedLayout(t, func(opts []byte) map[string]string {
			blob, err := envelope.Seal(opts, alice, bob)
			if err != nil {
				t.Fatal(err)
			}
			return map[string]string{"org.opencontainers.image.enc.keys.provider.ocikp": base64.StdEncoding.EncodeToString(blob)}
		})
		var m map[string]any
		json.Unmarshal([]byte(readManifest(t, dir)), &m)
		l := m["layers"].([]any)[0].(map[string]any)
		l["size"] = l["size"].(float64) + float64(delta)
		raw, _ := json.Marshal(m)
		writeIndexJSON(t, dir, mtManifest, raw, layoutWriter(t, dir)(raw))
		index0, _ := os.ReadFile(filepath.Join(dir, "index.json"))
		_, stderr, code := runMain("rewrap", "--keystore", ks, "--remove", alice.String(), "--rotate-layer-keys", "oci:"+dir+":img")
		checkError(t, stderr, code, "its descriptor")
		if b, _ := os.ReadFile(filepath.Join(dir, "index.json")); !bytes.Equal(b, index0) {
			t.Fatalf("size %+d: a refused rotation was written", delta)
		}
	}
}
