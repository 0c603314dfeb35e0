package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// containerd is a private containerd instance: its own root, state and
// socket, started and stopped by the test, with imgcrypt's ctd-decoder as
// the stream processor for encrypted layers. Its ocikp settings are the
// drop-in "ocikp config --containerd" prints, imported verbatim.
type containerd struct {
	sock, dir, nerdctl string
	logs               interface{ String() string }
}

// containerdSetup says which containerd to run and how.
type containerdSetup struct {
	bin, nerdctl string
	// major is the --containerd-version given to ocikp config: "1" for
	// Debian's containerd 1.6, "2" for containerd 2.x (with its CRI plugin).
	major    string
	dropIn   string // ocikp config --containerd output
	registry string // host:port to reach over plain HTTP (CRI)
	extra    string // more of containerd 2's main configuration (a node's runtime)
}

// containerdDropIn returns what "ocikp config --containerd" prints for
// this provider and keystore.
func (p *provider) containerdDropIn(t *testing.T, major, keyproviderConfig, keystore string) string {
	args := []string{"config", "--containerd", "--containerd-version", major,
		"--decoder", need(t, "ctd-decoder"), "--keyprovider-config", keyproviderConfig}
	if keystore != "" {
		args = append([]string{"--keystore", keystore}, args...)
	}
	out, err := exec.Command(p.bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ocikp config --containerd: %v\n%s", err, out)
	}
	return string(out)
}

func startContainerd(t *testing.T, s containerdSetup) *containerd {
	need(t, "runc")
	// Unix socket paths are limited to 108 bytes: keep the directory short.
	dir, err := os.MkdirTemp("/tmp", "ctd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &containerd{sock: filepath.Join(dir, "c.sock"), dir: dir, nerdctl: s.nerdctl}
	dropIn := filepath.Join(dir, "ocikp.toml")
	if err := os.WriteFile(dropIn, []byte(s.dropIn), 0o644); err != nil {
		t.Fatal(err)
	}
	common := fmt.Sprintf(`root = %q
state = %q
imports = [%q]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = %q
[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), dropIn, c.sock, c.sock+".ttrpc", filepath.Join(dir, "debug.sock"))
	var cfg string
	switch s.major {
	case "1":
		cfg = `version = 2
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
` + common
	case "2":
		// The CRI plugin as a node runs it, with a hosts directory that
		// lets it reach the test registry over plain HTTP and no CNI
		// (pulling needs none).
		hosts := filepath.Join(dir, "certs.d")
		regDir := filepath.Join(hosts, s.registry)
		os.MkdirAll(regDir, 0o755)
		os.MkdirAll(filepath.Join(dir, "cni"), 0o755)
		os.WriteFile(filepath.Join(regDir, "hosts.toml"), fmt.Appendf(nil, `server = "http://%s"
[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, s.registry, s.registry), 0o644)
		cfg = `version = 3
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing", "io.containerd.nri.v1.nri"]
` + common + fmt.Sprintf(`[plugins.'io.containerd.cri.v1.images']
  snapshotter = "native"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = %q
[plugins.'io.containerd.transfer.v1.local']
  [[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
    platform = "linux/%s"
    snapshotter = "native"
[plugins.'io.containerd.cri.v1.runtime'.cni]
  conf_dir = %q
  bin_dirs = [%q]
`, hosts, runtime.GOARCH, filepath.Join(dir, "cni"), filepath.Join(dir, "cni")) + s.extra
	default:
		t.Fatalf("containerd major %q", s.major)
	}
	cfgPath := filepath.Join(dir, "config.toml")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	logs := daemon(t, s.bin, "--config", cfgPath)
	c.logs = logs
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.nerd(t, "version"); err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not start:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *containerd) nerd(t *testing.T, args ...string) (string, error) {
	return c.nerdEnv(t, nil, args...)
}

// encryptFor returns a function that pushes a fresh plain image of n
// layers and encrypts it with skopeo to reg/app:TAG for the recipients.
// Fresh layers each time: containerd skips decrypting layers whose
// content it has already unpacked, even from another image.
func encryptFor(t *testing.T, p *provider, sk *skopeo, reg, keystore string, n int) func(tag string, recipients ...string) string {
	return func(tag string, recipients ...string) string {
		t.Helper()
		plain := reg + "/app:plain-" + tag
		pushImage(t, plain, n)
		var flags []string
		for _, r := range recipients {
			flags = append(flags, "--encryption-key", "provider:"+p.name+":"+r)
		}
		out, err := sk.copy(keystore, flags, "docker://"+plain, "docker://"+reg+"/app:"+tag)
		if err != nil {
			t.Fatalf("encrypt %s: %v\n%s", tag, err, out)
		}
		p.calls(t)
		return reg + "/app:" + tag
	}
}

