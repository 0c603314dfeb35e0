package e2e

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/internal/testkms"
)

// Post-quantum recipients through real skopeo and a real registry: one
// layer for an X-Wing key, an ML-KEM-768+P-256 key (passphrase-protected)
// and a GCP KMS key (fake, on loopback); each key opens it alone, through
// skopeo and as containerd's decoder asks (no decryption parameters).
// Mixing with a classical key is refused unless the provider's config
// says --allow-classical.
//
// It runs with each binary a config can run: through ocikp-unwrap, the
// X-Wing layer is its own answer; the sealed key and the KMS key are
// ocikp's, handed over.
func TestSkopeoPostQuantum(t *testing.T) {
	for _, exe := range execs {
		t.Run(exe, func(t *testing.T) { testSkopeoPostQuantum(t, exe) })
	}
}

func testSkopeoPostQuantum(t *testing.T, exe string) {
	p := newProviderExec(t, "ocikp", exe)
	sk := newSkopeo(t, p)
	reg := startRegistry(t)
	fake := testkms.StartGCP(t, gcpKeyName)
	ksX, rx := p.keystoreOf(t, "mlkem768x25519", "xw")
	pass := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(pass, []byte("correct horse\n"), 0o600)
	ksM := filepath.Join(t.TempDir(), "keys")
	out, err := exec.Command(p.bin, "--keystore", ksM, "keygen", "--type", "mlkem768p256", "--passphrase-file", pass, "mp").Output()
	if err != nil {
		t.Fatal(err)
	}
	rm := strings.TrimSpace(string(out))
	ksA, ra := p.keystore(t, "alice") // P-256
	ksEmpty := t.TempDir()
	const layers = 2
	orig := pushImage(t, reg+"/pq:1", layers)
	want := layerDigests(t, orig)
	kmsOnly := kmsEnv(fake)
	noKMS := []string{"OCIKP_GCPKMS_ENDPOINT=127.0.0.1:1", "OCIKP_GCPKMS_INSECURE=1", "OCIKP_PASSPHRASE_FILE=" + pass}
	sk.env = kmsOnly

	out2, err := sk.copy(ksEmpty, []string{
		"--encryption-key", "provider:ocikp:" + rx["xw"],
		"--encryption-key", "provider:ocikp:" + rm,
		"--encryption-key", "provider:ocikp:" + gcpKeyURL,
	}, "docker://"+reg+"/pq:1", "docker://"+reg+"/pq:enc")
	if err != nil {
		t.Fatalf("encrypt: %v\n%s", err, out2)
	}
	p.calls(t)
	var anns [][]byte
	for _, l := range remoteManifest(t, reg+"/pq:enc").Layers {
		ann, _ := base64.StdEncoding.DecodeString(l.Annotations[annotationPrefix+"ocikp"])
		var env struct{ Recipients []struct{ Type string } }
		if err := json.Unmarshal(ann, &env); err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, r := range env.Recipients {
			types = append(types, r.Type)
		}
		if strings.Join(types, ",") != "mlkem768x25519,mlkem768p256,gcpkms" {
			t.Fatalf("stanzas %v", types)
		}
		anns = append(anns, ann)
	}

	for _, c := range []struct {
		name, ks string
		env      []string
	}{
		{"X-Wing key alone", ksX, noKMS},
		{"ML-KEM-768+P-256 key alone (passphrase from the environment)", ksM, noKMS},
		{"KMS key alone", ksEmpty, kmsOnly},
	} {
		t.Run(c.name, func(t *testing.T) {
			sk.env = c.env
			defer func() { sk.env = kmsOnly }()
			dir, out, err := sk.decrypt(c.ks, reg+"/pq:enc")
			if err != nil {
				t.Fatalf("decrypt: %v\n%s", err, out)
			}
			if got := ociLayerDigests(t, dir); !slices.Equal(got, want) {
				t.Fatalf("layers %v, want %v", got, want)
			}
		})
	}

	// containerd's ctd-decoder sends no decryption parameters at all.
	t.Run("no decryption parameters (containerd's decoder)", func(t *testing.T) {
		t.Setenv("OCIKP_PASSPHRASE_FILE", pass)
		for _, ks := range []string{ksX, ksM} {
			for i, ann := range anns {
				if got := unwrapWithOcikp(t, p.bin, ks, ann); !strings.Contains(string(got), "symkey") {
					t.Fatalf("layer %d with %s: optsdata %q", i, filepath.Base(filepath.Dir(ks)), got)
				}
			}
		}
	})

	t.Run("a key for neither: the wrong-key error", func(t *testing.T) {
		sk.env = noKMS
		defer func() { sk.env = kmsOnly }()
		_, out, err := sk.decrypt(ksA, reg+"/pq:enc")
		if err == nil || !strings.Contains(out, "ocikp: error: no key can decrypt this layer") ||
			!strings.Contains(out, "mlkem768x25519 tag ") || !strings.Contains(out, "mlkem768p256 tag ") {
			t.Fatalf("decrypt with alice's P-256 key: %v\n%s", err, out)
		}
	})

	t.Run("mixing with a classical key is refused", func(t *testing.T) {
		out, err := sk.copy(ksEmpty, []string{
			"--encryption-key", "provider:ocikp:" + rx["xw"],
			"--encryption-key", "provider:ocikp:" + ra["alice"],
		}, "docker://"+reg+"/pq:1", "docker://"+reg+"/pq:mixed")
		if err == nil || !strings.Contains(out, "ocikp: error: the encryption keys mix post-quantum and classical-only recipients (post-quantum: mlkem768x25519; classical-only: p256)") ||
			!strings.Contains(out, "--allow-classical") {
			t.Fatalf("mixed encrypt: %v\n%s", err, out)
		}
		t.Logf("mixing refusal through skopeo:\n%s", tail(out, 3))
	})

	t.Run("--allow-classical in the provider's config lets them mix", func(t *testing.T) {
		cfg, err := exec.Command(p.bin, "config", "--name", "ocikp", "--allow-classical").Output()
		if err != nil {
			t.Fatal(err)
		}
		allow := *p
		allow.config = filepath.Join(t.TempDir(), "ocicrypt.json")
		os.WriteFile(allow.config, cfg, 0o644)
		ask := newSkopeo(t, &allow)
		out, err := ask.copy(ksEmpty, []string{
			"--encryption-key", "provider:ocikp:" + rx["xw"],
			"--encryption-key", "provider:ocikp:" + ra["alice"],
		}, "docker://"+reg+"/pq:1", "docker://"+reg+"/pq:mixed")
		if err != nil {
			t.Fatalf("mixed encrypt with --allow-classical: %v\n%s", err, out)
		}
		for _, ks := range []string{ksA, ksX} {
			dir, out, err := ask.decrypt(ks, reg+"/pq:mixed")
			if err != nil {
				t.Fatalf("decrypt: %v\n%s", err, out)
			}
			if got := ociLayerDigests(t, dir); !slices.Equal(got, want) {
				t.Fatalf("layers %v, want %v", got, want)
			}
		}
		// inspect marks the mixed layers classical, the others post-quantum.
		stdout, stderr, err := ocikpRun(t, p.bin, ksX, "inspect", "--tls-verify=false", "docker://"+reg+"/pq:mixed", "docker://"+reg+"/pq:enc")
		if err != nil {
			t.Fatalf("inspect: %v\n%s", err, stderr)
		}
		if strings.Count(stdout, "encrypted, classical") != layers || strings.Count(stdout, "encrypted, post-quantum") != layers {
			t.Fatalf("inspect:\n%s", stdout)
		}
	})
}
