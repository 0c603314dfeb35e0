package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

const annotationPrefix = "org.opencontainers.image.enc.keys.provider."

type skopeo struct {
	t      *testing.T
	bin    string
	policy string
	p      *provider
	env    []string // more environment for skopeo and so for ocikp
}

func newSkopeo(t *testing.T, p *provider) *skopeo {
	bin := need(t, "skopeo")
	policy := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644)
	return &skopeo{t: t, bin: bin, policy: policy, p: p}
}

// copy runs skopeo copy with the provider config and keystore.
func (s *skopeo) copy(keystore string, flags []string, src, dst string) (string, error) {
	args := append([]string{"--policy", s.policy, "copy", "--src-tls-verify=false", "--dest-tls-verify=false"}, flags...)
	args = append(args, src, dst)
	env := append([]string{"OCICRYPT_KEYPROVIDER_CONFIG=" + s.p.config, "OCIKP_KEYSTORE=" + keystore}, s.env...)
	return run(s.t, env, 3*time.Minute, s.bin, args...)
}

// decrypt copies docker://ref, decrypted with --decryption-key
// provider:ocikp (after flags), into a fresh OCI layout and returns its
// directory and skopeo's output.
func (s *skopeo) decrypt(keystore, ref string, flags ...string) (string, string, error) {
	dir := filepath.Join(s.t.TempDir(), "oci")
	out, err := s.copy(keystore, append(flags, "--decryption-key", "provider:ocikp"), "docker://"+ref, "oci:"+dir+":out")
	return dir, out, err
}

// ociLayerDigests returns the layer digests of the one image in an OCI layout.
func ociLayerDigests(t *testing.T, dir string) []string {
	t.Helper()
	return layerDigests(t, ociImage(t, dir))
}

// ociImage returns the one image of an OCI layout.
func ociImage(t *testing.T, dir string) v1.Image {
	t.Helper()
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := lp.ImageIndex()
	im, _ := idx.IndexManifest()
	img, err := lp.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestSkopeo runs skopeo with each binary a config can run.
func TestSkopeo(t *testing.T) {
	for _, exe := range execs {
		t.Run(exe, func(t *testing.T) { testSkopeo(t, exe) })
	}
}

func testSkopeo(t *testing.T, exe string) {
	const name = "ocikp"
	p := newProviderExec(t, name, exe)
	sk := newSkopeo(t, p)
	reg := startRegistry(t)
	ksA, ra := p.keystore(t, "alice")
	ksB, rb := p.keystore(t, "bob")
	ksC, _ := p.keystore(t, "carol")
	const layers = 3
	orig := pushImage(t, reg+"/app:1", layers)
	want := layerDigests(t, orig)

	// Encrypt to A.
	out, err := sk.copy(ksA, []string{"--encryption-key", "provider:" + name + ":" + ra["alice"]},
		"docker://"+reg+"/app:1", "docker://"+reg+"/app:enc-a")
	if err != nil {
		t.Fatalf("encrypt: %v\n%s", err, out)
	}
	if n := p.calls(t); n != layers {
		t.Errorf("encrypt called the provider %d times for %d layers", n, layers)
	}
	m := remoteManifest(t, reg+"/app:enc-a")
	for i, l := range m.Layers {
		if !strings.HasSuffix(string(l.MediaType), "+encrypted") {
			t.Errorf("layer %d media type %s", i, l.MediaType)
		}
		if l.Annotations[annotationPrefix+name] == "" {
			t.Errorf("layer %d has no %s%s annotation: %v", i, annotationPrefix, name, l.Annotations)
		}
		if slices.Contains(want, l.Digest.String()) {
			t.Errorf("layer %d is stored unencrypted", i)
		}
	}

	decrypt := func(ks, key, tag string) (string, []string, error) {
		dir := filepath.Join(t.TempDir(), "oci")
		out, err := sk.copy(ks, []string{"--decryption-key", key}, "docker://"+reg+"/app:"+tag, "oci:"+dir+":out")
		if err != nil {
			return out, nil, err
		}
		return out, ociLayerDigests(t, dir), nil
	}

	t.Run("decrypt with A", func(t *testing.T) {
		out, got, err := decrypt(ksA, "provider:"+name+":alice", "enc-a")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !slices.Equal(got, want) {
			t.Errorf("decrypted layers %v, want %v", got, want)
		}
		if n := p.calls(t); n != layers {
			t.Errorf("decrypt called the provider %d times for %d layers", n, layers)
		}
	})

	t.Run("bare provider:NAME", func(t *testing.T) {
		out, got, err := decrypt(ksA, "provider:"+name, "enc-a")
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("%v\n%s", err, out)
		}
		p.calls(t)
	})

	t.Run("decrypt with C fails", func(t *testing.T) {
		out, _, err := decrypt(ksC, "provider:"+name, "enc-a")
		if err == nil {
			t.Fatal("decrypted with the wrong key")
		}
		for _, want := range []string{
			"missing private key needed for decryption",
			"ocikp: error: no key can decrypt this layer; it was encrypted for 1 recipient: p256 tag ",
			"ocikp: hint: tried 1 key(s) in keystore " + ksC + ": carol",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("skopeo output lacks %q:\n%s", want, out)
			}
		}
		t.Logf("wrong-key output through skopeo:\n%s", out)
		p.calls(t)
	})

	t.Run("A and B, decrypt with B only", func(t *testing.T) {
		out, err := sk.copy(ksA, []string{
			"--encryption-key", "provider:" + name + ":" + ra["alice"],
			"--encryption-key", "provider:" + name + ":" + rb["bob"],
		}, "docker://"+reg+"/app:1", "docker://"+reg+"/app:enc-ab")
		if err != nil {
			t.Fatalf("encrypt: %v\n%s", err, out)
		}
		if n := p.calls(t); n != layers {
			t.Errorf("two recipients: %d provider calls for %d layers (want one call per layer)", n, layers)
		}
		out, got, err := decrypt(ksB, "provider:"+name+":bob", "enc-ab")
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("decrypt with B: %v\n%s", err, out)
		}
		if n := p.calls(t); n != layers {
			t.Errorf("decrypt: %d provider calls", n)
		}
		out, got, err = decrypt(ksA, "provider:"+name, "enc-ab")
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("decrypt with A: %v\n%s", err, out)
		}
	})
}