// Debian's containerd 1.6 with imgcrypt's ctd-decoder and nerdctl 1.7.
func TestContainerd(t *testing.T) {
	const name = "ocikp"
	bin := need(t, "containerd")
	p := newProvider(t, name)
	sk := newSkopeo(t, p)
	reg := startRegistry(t)
	_, ra := p.keystore(t, "alice")
	ksB, rb := p.keystore(t, "bob")
	const layers = 3
	encrypt := encryptFor(t, p, sk, reg, ksB, layers)
	goodRef := encrypt("ctd-good", ra["alice"], rb["bob"])

	// The decoder's keystore is bob's: the drop-in puts it in the
	// decoder's environment, the only way ocikp learns it (nerdctl passes
	// no keys at all).
	c := startContainerd(t, containerdSetup{bin: bin, nerdctl: need(t, "nerdctl"), major: "1",
		dropIn: p.containerdDropIn(t, "1", p.config, ksB)})

	wrongKeystoreThroughNerdctl(t, c, p, encrypt, ra["alice"], ksB)

	t.Run("pull and unpack with no key parameters", func(t *testing.T) {
		out, err := c.nerd(t, "pull", "--unpack=true", goodRef)
		if err != nil {
			t.Fatalf("pull: %v\n%s", err, out)
		}
		if n := p.calls(t); n != layers {
			t.Errorf("unpack called the provider %d times for %d layers", n, layers)
		}
		// Unpacking checked every decrypted layer against the diff_ids of the
		// image config; the image is now listed.
		out, err = c.nerd(t, "images")
		if err != nil || !strings.Contains(out, "ctd-good") {
			t.Fatalf("images: %v\n%s", err, out)
		}
	})
}

// emptyDigest is the digest of no bytes: the "diff id" containerd
// calculates for a decoder that failed before it wrote anything.
const emptyDigest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// lostDecoderError reports whether a failed unpack by containerd 2.4 (the
// CRI's pulls) is its race (see wrongKeystoreThroughNerdctl) over a
// decoder that wrote nothing. 2.4's message names the digest it
// calculated, and any other digest would mean the decoder wrote a layer
// it should not have; older unpackers (nerdctl's) name the expected one.
func lostDecoderError(msg string) bool {
	return strings.Contains(msg, "wrong diff id") && strings.Contains(msg, "calculated on extraction") &&
		strings.Contains(msg, emptyDigest)
}

// containerd (1.6 to 2.x) reports a stream processor's stderr only if it
// has reaped the process when it checks; otherwise the failed unpack says
// "wrong diff id calculated on extraction" (diff/stream_unix.go,
// binaryProcessor.Err). Every attempt must fail; our message must come
// through in at least one of a few, each with a fresh image.
func wrongKeystoreThroughNerdctl(t *testing.T, c *containerd, p *provider, encrypt func(string, ...string) string, alice, ksB string) {
	t.Run("wrong keystore fails with our message", func(t *testing.T) {
		const attempts = 5
		for i := range attempts {
			ref := encrypt(fmt.Sprintf("ctd-wrong-%d", i), alice)
			out, err := c.nerd(t, "pull", "--unpack=true", ref)
			if err == nil {
				t.Fatalf("pulled and unpacked an image encrypted only for alice:\n%s", out)
			}
			p.calls(t)
			if strings.Contains(out, "ocikp: error: no key can decrypt this layer") {
				if want := "tried 1 key(s) in keystore " + ksB + ": bob"; !strings.Contains(out, want) {
					t.Errorf("nerdctl output lacks %q:\n%s", want, out)
				}
				t.Logf("wrong-key output through nerdctl/containerd (attempt %d):\n%s", i+1, out)
				return
			}
			if !strings.Contains(out, "wrong diff id") {
				t.Fatalf("unexpected failure:\n%s", out)
			}
			t.Logf("attempt %d: containerd lost the decoder's message (its race): %s", i+1, strings.TrimSpace(out))
		}
		t.Fatalf("our message never came through containerd in %d attempts", attempts)
	})
}

// The messages are the CRI's (containerd 2.4.2) as CI saw them.
func TestLostDecoderError(t *testing.T) {
	for _, c := range []struct {
		msg  string
		lost bool
	}{
		{`ErrImagePull: failed to pull and unpack image "127.0.0.1:44447/app:ds-killed": wrong diff id "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" calculated on extraction "sha256:f4d39ed72c5617564852c73f1ee73d4cb6f1fc6398ca6a5b2a204ca02aab6ed5", desc "sha256:ebb6628375b7bb1a53c49505a96db01adb28733fc3b6a5f1bae894a090fa805f"`, true},
		// A decoder that wrote the wrong bytes is not containerd's race.
		{`ErrImagePull: failed to pull and unpack image "127.0.0.1:44447/app:ds-killed": wrong diff id "sha256:f4d39ed72c5617564852c73f1ee73d4cb6f1fc6398ca6a5b2a204ca02aab6ed4" calculated on extraction "sha256:f4d39ed72c5617564852c73f1ee73d4cb6f1fc6398ca6a5b2a204ca02aab6ed5", desc "sha256:ebb6628375b7bb1a53c49505a96db01adb28733fc3b6a5f1bae894a090fa805f"`, false},
		{`ErrImagePull: failed to pull and unpack image "127.0.0.1:44447/app:ds-killed": failed to extract layer sha256:f4d3…: call to DecryptLayer failed: rpc error: code = Unavailable desc = error reading from server: read unix @->/run/ocikp/ocikp.sock: read: connection reset by peer`, false},
	} {
		if got := lostDecoderError(c.msg); got != c.lost {
			t.Errorf("lostDecoderError = %v, want %v: %s", got, c.lost, c.msg)
		}
	}
}
