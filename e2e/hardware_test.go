package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/internal/testdaemon"
	"github.com/ocikp/ocikp/keys/pkcs11/softhsmtest"
	"github.com/ocikp/ocikp/keys/tpm/tpmtest"
)

// hwPIN is the SoftHSM token's PIN: no output may ever show it.
const hwPIN = "PIN-e2e-7c41d9"

// hardware is one image encrypted with skopeo for four keys, each in a
// keystore or environment of its own: a TPM key made on swtpm, a key on
// a SoftHSM token, an EK-targeted recipient (made on a keystore with no
// TPM) and a software key.
type hardware struct {
	p       *provider
	sk      *skopeo
	reg     string
	sw      *tpmtest.SWTPM
	pinFile string
	// keystores: tpm, token and soft hold one key each; ek only the
	// device's enrolled EK (no key); other holds a key for none.
	ks     map[string]string
	recips map[string]string
	ref    string   // the encrypted image
	want   []string // its plain layer digests
	seen   []string // every output, checked for the PIN
}

// newHardware starts swtpm, a SoftHSM token and a registry, makes the
// four keys with the public CLI and encrypts one image for all four.
func newHardware(t *testing.T) *hardware {
	// Through ocikp-unwrap: every hardware key's unwrap is handed to
	// ocikp, as on a node configured as docs/callers.md says.
	p := newProviderExec(t, "ocikp", "ocikp-unwrap")
	h := &hardware{p: p, sk: newSkopeo(t, p), reg: startRegistry(t), ks: map[string]string{}, recips: map[string]string{}}
	h.sw = tpmtest.Start(t)
	tk := softhsmtest.Start(t, "node", hwPIN)
	mergePluginDir(t, p.bin)
	dir := t.TempDir()
	h.pinFile = filepath.Join(dir, "pin")
	os.WriteFile(h.pinFile, []byte(hwPIN+"\n"), 0o600)
	for _, k := range []string{"tpm", "token", "soft", "ek", "other", "build"} {
		h.ks[k] = filepath.Join(dir, "ks-"+k)
		os.Mkdir(h.ks[k], 0o700)
	}
	// No OCIKP_TPM and no /dev/tpmrm0 (checked below): only the
	// environments that name the device reach it.
	t.Setenv("OCIKP_TPM", "")
	if _, err := os.Stat("/dev/tpmrm0"); err == nil {
		t.Skip("this machine has /dev/tpmrm0: the test needs swtpm to be the only TPM")
	}
	h.recips["tpm"] = h.cli(t, nil, "--keystore", h.ks["tpm"], "keygen", "--backend", "tpm", "--tpm", h.sw.Socket, "node")
	h.recips["token"] = h.cli(t, nil, "--keystore", h.ks["token"], "keygen", "--backend", "pkcs11", "--pin-file", h.pinFile, "--uri", tk.URI("ocikp-node"), "token")
	h.recips["soft"] = h.cli(t, nil, "--keystore", h.ks["soft"], "keygen", "laptop")
	h.cli(t, nil, "--keystore", h.ks["other"], "keygen", "carol")
	// The device enrols its EK and prints it; a build machine with no
	// TPM makes the recipient from that file alone.
	ek := filepath.Join(dir, "node.ek.pem")
	os.WriteFile(ek, []byte(h.cli(t, nil, "--keystore", h.ks["ek"], "tpm", "enroll", "--type", "ecc", "--tpm", h.sw.Socket)+"\n"), 0o644)
	h.recips["ek"] = h.cli(t, nil, "--keystore", h.ks["build"], "recipient", "--tpm-ek", ek)
	for k, prefix := range map[string]string{"tpm": "ocikp1p2561", "token": "ocikp1p2561", "soft": "ocikp1p2561", "ek": "ocikp1tpmek1"} {
		if !strings.HasPrefix(h.recips[k], prefix) {
			t.Fatalf("%s recipient %q, want %s…", k, h.recips[k], prefix)
		}
	}

	plain := h.reg + "/hw:plain"
	h.want = layerDigests(t, pushImage(t, plain, 2))
	h.ref = h.reg + "/hw:enc"
	var flags []string
	for _, k := range []string{"tpm", "token", "ek", "soft"} {
		flags = append(flags, "--encryption-key", "provider:ocikp:"+h.recips[k])
	}
	// Encrypting needs neither the TPM nor the token.
	h.sk.env = []string{"OCIKP_TPM=/nonexistent", "SOFTHSM2_CONF=/nonexistent"}
	out, err := h.sk.copy(h.ks["build"], flags, "docker://"+plain, "docker://"+h.ref)
	h.sk.env = nil
	h.seen = append(h.seen, out)
	if err != nil {
		t.Fatalf("encrypt for four recipients: %v\n%s", err, out)
	}
	for i, l := range remoteManifest(t, h.ref).Layers {
		if !strings.HasSuffix(string(l.MediaType), "+encrypted") || slices.Contains(h.want, l.Digest.String()) {
			t.Fatalf("layer %d is not encrypted: %s %s", i, l.MediaType, l.Digest)
		}
	}
	p.calls(t)
	return h
}

