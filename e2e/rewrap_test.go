package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ocikpRun runs the built ocikp with a keystore and returns its stdout,
// stderr and error.
func ocikpRun(t *testing.T, bin, keystore string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--keystore", keystore}, args...)...)
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
		dir := filepath.Join(t.TempDir(), "oci")
		out, err := sk.copy(ks, []string{"--decryption-key", "provider:ocikp"}, "docker://"+ref, "oci:"+dir+":out")
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
