package e2e

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// containersRoot is a private root for the containers/* programs (podman,
// buildah, CRI-O): vfs storage, its own configuration files, and, through
// runHermetic, tmpfs over the host-wide paths they write as root.
type containersRoot struct {
	dir, policy string
	env         []string
}

func newContainersRoot(t *testing.T, reg string) *containersRoot {
	dir := t.TempDir()
	r := &containersRoot{dir: dir, policy: filepath.Join(dir, "policy.json")}
	files := map[string]string{
		"policy.json": `{"default":[{"type":"insecureAcceptAnything"}]}`,
		"storage.conf": fmt.Sprintf(`[storage]
driver = "vfs"
graphroot = %q
runroot = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "run")),
		"registries.conf": fmt.Sprintf(`[[registry]]
location = %q
insecure = true
`, reg),
		"containers.conf": fmt.Sprintf(`[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
runtime = "crun"
[network]
network_backend = "netavark"
`, filepath.Join(dir, "events.log")),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r.env = []string{
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"),
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(dir, "registries.conf"),
		"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf"),
	}
	return r
}

// hermeticScript runs its arguments in a private mount namespace with
// tmpfs over /var/lib/containers and /run/containers, which rootful
// podman, buildah and CRI-O write whatever their configuration says.
const hermeticScript = `set -e
mkdir -p /var/lib/containers /run/containers
mount --make-rprivate /
mount -t tmpfs tmpfs /var/lib/containers
mount -t tmpfs tmpfs /run/containers
exec "$@"`

// runHermetic runs bin with args and env in the private root.
func (r *containersRoot) run(t *testing.T, env []string, bin string, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"-m", "sh", "-c", hermeticScript, "sh", bin}, args...)
	return run(t, append(slices.Clone(r.env), env...), 3*time.Minute, need(t, "unshare"), full...)
}

// podman 5 and buildah, built from the module proxy, rootful on vfs in a
// private root: buildah push and podman push with --encryption-key for
// several recipients, podman pull --decryption-key provider:ocikp, the
// Quadlet unit "ocikp config --quadlet" prints, and the wrong key.
func TestPodmanBuildah(t *testing.T) {
	podman := need(t, "podman")
	buildah := need(t, "buildah")
	need(t, "conmon")
	need(t, "crun")
	p := newProvider(t, "ocikp")
	sk := newSkopeo(t, p)
	reg := startRegistry(t)
	ksA, ra := p.keystore(t, "alice")
	ksB, rb := p.keystore(t, "bob")
	ksC, _ := p.keystore(t, "carol")
	const layers = 3
	want := diffIDs(t, pushImage(t, reg+"/app:plain", layers))
	kp := "OCICRYPT_KEYPROVIDER_CONFIG=" + p.config
	encFlags := []string{"--encryption-key", "provider:ocikp:" + ra["alice"], "--encryption-key", "provider:ocikp:" + rb["bob"]}

	// Each encrypted image must decrypt for alice alone and for bob alone,
	// back to the plain layers' content (podman and buildah store layers
	// uncompressed and compress them again on push: new blob digests).
	decryptsForEach := func(t *testing.T, ref string) {
		t.Helper()
		for _, l := range remoteManifest(t, ref).Layers {
			if !strings.HasSuffix(string(l.MediaType), "+encrypted") {
				t.Fatalf("%s: layer not encrypted: %s", ref, l.MediaType)
			}
		}
		for _, ks := range []string{ksA, ksB} {
			dir, out, err := sk.decrypt(ks, ref)
			if err != nil {
				t.Fatalf("skopeo decrypt %s with %s: %v\n%s", ref, ks, err, out)
			}
			if got := ociUncompressedDigests(t, dir); !slices.Equal(got, want) {
				t.Fatalf("decrypted layers %v, want %v", got, want)
			}
		}
		p.calls(t)
	}

	t.Run("buildah push --encryption-key, two recipients", func(t *testing.T) {
		r := newContainersRoot(t, reg)
		out, err := r.run(t, nil, buildah, "pull", "--signature-policy", r.policy, reg+"/app:plain")
		if err != nil {
			t.Fatalf("buildah pull: %v\n%s", err, out)
		}
		args := append([]string{"push", "--signature-policy", r.policy}, encFlags...)
		out, err = r.run(t, []string{kp}, buildah, append(args, reg+"/app:plain", "docker://"+reg+"/app:buildah-enc")...)
		if err != nil {
			t.Fatalf("buildah push --encryption-key: %v\n%s", err, out)
		}
		if n := p.calls(t); n != layers {
			t.Errorf("buildah push called the provider %d times for %d layers", n, layers)
		}
		decryptsForEach(t, reg+"/app:buildah-enc")
	})

	t.Run("podman push --encryption-key, two recipients", func(t *testing.T) {
		r := newContainersRoot(t, reg)
		out, err := r.run(t, nil, podman, "pull", "--signature-policy", r.policy, reg+"/app:plain")
		if err != nil {
			t.Fatalf("podman pull: %v\n%s", err, out)
		}
		args := append([]string{"push", "--signature-policy", r.policy}, encFlags...)
		out, err = r.run(t, []string{kp}, podman, append(args, reg+"/app:plain", "docker://"+reg+"/app:podman-enc")...)
		if err != nil {
			t.Fatalf("podman push --encryption-key: %v\n%s", err, out)
		}
		checkCalls(t, p, "podman push", layers)
		decryptsForEach(t, reg+"/app:podman-enc")
	})

	t.Run("podman pull --decryption-key provider:ocikp", func(t *testing.T) {
		r := newContainersRoot(t, reg)
		out, err := r.run(t, []string{kp, "OCIKP_KEYSTORE=" + ksB}, podman, "pull", "--signature-policy", r.policy,
			"--decryption-key", "provider:ocikp", reg+"/app:buildah-enc")
		if err != nil {
			t.Fatalf("podman pull --decryption-key: %v\n%s", err, out)
		}
		checkCalls(t, p, "podman pull", layers)
		// podman checked each decrypted layer against the config's diff_ids.
		if out, err := r.run(t, nil, podman, "image", "exists", reg+"/app:buildah-enc"); err != nil {
			t.Fatalf("the pulled image is not in podman's storage: %v\n%s", err, out)
		}
	})

	t.Run("podman pull with the wrong key", func(t *testing.T) {
		r := newContainersRoot(t, reg)
		out, err := r.run(t, []string{kp, "OCIKP_KEYSTORE=" + ksC}, podman, "pull", "--signature-policy", r.policy,
			"--decryption-key", "provider:ocikp", reg+"/app:podman-enc")
		p.calls(t)
		if err == nil || !strings.Contains(out, "ocikp: error: no key can decrypt this layer") ||
			!strings.Contains(out, "tried 1 key(s) in keystore "+ksC+": carol") {
			t.Fatalf("podman pull with carol's keystore: %v\n%s", err, out)
		}
		t.Logf("wrong-key output through podman:\n%s", out)
	})

	t.Run("the Quadlet unit from ocikp config --quadlet", func(t *testing.T) {
		quadlet := need(t, "quadlet")
		ref := reg + "/app:podman-enc"
		unit, err := exec.Command(p.bin, "--keystore", ksA, "config", "--quadlet", "--image", ref, "--keyprovider-config", p.config).Output()
		if err != nil {
			t.Fatalf("ocikp config --quadlet: %v", err)
		}
		units := t.TempDir()
		os.WriteFile(filepath.Join(units, "app.image"), unit, 0o644)
		cmd := exec.Command(quadlet, "-dryrun")
		cmd.Env = append(os.Environ(), "QUADLET_UNIT_DIRS="+units)
		gen, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("quadlet -dryrun: %v\n%s", err, gen)
		}
		execStart, env := serviceLines(string(gen))
		if len(execStart) < 4 || !slices.Contains(execStart, "--decryption-key") {
			t.Fatalf("quadlet generated no pull with --decryption-key:\n%s", gen)
		}
		// The generated command, with the test's podman and, after
		// "image pull", the signature policy of the private root.
		r := newContainersRoot(t, reg)
		args := slices.Clone(execStart[1:])
		i := slices.Index(args, "pull")
		args = slices.Insert(args, i+1, "--signature-policy", r.policy)
		out, err := r.run(t, env, podman, args...)
		if err != nil {
			t.Fatalf("the Quadlet unit's pull (%s): %v\n%s", strings.Join(execStart, " "), err, out)
		}
		checkCalls(t, p, "the Quadlet unit's pull", layers)
		t.Logf("quadlet ExecStart: %s", strings.Join(execStart, " "))
	})
}

// checkCalls checks that the provider was called for every layer. podman
// push and pull call it twice per layer (measured: 6 calls for 3 layers,
// once each for buildah push and skopeo); any whole multiple is accepted.
func checkCalls(t *testing.T, p *provider, what string, layers int) {
	t.Helper()
	n := p.calls(t)
	if n < layers || n%layers != 0 {
		t.Errorf("%s called the provider %d times for %d layers", what, n, layers)
	}
}

func diffIDs(t *testing.T, img v1.Image) []string {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range cf.RootFS.DiffIDs {
		out = append(out, d.String())
	}
	return out
}

// ociUncompressedDigests hashes the uncompressed content of each layer of
// the one image in an OCI layout (not the config's claims).
func ociUncompressedDigests(t *testing.T, dir string) []string {
	t.Helper()
	ls, err := ociImage(t, dir).Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("sha256:%x", h.Sum(nil)))
	}
	return out
}

// serviceLines returns the ExecStart command and the Environment
// assignments of a generated systemd service (quadlet writes no quoting
// for these simple values; quoted Environment values are unquoted).
func serviceLines(unit string) (execStart, env []string) {
	sc := bufio.NewScanner(strings.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(line, "Environment="); ok {
			env = append(env, strings.Trim(v, `"`))
		}
	}
	return execStart, env
}