// cli runs ocikp and returns its trimmed stdout; stderr is kept for the
// PIN check.
func (h *hardware) cli(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(h.p.bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	h.seen = append(h.seen, string(out), stderr.String())
	if err != nil {
		t.Fatalf("ocikp %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// noPIN fails the test if any output so far showed the token's PIN.
func (h *hardware) noPIN(t *testing.T) {
	t.Helper()
	for _, s := range h.seen {
		if strings.Contains(s, hwPIN) {
			t.Fatalf("an output shows the PIN:\n%s", s)
		}
	}
}

// decrypt copies the image through skopeo with the exec provider, one
// keystore and env, and returns skopeo's output and the decrypted layers.
func (h *hardware) decrypt(t *testing.T, keystore string, env ...string) (string, []string, error) {
	t.Helper()
	h.sk.env = env
	defer func() { h.sk.env = nil }()
	dir, out, err := h.sk.decrypt(keystore, h.ref)
	h.seen = append(h.seen, out)
	if err != nil {
		return out, nil, err
	}
	return out, ociLayerDigests(t, dir), nil
}

// mergePluginDir points OCIKP_PLUGIN_DIR at a directory holding the
// binaries beside ocikp and the ocikp-pkcs11 softhsmtest built: the
// variable replaces the search beside ocikp, and every companion must be
// found.
func mergePluginDir(t *testing.T, bin string) {
	merged := t.TempDir()
	for _, d := range []string{filepath.Dir(bin), os.Getenv("OCIKP_PLUGIN_DIR")} {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			os.Symlink(filepath.Join(d, e.Name()), filepath.Join(merged, e.Name()))
		}
	}
	t.Setenv("OCIKP_PLUGIN_DIR", merged)
}

// One image for a TPM key, a PKCS#11 key, an EK-targeted recipient and a
// software key, encrypted with real skopeo through the exec provider: each
// decrypts it alone through skopeo, a key for none gets ocikp's message,
// a wrong PIN is named, and the PIN never appears in any output.
func TestHardwareSkopeo(t *testing.T) {
	h := newHardware(t)
	for _, tc := range []struct {
		name     string
		keystore string
		env      []string
	}{
		// The record names the swtpm socket: no OCIKP_TPM needed.
		{"TPM key", h.ks["tpm"], nil},
		{"PKCS#11 key", h.ks["token"], []string{"OCIKP_PASSPHRASE_FILE=" + h.pinFile}},
		// A keystore with no key, the EK enrolled: the stanza opens on the device.
		{"EK recipient", h.ks["ek"], []string{"OCIKP_TPM=" + h.sw.Socket}},
		{"software key", h.ks["soft"], nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, got, err := h.decrypt(t, tc.keystore, tc.env...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !slices.Equal(got, h.want) {
				t.Fatalf("decrypted layers %v, want %v", got, h.want)
			}
			if n := h.p.calls(t); n != len(h.want) {
				t.Errorf("%d provider calls for %d layers", n, len(h.want))
			}
		})
	}

	t.Run("a key for none of them", func(t *testing.T) {
		out, _, err := h.decrypt(t, h.ks["other"])
		if err == nil {
			t.Fatalf("decrypted with a key the image is not for:\n%s", out)
		}
		for _, want := range []string{
			"ocikp: error: no key can decrypt this layer; it was encrypted for 4 recipients",
			"ocikp: hint: tried 1 key(s) in keystore " + h.ks["other"] + ": carol",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("skopeo output lacks %q:\n%s", want, out)
			}
		}
		t.Logf("a key for none of them, through skopeo:\n%s", out)
	})

	t.Run("wrong PIN", func(t *testing.T) {
		wrong := filepath.Join(t.TempDir(), "wrong")
		os.WriteFile(wrong, []byte("0000-wrong\n"), 0o600)
		out, _, err := h.decrypt(t, h.ks["token"], "OCIKP_PASSPHRASE_FILE="+wrong)
		// skopeo quotes the provider's stderr: "node" arrives as \"node\".
		if err == nil || !regexp.MustCompile(`the PIN for token \\?"node\\?" is incorrect`).MatchString(out) {
			t.Fatalf("wrong PIN through skopeo: %v\n%s", err, out)
		}
		if strings.Contains(out, "0000-wrong") {
			t.Errorf("the wrong PIN appears in the output:\n%s", out)
		}
	})
	h.noPIN(t)
}

// The same image through ocikp serve (gRPC provider config, as
// TestSkopeoGRPC): the service holding the TPM key, then the PKCS#11 key,
// decrypts it for skopeo, which sends no keys of its own.
func TestHardwareSkopeoGRPC(t *testing.T) {
	h := newHardware(t)
	for _, tc := range h.services() {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				k, v, _ := strings.Cut(tc.env, "=")
				t.Setenv(k, v) // the service's environment
			}
			cfg := startServe(t, h.p.bin, tc.keystore, "", tc.args...)
			h.sk.p = &provider{bin: h.p.bin, config: cfg, countFile: h.p.countFile}
			defer func() { h.sk.p = h.p }()
			// Twice: the service keeps its identities between requests.
			for range 2 {
				dir := filepath.Join(t.TempDir(), "oci")
				out, err := h.sk.copy(t.TempDir(), []string{"--decryption-key", "provider:ocikp"}, "docker://"+h.ref, "oci:"+dir+":out")
				h.seen = append(h.seen, out)
				if err != nil {
					t.Fatalf("decrypt through ocikp serve: %v\n%s", err, out)
				}
				if got := ociLayerDigests(t, dir); !slices.Equal(got, h.want) {
					t.Fatalf("layers %v, want %v", got, h.want)
				}
			}
		})
	}
	h.noPIN(t)
}

