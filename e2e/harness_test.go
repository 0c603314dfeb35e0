package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/ocikp/ocikp/internal/testdaemon"
)

// need returns the path of a tool, skipping the test unless OCIKP_E2E=1,
// in which case a missing tool fails it.
func need(t *testing.T, tool string) string {
	t.Helper()
	if os.Getenv("OCIKP_E2E") != "1" {
		t.Skip("end-to-end test: set OCIKP_E2E=1 (scripts/test.sh does, after installing the tools)")
	}
	if dir := os.Getenv("OCIKP_TOOLS_BIN"); dir != "" {
		p := filepath.Join(dir, tool)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("OCIKP_E2E=1 but %s is not installed: run scripts/install-tools.sh", tool)
	}
	return p
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// ocikpBinary builds cmd/ocikp and the KMS plugins once per test run and
// returns the path of ocikp.
func ocikpBinary(t *testing.T) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ocikp-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "ocikp")
		// The KMS plugin goes beside ocikp, where ocikp looks for it.
		for _, p := range []string{"ocikp", "ocikp-unwrap", "ocikp-serve", "ocikp-image", "ocikp-plugin-gcpkms", "ocikp-plugin-awskms", "ocikp-plugin-azurekms", "ocikp-plugin-hashivault", "ocikp-tpm"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(dir, p), "github.com/ocikp/ocikp/cmd/"+p).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", p, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// provider is an ocikp install as ocicrypt sees it: a config file pointing
// at a wrapper that counts invocations and then execs ocikp.
type provider struct {
	bin, config, countFile string
	name                   string // the NAME in provider:NAME
}

func newProvider(t *testing.T, name string) *provider {
	return newProviderExec(t, name, "ocikp")
}

// execs are the binaries a key provider config can run: ocikp, and
// ocikp-unwrap, which answers software-key unwraps itself and hands
// everything else to the ocikp beside it.
var execs = []string{"ocikp", "ocikp-unwrap"}

// newProviderExec is newProvider whose config runs exe, one of execs.
func newProviderExec(t *testing.T, name, exe string) *provider {
	bin := ocikpBinary(t)
	dir := t.TempDir()
	p := &provider{bin: bin, name: name, countFile: filepath.Join(dir, "calls"), config: filepath.Join(dir, "ocicrypt.json")}
	wrapper := filepath.Join(dir, exe+"-counted")
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %q\nexec %q \"$@\"\n", p.countFile, filepath.Join(filepath.Dir(bin), exe))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// The config comes from ocikp itself, as a user would make it.
	out, err := exec.Command(bin, "config", "--name", name, "--path", wrapper).Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.config, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// calls returns and resets the number of provider invocations.
func (p *provider) calls(t *testing.T) int {
	data, err := os.ReadFile(p.countFile)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(p.countFile)
	return strings.Count(string(data), "\n")
}

// keystore makes a keystore with the named keys and returns its directory
// and the keys' recipients.
func (p *provider) keystore(t *testing.T, names ...string) (string, map[string]string) {
	return p.keystoreOf(t, "p256", names...)
}

// keystoreOf is keystore for keys of one type (keygen --type).
func (p *provider) keystoreOf(t *testing.T, typ string, names ...string) (string, map[string]string) {
	dir := filepath.Join(t.TempDir(), "keys")
	recips := map[string]string{}
	for _, n := range names {
		out, err := exec.Command(p.bin, "--keystore", dir, "keygen", "--type", typ, n).Output()
		if err != nil {
			t.Fatalf("keygen %s: %v", n, err)
		}
		recips[n] = strings.TrimSpace(string(out))
	}
	return dir, recips
}

// startRegistry runs Debian's docker-registry on a loopback port of its
// choosing until the test ends, and returns host:port.
func startRegistry(t *testing.T) string {
	addr, _ := startRegistryLog(t)
	return addr
}

// startRegistryLog is startRegistry, with the registry's log (one line
// per request).
func startRegistryLog(t *testing.T) (string, *testdaemon.Log) {
	bin := need(t, "docker-registry")
	dir := t.TempDir()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: 127.0.0.1:0
`, filepath.Join(dir, "data"))
	cfgPath := filepath.Join(dir, "config.yml")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	logs := daemon(t, bin, "serve", cfgPath)
	addr := logs.Wait(t, testdaemon.RegistryListening)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return addr, logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry did not start: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// daemon starts a long-running program for the rest of the test (see
// testdaemon.Start).
func daemon(t *testing.T, bin string, args ...string) *testdaemon.Log {
	return testdaemon.Start(t, exec.Command(bin, args...))
}

// pushImage pushes a random OCI image of n layers and returns it.
func pushImage(t *testing.T, ref string, n int) v1.Image {
	// A platform, so that containerd unpacks it for this machine.
	img := randomImage(t, "linux", runtime.GOARCH, n, 4096)
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return img
}

// randomImage is an OCI image of n random layers of size bytes.
func randomImage(t *testing.T, os, arch string, n int, size int64) v1.Image {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{OS: os, Architecture: arch, RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		l, err := random.Layer(size, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

func remoteManifest(t *testing.T, ref string) *v1.Manifest {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func layerDigests(t *testing.T, img v1.Image) []string {
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

// run runs a command with a time limit and returns combined output.
func run(t *testing.T, env []string, limit time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %v: %w", filepath.Base(name), limit, ctx.Err())
	}
	return string(out), err
}
