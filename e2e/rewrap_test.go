package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/bcrypt"

	"github.com/ocikp/ocikp/internal/testdaemon"
)

// ocikpRun runs the built ocikp with a keystore and returns its stdout,
// stderr and error.
func ocikpRun(t *testing.T, bin, keystore string, args ...string) (string, string, error) {
	t.Helper()
	return ocikpRunEnv(t, nil, bin, keystore, args...)
}

func ocikpRunEnv(t *testing.T, env []string, bin, keystore string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--keystore", keystore}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// blobRequests returns the registry log's requests for blob content:
// uploads, and GETs of the given layer digests.
func blobRequests(log string, layers []string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		m := regexp.MustCompile(`"(GET|PUT|POST|PATCH|HEAD) (/v2/[^ ]+) HTTP`).FindStringSubmatch(line)
		if m == nil {
			continue
		}
		method, path := m[1], m[2]
		switch {
		case strings.Contains(path, "/blobs/uploads/") && !strings.Contains(path, "mount="):
			out = append(out, method+" "+path)
		case method == "GET" && strings.Contains(path, "/blobs/"):
			for _, d := range layers {
				if strings.HasSuffix(path, d) {
					out = append(out, method+" "+path)
				}
			}
		}
	}
	return out
}

// ocikp rewrap against a real registry, checked with real skopeo: add a
// recipient and remove one without moving a layer, a dry run, another
// repository by blob mount, a tag moved during the rewrap, an image that
// is not encrypted.
func TestRewrap(t *testing.T) {
	p := newProvider(t, "ocikp")
	sk := newSkopeo(t, p)
	reg, regLog := startRegistryLog(t)
	ksA, ra := p.keystore(t, "alice")
	ksB, rb := p.keystore(t, "bob")
	ksC, rc := p.keystore(t, "carol")
	const layers = 3
	plain := reg + "/app:plain"
	want := layerDigests(t, pushImage(t, plain, layers))
	out, err := sk.copy(ksA, []string{"--encryption-key", "provider:ocikp:" + ra["alice"]}, "docker://"+plain, "docker://"+reg+"/app:enc")
	if err != nil {
		t.Fatalf("encrypt: %v\n%s", err, out)
	}
	p.calls(t)
	img := "docker://" + reg + "/app:enc"
	encLayers := func(ref string) []string {
		var ds []string
		for _, l := range remoteManifest(t, ref).Layers {
			ds = append(ds, l.Digest.String())
		}
		return ds
	}
	before := encLayers(reg + "/app:enc")
	decrypts := func(ks, ref string) (string, error) {
		dir, out, err := sk.decrypt(ks, ref)
		p.calls(t)
		if err == nil {
			if got := ociLayerDigests(t, dir); !slices.Equal(got, want) {
				t.Fatalf("decrypted layers %v, want %v", got, want)
			}
		}
		return out, err
	}

	t.Run("inspect", func(t *testing.T) {
		stdout, stderr, err := ocikpRun(t, p.bin, ksA, "inspect", "--tls-verify=false", "--keys", img)
		if err != nil {
			t.Fatalf("inspect: %v\n%s", err, stderr)
		}
		for _, w := range []string{"encrypted", "provider:ocikp: ocikp-envelope-v1", "p256 tag ", "local keys: alice"} {
			if !strings.Contains(stdout, w) {
				t.Errorf("inspect output lacks %q:\n%s", w, stdout)
			}
		}
		stdout, _, err = ocikpRun(t, p.bin, ksA, "inspect", "--tls-verify=false", "--json", img)
		var reports []struct {
			Platforms []struct {
				Layers []struct {
					Encrypted bool
					Wrappings []struct {
						Scheme, Provider string
						Blobs            []struct {
							Format     string
							Recipients []struct{ Type, Kind, Tag string }
						}
					}
				}
			}
		}
		if err != nil || json.Unmarshal([]byte(stdout), &reports) != nil || len(reports) != 1 || len(reports[0].Platforms[0].Layers) != layers {
			t.Fatalf("inspect --json: %v\n%s", err, stdout)
		}
		w := reports[0].Platforms[0].Layers[0].Wrappings[0]
		if w.Provider != "ocikp" || w.Blobs[0].Format != "ocikp-envelope-v1" || len(w.Blobs[0].Recipients) != 1 || w.Blobs[0].Recipients[0].Kind != "p256" {
			t.Errorf("inspect --json layer 0: %+v", w)
		}
	})

	t.Run("dry run writes nothing", func(t *testing.T) {
		d0 := remoteManifestDigest(t, reg+"/app:enc")
		stdout, stderr, err := ocikpRun(t, p.bin, ksA, "rewrap", "--tls-verify=false", "--dry-run", "--add", rb["bob"], img)
		if err != nil || !strings.Contains(stdout, "planned") || !strings.Contains(stderr, "1 -> 2 recipients") {
			t.Fatalf("dry run: %v\n%s%s", err, stdout, stderr)
		}
		if d := remoteManifestDigest(t, reg+"/app:enc"); d != d0 {
			t.Fatalf("the dry run moved the tag: %s -> %s", d0, d)
		}
	})

	t.Run("add bob: layers stay, bob decrypts", func(t *testing.T) {
		mark := len(regLog.String())
		stdout, stderr, err := ocikpRun(t, p.bin, ksA, "rewrap", "--tls-verify=false", "--add", rb["bob"], img)
		if err != nil || !strings.Contains(stdout, "rewrapped") {
			t.Fatalf("rewrap --add: %v\n%s%s", err, stdout, stderr)
		}
		if got := encLayers(reg + "/app:enc"); !slices.Equal(got, before) {
			t.Fatalf("layer digests changed: %v -> %v", before, got)
		}
		if reqs := blobRequests(regLog.String()[mark:], before); len(reqs) != 0 {
			t.Fatalf("the rewrap moved layer content: %v", reqs)
		}
		if out, err := decrypts(ksB, reg+"/app:enc"); err != nil {
			t.Fatalf("bob cannot decrypt after --add: %v\n%s", err, out)
		}
		if out, err := decrypts(ksA, reg+"/app:enc"); err != nil {
			t.Fatalf("alice cannot decrypt after --add: %v\n%s", err, out)
		}
		// Again: nothing to do.
		stdout, _, err = ocikpRun(t, p.bin, ksA, "rewrap", "--tls-verify=false", "--add", rb["bob"], img)
		if err != nil || !strings.Contains(stdout, "up to date") {
			t.Fatalf("second rewrap --add: %v\n%s", err, stdout)
		}
	})

	t.Run("another repository by blob mount", func(t *testing.T) {
		mark := len(regLog.String())
		stdout, stderr, err := ocikpRun(t, p.bin, ksB, "rewrap", "--tls-verify=false", "--add", rc["carol"], "--to", "docker://"+reg+"/other:c", img)
		if err != nil {
			t.Fatalf("rewrap --to: %v\n%s%s", err, stdout, stderr)
		}
		if reqs := blobRequests(regLog.String()[mark:], before); len(reqs) != 0 {
			t.Fatalf("the rewrap to another repository moved layer content: %v", reqs)
		}
		mounts := regexp.MustCompile(`"POST /v2/other/blobs/uploads/\?[^"]*mount=[^"]*" 201`).FindAllString(regLog.String()[mark:], -1)
		if len(mounts) != layers+1 {
			t.Errorf("want %d blob mounts (config and layers), the registry saw %d", layers+1, len(mounts))
		}
		if out, err := decrypts(ksC, reg+"/other:c"); err != nil {
			t.Fatalf("carol cannot decrypt the copy: %v\n%s", err, out)
		}
		if _, err := decrypts(ksC, reg+"/app:enc"); err == nil {
			t.Fatal("carol decrypts the source, which --to must leave alone")
		}
	})

	t.Run("remove alice: alice gets the wrong-key error", func(t *testing.T) {
		stdout, stderr, err := ocikpRun(t, p.bin, ksB, "rewrap", "--tls-verify=false", "--remove", ra["alice"], img)
		if err != nil {
			t.Fatalf("rewrap --remove: %v\n%s%s", err, stdout, stderr)
		}
		out, err := decrypts(ksA, reg+"/app:enc")
		if err == nil || !strings.Contains(out, "ocikp: error: no key can decrypt this layer") {
			t.Fatalf("alice after --remove: %v\n%s", err, out)
		}
		if out, err := decrypts(ksB, reg+"/app:enc"); err != nil {
			t.Fatalf("bob after --remove alice: %v\n%s", err, out)
		}
	})

	t.Run("a layer no local key opens", func(t *testing.T) {
		_, stderr, err := ocikpRun(t, p.bin, ksA, "rewrap", "--tls-verify=false", "--add", rc["carol"], img)
		if err == nil || !strings.Contains(stderr, "ocikp: error: "+img+": layer 0 (sha256:") ||
			!strings.Contains(stderr, "no key can decrypt this layer") {
			t.Fatalf("rewrap with alice's keystore after her removal: %v\n%s", err, stderr)
		}
	})

	t.Run("not encrypted", func(t *testing.T) {
		_, stderr, err := ocikpRun(t, p.bin, ksA, "rewrap", "--tls-verify=false", "--add", rb["bob"], "docker://"+plain)
		if err == nil || !strings.Contains(stderr, "no layer of the image is encrypted") || !strings.Contains(stderr, "ocikp: hint:") {
			t.Fatalf("rewrap of a plain image: %v\n%s", err, stderr)
		}
	})

	t.Run("every tag of a repository", func(t *testing.T) {
		for _, tag := range []string{"a", "b", "c"} {
			out, err := sk.copy(ksA, []string{"--encryption-key", "provider:ocikp:" + ra["alice"]}, "docker://"+plain, "docker://"+reg+"/many:"+tag)
			if err != nil {
				t.Fatalf("encrypt: %v\n%s", err, out)
			}
		}
		p.calls(t)
		pushImage(t, reg+"/many:plain", 1)
		stdout, stderr, err := ocikpRun(t, p.bin, ksA, "rewrap", "--tls-verify=false", "--all-tags", "--jobs", "2", "--add", rb["bob"], "docker://"+reg+"/many")
		if err != nil || strings.Count(stdout, " rewrapped ") != 3 || strings.Count(stdout, " skipped ") != 1 || !strings.Contains(stderr, "[4/4] ") {
			t.Fatalf("rewrap --all-tags: %v\n%s%s", err, stdout, stderr)
		}
		stdout, _, err = ocikpRun(t, p.bin, ksA, "rewrap", "--tls-verify=false", "--all-tags", "--add", rb["bob"], "docker://"+reg+"/many")
		if err != nil || strings.Count(stdout, " up to date ") != 3 {
			t.Fatalf("rewrap --all-tags again: %v\n%s", err, stdout)
		}
		t.Logf("summary:\n%s", stdout)
		for _, tag := range []string{"a", "b", "c"} {
			if out, err := decrypts(ksB, reg+"/many:"+tag); err != nil {
				t.Fatalf("bob cannot decrypt many:%s: %v\n%s", tag, err, out)
			}
		}
	})

	t.Run("a tag moved during the rewrap is not overwritten", func(t *testing.T) {
		out, err := sk.copy(ksA, []string{"--encryption-key", "provider:ocikp:" + rb["bob"]}, "docker://"+plain, "docker://"+reg+"/app:moving")
		if err != nil {
			t.Fatalf("encrypt: %v\n%s", err, out)
		}
		p.calls(t)
		// A proxy that, once the rewrap has read the tag, moves it to
		// another image behind the rewrap's back.
		target, _ := url.Parse("http://" + reg)
		proxy := httputil.NewSingleHostReverseProxy(target)
		var once sync.Once
		moved := ""
		proxy.ModifyResponse = func(r *http.Response) error {
			if r.Request.Method == "GET" && strings.HasSuffix(r.Request.URL.Path, "/manifests/moving") {
				once.Do(func() {
					pushImage(t, reg+"/app:moving", 1)
					moved = remoteManifestDigest(t, reg+"/app:moving")
				})
			}
			return nil
		}
		srv := httptest.NewServer(proxy)
		defer srv.Close()
		via := strings.TrimPrefix(srv.URL, "http://")
		_, stderr, err := ocikpRun(t, p.bin, ksB, "rewrap", "--tls-verify=false", "--add", rc["carol"], "docker://"+via+"/app:moving")
		if err == nil || !strings.Contains(stderr, "the tag moved while it was being rewritten") {
			t.Fatalf("rewrap with the tag moved under it: %v\n%s", err, stderr)
		}
		if d := remoteManifestDigest(t, reg+"/app:moving"); d != moved {
			t.Fatalf("the tag points at %s, not at the image that moved it there (%s)", d, moved)
		}
	})
}