// service is how ocikp serve is started for one of the hardware keys.
type service struct {
	name, key string
	keystore  string
	env       string   // one NAME=VALUE for the service, or ""
	args      []string // more serve flags
}

// services: the TPM key's record names its device; the token's PIN comes
// from --passphrase-file (a service reads no passphrase variables); the
// EK stanza needs the EK's enrolment and the device, named by OCIKP_TPM.
func (h *hardware) services() []service {
	return []service{
		{name: "TPM key", key: "tpm", keystore: h.ks["tpm"]},
		{name: "PKCS#11 key", key: "token", keystore: h.ks["token"], args: []string{"--passphrase-file", h.pinFile}},
		{name: "EK recipient", key: "ek", keystore: h.ks["ek"], env: "OCIKP_TPM=" + h.sw.Socket},
	}
}

// containerd 2's CRI pull, as the kubelet drives it, sends ocikp no
// decryption parameters: a TPM node key decrypts through the drop-in
// "ocikp config --containerd" prints (exec provider) and through ocikp
// serve on a node's unix socket; a PKCS#11 key and an EK stanza through
// the service too.
func TestHardwareContainerd2(t *testing.T) {
	bin := need(t, "containerd2")
	nerdctl := need(t, "nerdctl2")
	h := newHardware(t)
	const layers = 2
	encrypt := encryptFor(t, h.p, h.sk, h.reg, h.ks["build"], layers)
	pull := func(t *testing.T, c *containerd, tag, recipient string) {
		t.Helper()
		if _, err := criPull(t, c.sock, encrypt(tag, recipient)); err != nil {
			t.Fatalf("PullImage: %v\ncontainerd log:\n%s", err, tail(c.logs.String(), 20))
		}
	}

	t.Run("exec provider, TPM key", func(t *testing.T) {
		c := startContainerd(t, containerdSetup{bin: bin, nerdctl: nerdctl, major: "2",
			dropIn: h.p.containerdDropIn(t, "2", h.p.config, h.ks["tpm"]), registry: h.reg})
		pull(t, c, "ctd-tpm", h.recips["tpm"])
		if n := h.p.calls(t); n != layers {
			t.Errorf("the CRI pull called the provider %d times for %d layers", n, layers)
		}
		// Another key's image is refused after asking ocikp (containerd may
		// lose the decoder's message: see wrongKeystoreThroughNerdctl).
		_, err := criPull(t, c.sock, encrypt("ctd-tpm-wrong", h.recips["soft"]))
		if err == nil {
			t.Fatal("the CRI pulled an image not encrypted for the TPM key")
		}
		if h.p.calls(t) == 0 {
			t.Errorf("the CRI pull failed without asking ocikp: %v", err)
		}
		if !strings.Contains(err.Error(), "ocikp: error: no key can decrypt this layer") && !strings.Contains(err.Error(), "wrong diff id") {
			t.Errorf("unexpected failure: %v", err)
		}
	})

	for _, tc := range h.services() {
		t.Run("service, "+tc.name, func(t *testing.T) {
			if tc.env != "" {
				k, v, _ := strings.Cut(tc.env, "=")
				t.Setenv(k, v)
			}
			kp := serveUnix(t, h.p.bin, tc.keystore, tc.args...)
			c := startContainerd(t, containerdSetup{bin: bin, nerdctl: nerdctl, major: "2",
				dropIn: h.p.containerdDropIn(t, "2", kp, ""), registry: h.reg})
			pull(t, c, "svc-"+tc.key, h.recips[tc.key])
		})
	}
	h.noPIN(t)
}

// serveUnix is startServeUnix with more serve flags.
func serveUnix(t *testing.T, bin, keystore string, args ...string) string {
	dir, err := os.MkdirTemp("/tmp", "kp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	addr := "unix://" + filepath.Join(dir, "ocikp.sock")
	logs := testdaemon.Start(t, exec.Command(bin, append([]string{"--keystore", keystore, "serve", "--listen", addr}, args...)...))
	logs.Wait(t, testdaemon.Serving)
	out, err := exec.Command(bin, "config", "--grpc", addr).Output()
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ocicrypt.json")
	os.WriteFile(cfg, out, 0o644)
	return cfg
}
