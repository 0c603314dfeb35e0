package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ocikp/ocikp/internal/legacytest"
	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/soft"
)

// rewriteLayerAnnotations applies f to each layer's annotations of the
// manifest at from and pushes the result to to.
func rewriteLayerAnnotations(t *testing.T, from, to string, f func(a map[string]string)) {
	t.Helper()
	r, _ := name.ParseReference(from, name.Insecure)
	d, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(d.Manifest, &m)
	for _, l := range m["layers"].([]any) {
		ann := map[string]string{}
		lm := l.(map[string]any)
		for k, v := range lm["annotations"].(map[string]any) {
			ann[k] = v.(string)
		}
		f(ann)
		lm["annotations"] = ann
	}
	raw, _ := json.Marshal(m)
	dst, _ := name.ParseReference(to, name.Insecure)
	if err := remote.Put(dst, rawManifest{raw, d.MediaType}); err != nil {
		t.Fatal(err)
	}
}

func annotationsOf(t *testing.T, ref string) []map[string]string {
	var out []map[string]string
	for _, l := range remoteManifest(t, ref).Layers {
		out = append(out, l.Annotations)
	}
	return out
}

// ocikp migrate: layers wrapped by the Apple Keychain seed provider and by
// ocicrypt's JWE (made by real skopeo) get ocikp envelopes for a new
// recipient and then decrypt with ocikp alone; --keep-old leaves the JWE
// key working too.
func TestMigrate(t *testing.T) {
	p := newProvider(t, "ocikp")
	sk := newSkopeo(t, p)
	reg := startRegistry(t)
	ksA, ra := p.keystore(t, "alice")
	ksB, rb := p.keystore(t, "bob")
	const layers = 2
	plain := reg + "/m:plain"
	want := layerDigests(t, pushImage(t, plain, layers))
	decrypts := func(ks, ref string) (string, error) {
		dir, out, err := sk.decrypt(ks, ref)
		p.calls(t)
		if err == nil && strings.Join(ociLayerDigests(t, dir), " ") != strings.Join(want, " ") {
			t.Fatalf("decrypted layers differ from the plain image")
		}
		return out, err
	}

	t.Run("the Apple Keychain provider's blobs", func(t *testing.T) {
		out, err := sk.copy(ksA, []string{"--encryption-key", "provider:ocikp:" + ra["alice"]}, "docker://"+plain, "docker://"+reg+"/m:ocikp")
		if err != nil {
			t.Fatalf("encrypt: %v\n%s", err, out)
		}
		p.calls(t)
		// The seed's format, sealed to alice's key, in place of ocikp's.
		st := &soft.Store{Dir: ksA}
		k, err := st.Get("alice")
		if err != nil {
			t.Fatal(err)
		}
		priv, err := k.PrivateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		kp := &keyprovider.Provider{Store: st}
		rewriteLayerAnnotations(t, reg+"/m:ocikp", reg+"/m:seed", func(a map[string]string) {
			blob, _ := base64.StdEncoding.DecodeString(a["org.opencontainers.image.enc.keys.provider.ocikp"])
			opts, err := kp.OpenBlob(context.Background(), blob)
			if err != nil {
				t.Fatal(err)
			}
			seed, _ := legacytest.AppleBlob(t, priv.PublicKey(), opts, false)
			delete(a, "org.opencontainers.image.enc.keys.provider.ocikp")
			a["org.opencontainers.image.enc.keys.provider.apple-keychain"] = base64.StdEncoding.EncodeToString(seed)
		})
		if _, err := decrypts(ksB, reg+"/m:seed"); err == nil {
			t.Fatal("bob decrypts the seed image before the migration")
		}
		stdout, stderr, err := ocikpRun(t, p.bin, ksA, "migrate", "--tls-verify=false", "--recipient", rb["bob"], "--recipient", ra["alice"], "docker://"+reg+"/m:seed")
		if err != nil || !strings.Contains(stdout, "migrated") || !strings.Contains(stderr, "apple-keychain-provider (seed format)") {
			t.Fatalf("migrate: %v\n%s%s", err, stdout, stderr)
		}
		for _, a := range annotationsOf(t, reg+"/m:seed") {
			if _, ok := a["org.opencontainers.image.enc.keys.provider.apple-keychain"]; ok {
				t.Fatal("the seed annotation is still there without --keep-old")
			}
		}
		if out, err := decrypts(ksB, reg+"/m:seed"); err != nil {
			t.Fatalf("bob after the migration: %v\n%s", err, out)
		}
		stdout, _, err = ocikpRun(t, p.bin, ksA, "migrate", "--tls-verify=false", "--recipient", rb["bob"], "docker://"+reg+"/m:seed")
		if err != nil || !strings.Contains(stdout, "up to date") {
			t.Fatalf("second migrate: %v\n%s", err, stdout)
		}
	})

	t.Run("JWE made by skopeo", func(t *testing.T) {
		priv, pub := jweKeyPair(t)
		for _, tag := range []string{"jwe", "jwe-keep"} {
			out, err := sk.copy(ksA, []string{"--encryption-key", "jwe:" + pub}, "docker://"+plain, "docker://"+reg+"/m:"+tag)
			if err != nil {
				t.Fatalf("encrypt with JWE: %v\n%s", err, out)
			}
		}
		// Without the JWE key, migrate says what it needs.
		_, stderr, err := ocikpRun(t, p.bin, ksB, "migrate", "--tls-verify=false", "--recipient", rb["bob"], "docker://"+reg+"/m:jwe")
		if err == nil || !strings.Contains(stderr, "no given key opens any of the layer's wrapped keys (jwe)") || !strings.Contains(stderr, "--key FILE") {
			t.Fatalf("migrate without --key: %v\n%s", err, stderr)
		}
		stdout, stderr, err := ocikpRun(t, p.bin, ksB, "migrate", "--tls-verify=false", "--recipient", rb["bob"], "--key", priv, "docker://"+reg+"/m:jwe")
		if err != nil || !strings.Contains(stdout, "migrated") {
			t.Fatalf("migrate --key: %v\n%s%s", err, stdout, stderr)
		}
		for _, a := range annotationsOf(t, reg+"/m:jwe") {
			if _, ok := a["org.opencontainers.image.enc.keys.jwe"]; ok {
				t.Fatal("the JWE annotation is still there without --keep-old")
			}
		}
		if out, err := decrypts(ksB, reg+"/m:jwe"); err != nil {
			t.Fatalf("bob with ocikp only after the migration: %v\n%s", err, out)
		}
		// --keep-old: the JWE key keeps working beside ocikp.
		if _, stderr, err := ocikpRun(t, p.bin, ksB, "migrate", "--tls-verify=false", "--keep-old", "--recipient", rb["bob"], "--key", priv, "docker://"+reg+"/m:jwe-keep"); err != nil {
			t.Fatalf("migrate --keep-old: %v\n%s", err, stderr)
		}
		if out, err := decrypts(ksB, reg+"/m:jwe-keep"); err != nil {
			t.Fatalf("bob after --keep-old: %v\n%s", err, out)
		}
		dir2 := filepath.Join(t.TempDir(), "oci")
		if out, err := sk.copy(t.TempDir(), []string{"--decryption-key", priv}, "docker://"+reg+"/m:jwe-keep", "oci:"+dir2+":out"); err != nil {
			t.Fatalf("the JWE key after --keep-old: %v\n%s", err, out)
		}
	})
}