func remoteManifestDigest(t *testing.T, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(r)
	if err != nil {
		t.Fatal(err)
	}
	return d.Digest.String()
}

// pushIndex pushes a two-platform OCI index of n-layer images and returns
// its platforms.
func pushIndex(t *testing.T, ref string, n int) []string {
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	platforms := []string{"linux/amd64", "linux/arm64"}
	for _, p := range platforms {
		os, arch, _ := strings.Cut(p, "/")
		img := randomImage(t, os, arch, n, 2048)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: os, Architecture: arch}}})
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	return platforms
}

// A multi-platform index, and JWE keys beside ocikp's: rewrap rewrites
// every platform's manifest and the index, keeps the JWE annotations byte
// for byte, and the JWE key still decrypts.
func TestRewrapIndexAndJWE(t *testing.T) {
	p := newProvider(t, "ocikp")
	sk := newSkopeo(t, p)
	reg := startRegistry(t)
	ksA, ra := p.keystore(t, "alice")
	ksB, rb := p.keystore(t, "bob")
	priv, pub := jweKeyPair(t)
	platforms := pushIndex(t, reg+"/multi:plain", 2)
	out, err := sk.copy(ksA, []string{"--all", "--encryption-key", "provider:ocikp:" + ra["alice"], "--encryption-key", "jwe:" + pub},
		"docker://"+reg+"/multi:plain", "docker://"+reg+"/multi:enc")
	if err != nil {
		t.Fatalf("encrypt the index: %v\n%s", err, out)
	}
	p.calls(t)
	jweOf := func() map[string]string {
		r, _ := name.ParseReference(reg+"/multi:enc", name.Insecure)
		idx, err := remote.Index(r)
		if err != nil {
			t.Fatal(err)
		}
		im, _ := idx.IndexManifest()
		got := map[string]string{}
		for _, d := range im.Manifests {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			m, _ := img.Manifest()
			for i, l := range m.Layers {
				got[fmt.Sprintf("%s/%d", d.Platform, i)] = l.Annotations["org.opencontainers.image.enc.keys.jwe"] + " " + l.Digest.String()
			}
		}
		return got
	}
	before := jweOf()
	if len(before) != 2*len(platforms) {
		t.Fatalf("encrypted index has %d layers: %v", len(before), before)
	}
	stdout, stderr, err := ocikpRun(t, p.bin, ksA, "rewrap", "--tls-verify=false", "--add", rb["bob"], "docker://"+reg+"/multi:enc")
	if err != nil {
		t.Fatalf("rewrap the index: %v\n%s%s", err, stdout, stderr)
	}
	if strings.Count(stderr, "1 -> 2 recipients") != 2*len(platforms) {
		t.Errorf("rewrap did not plan every layer of every platform:\n%s", stderr)
	}
	if after := jweOf(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("JWE annotations or layer digests changed:\n%v\n%v", before, after)
	}
	for _, plat := range platforms {
		for _, c := range []struct{ ks, key string }{{ksB, "provider:ocikp"}, {t.TempDir(), priv}} {
			dir := filepath.Join(t.TempDir(), "oci")
			args := []string{"--override-os", strings.Split(plat, "/")[0], "--override-arch", strings.Split(plat, "/")[1], "--decryption-key", c.key}
			out, err := sk.copy(c.ks, args, "docker://"+reg+"/multi:enc", "oci:"+dir+":out")
			if err != nil {
				t.Fatalf("%s: decrypt with %s after the rewrap: %v\n%s", plat, c.key, err, out)
			}
		}
	}
	p.calls(t)
}

// A registry that starts failing in the middle of a rewrap (every manifest
// write after the first answers 500, retries included) leaves the tag on
// the image it was: valid, and still decrypting for its recipients.
func TestRewrapRegistryFailsMidway(t *testing.T) {
	p := newProvider(t, "ocikp")
	sk := newSkopeo(t, p)
	reg := startRegistry(t)
	ksA, ra := p.keystore(t, "alice")
	_, rb := p.keystore(t, "bob")
	pushIndex(t, reg+"/flaky:plain", 1)
	out, err := sk.copy(ksA, []string{"--all", "--encryption-key", "provider:ocikp:" + ra["alice"]}, "docker://"+reg+"/flaky:plain", "docker://"+reg+"/flaky:enc")
	if err != nil {
		t.Fatalf("encrypt: %v\n%s", err, out)
	}
	p.calls(t)
	before := remoteManifestDigest(t, reg+"/flaky:enc")
	target, _ := url.Parse("http://" + reg)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	puts, refused := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PUT" && strings.Contains(r.URL.Path, "/manifests/") {
			mu.Lock()
			puts++
			n := puts
			if n > 1 {
				refused++
			}
			mu.Unlock()
			if n > 1 {
				http.Error(w, "registry trouble", http.StatusInternalServerError)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	via := strings.TrimPrefix(srv.URL, "http://")
	_, stderr, err := ocikpRun(t, p.bin, ksA, "rewrap", "--tls-verify=false", "--add", rb["bob"], "docker://"+via+"/flaky:enc")
	if err == nil || !strings.HasPrefix(stderr, "ocikp: error: docker://"+via+"/flaky:enc: writing the new manifests: platform ") || !strings.Contains(stderr, "500") {
		t.Fatalf("rewrap through a failing registry: %v\n%s", err, stderr)
	}
	t.Logf("%d manifest writes refused (retries included); ocikp said:\n%s", refused, stderr)
	if d := remoteManifestDigest(t, reg+"/flaky:enc"); d != before {
		t.Fatalf("the tag moved to %s after a failed rewrap", d)
	}
	if _, out, err := sk.decrypt(ksA, reg+"/flaky:enc"); err != nil {
		t.Fatalf("the image behind the tag no longer decrypts for alice: %v\n%s", err, out)
	}
}

// --rotate-layer-keys: new layer keys and blobs; the removed recipient's
// key no longer opens anything, not even with the old layer keys it may
// have kept; the remaining recipient decrypts.
func TestRewrapRotate(t *testing.T) {
	p := newProvider(t, "ocikp")
	sk := newSkopeo(t, p)
	reg := startRegistry(t)
	ksA, ra := p.keystore(t, "alice")
	ksB, rb := p.keystore(t, "bob")
	const layers = 2
	plain := reg + "/rot:plain"
	pushImage(t, plain, layers)
	out, err := sk.copy(ksA, []string{"--encryption-key", "provider:ocikp:" + ra["alice"], "--encryption-key", "provider:ocikp:" + rb["bob"]}, "docker://"+plain, "docker://"+reg+"/rot:enc")
	if err != nil {
		t.Fatalf("encrypt: %v\n%s", err, out)
	}
	p.calls(t)
	old := remoteManifest(t, reg+"/rot:enc")
	stdout, stderr, err := ocikpRun(t, p.bin, ksB, "rewrap", "--tls-verify=false", "--remove", ra["alice"], "--rotate-layer-keys", "docker://"+reg+"/rot:enc")
	if err != nil || !strings.Contains(stderr, "new layer key and blob") {
		t.Fatalf("rewrap --rotate-layer-keys: %v\n%s%s", err, stdout, stderr)
	}
	rotated := remoteManifest(t, reg+"/rot:enc")
	for i := range rotated.Layers {
		if rotated.Layers[i].Digest == old.Layers[i].Digest {
			t.Fatalf("layer %d kept its blob", i)
		}
	}
	decrypt := func(ks, ref string) (string, error) {
		_, out, err := sk.decrypt(ks, ref)
		p.calls(t)
		return out, err
	}
	if out, err := decrypt(ksB, reg+"/rot:enc"); err != nil {
		t.Fatalf("bob after the rotation: %v\n%s", err, out)
	}
	if out, err := decrypt(ksA, reg+"/rot:enc"); err == nil || !strings.Contains(out, "no key can decrypt this layer") {
		t.Fatalf("alice after the rotation: %v\n%s", err, out)
	}
	// Alice kept the old layer keys: the old annotations, on the new
	// blobs. They must not open them.
	rewriteLayerAnnotations(t, reg+"/rot:enc", reg+"/rot:oldkeys", func(a map[string]string) {
		for i, l := range rotated.Layers {
			if a["org.opencontainers.image.enc.pubopts"] == l.Annotations["org.opencontainers.image.enc.pubopts"] {
				a["org.opencontainers.image.enc.keys.provider.ocikp"] = old.Layers[i].Annotations["org.opencontainers.image.enc.keys.provider.ocikp"]
				a["org.opencontainers.image.enc.pubopts"] = old.Layers[i].Annotations["org.opencontainers.image.enc.pubopts"]
			}
		}
	})
	if out, err := decrypt(ksA, reg+"/rot:oldkeys"); err == nil {
		t.Fatalf("alice's old layer keys opened the rotated blobs:\n%s", out)
	} else {
		t.Logf("the old layer keys on the new blobs: %s", tail(out, 2))
	}
}

// A registry that wants credentials: refused without them (one error line,
// the hint), served with --creds and with a containers auth.json.
func TestImageCommandsAuth(t *testing.T) {
	bin := need(t, "docker-registry")
	p := newProvider(t, "ocikp")
	ks, _ := p.keystore(t, "alice")
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("ci:"+string(hash)+"\n"), 0o600)
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %s\nauth:\n  htpasswd:\n    realm: ocikp-test\n    path: %s\nhttp:\n  addr: 127.0.0.1:0\n",
		filepath.Join(dir, "data"), filepath.Join(dir, "htpasswd"))
	os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o644)
	logs := daemon(t, bin, "serve", filepath.Join(dir, "config.yml"))
	reg := logs.Wait(t, testdaemon.RegistryListening)
	r, _ := name.ParseReference(reg+"/app:1", name.Insecure)
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"})); err != nil {
		t.Fatal(err)
	}
	ref := "docker://" + reg + "/app:1"
	_, stderr, err := ocikpRun(t, p.bin, ks, "inspect", "--tls-verify=false", ref)
	if err == nil || !strings.HasPrefix(stderr, "ocikp: error: "+ref+": ") || !strings.Contains(stderr, "ocikp: hint: give credentials") || strings.Count(stderr, "\n") > 3 {
		t.Fatalf("inspect without credentials: %v\n%s", err, stderr)
	}
	if strings.Contains(stderr, "s3cret") {
		t.Fatal("the password reached stderr")
	}
	if out, stderr, err := ocikpRun(t, p.bin, ks, "inspect", "--tls-verify=false", "--creds", "ci:s3cret", ref); err != nil || !strings.Contains(out, "not encrypted") {
		t.Fatalf("inspect --creds: %v\n%s%s", err, out, stderr)
	}
	auth := filepath.Join(dir, "auth.json")
	os.WriteFile(auth, fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, reg, base64.StdEncoding.EncodeToString([]byte("ci:s3cret"))), 0o600)
	if out, stderr, err := ocikpRunEnv(t, []string{"REGISTRY_AUTH_FILE=" + auth}, p.bin, ks, "inspect", "--tls-verify=false", ref); err != nil || !strings.Contains(out, "not encrypted") {
		t.Fatalf("inspect with REGISTRY_AUTH_FILE: %v\n%s%s", err, out, stderr)
	}
}

// jweKeyPair makes an RSA key pair with openssl for ocicrypt's JWE scheme
// and returns the private and public PEM files.
func jweKeyPair(t *testing.T) (string, string) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "jwe.pem"), filepath.Join(dir, "jwe.pub.pem")
	if out, err := exec.Command("openssl", "genrsa", "-out", priv, "2048").CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	if out, err := exec.Command("openssl", "rsa", "-in", priv, "-pubout", "-out", pub).CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	return priv, pub
}
