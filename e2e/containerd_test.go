package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// containerd is a private containerd instance: its own root, state and
// socket, started and stopped by the test, with imgcrypt's ctd-decoder as
// the stream processor for encrypted layers. The decoder gets ocikp's config
// and keystore only through its environment.
type containerd struct {
	sock, dir, nerdctl string
}

func startContainerd(t *testing.T, decoder string, env []string) *containerd {
	bin := need(t, "containerd")
	need(t, "runc")
	// Unix socket paths are limited to 108 bytes: keep the directory short.
	dir, err := os.MkdirTemp("/tmp", "ctd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &containerd{sock: filepath.Join(dir, "c.sock"), dir: dir, nerdctl: need(t, "nerdctl")}
	quoted := make([]string, len(env))
	for i, e := range env {
		quoted[i] = fmt.Sprintf("%q", e)
	}
	var sp strings.Builder
	// The IDs are imgcrypt's: containerd hands the decoder its payload by ID.
	for id, mt := range map[string]string{"tar": "tar", "tar.gzip": "tar+gzip"} {
		fmt.Fprintf(&sp, `
[stream_processors."io.containerd.ocicrypt.decoder.v1.%s"]
  accepts = ["application/vnd.oci.image.layer.v1.%s+encrypted"]
  returns = "application/vnd.oci.image.layer.v1.%s"
  path = %q
  env = [%s]
`, id, mt, mt, decoder, strings.Join(quoted, ", "))
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = %q
[metrics]
  address = ""
%s`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc", filepath.Join(dir, "debug.sock"), sp.String())
	cfgPath := filepath.Join(dir, "config.toml")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	logs := daemon(t, bin, "--config", cfgPath)
	deadline := time.Now().Add(20 * time.Second)
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
	base := []string{"--address", c.sock, "--namespace", "ocikp-e2e", "--snapshotter", "native",
		"--data-root", filepath.Join(c.dir, "nerdctl"), "--insecure-registry"}
	return run(t, nil, 3*time.Minute, c.nerdctl, append(base, args...)...)
}

func TestContainerd(t *testing.T) {
	const name = "ocikp"
	decoder := need(t, "ctd-decoder")
	p := newProvider(t, name)
	sk := newSkopeo(t, p)
	reg := startRegistry(t)
	_, ra := p.keystore(t, "alice")
	ksB, rb := p.keystore(t, "bob")
	const layers = 3
	pushImage(t, reg+"/app:1", layers)

	// One encrypted image per case: containerd skips decryption for layers
	// it already has.
	encrypt := func(tag string, recipients ...string) string {
		var flags []string
		for _, r := range recipients {
			flags = append(flags, "--encryption-key", "provider:"+name+":"+r)
		}
		out, err := sk.copy(ksB, flags, "docker://"+reg+"/app:1", "docker://"+reg+"/app:"+tag)
		if err != nil {
			t.Fatalf("encrypt %s: %v\n%s", tag, err, out)
		}
		p.calls(t)
		return reg + "/app:" + tag
	}
	goodRef := encrypt("ctd-good", ra["alice"], rb["bob"])

	// The decoder's keystore is bob's: OCIKP_KEYSTORE in its environment is the
	// only way ocikp learns it (nerdctl passes no keys at all).
	c := startContainerd(t, decoder, []string{
		"OCICRYPT_KEYPROVIDER_CONFIG=" + p.config,
		"OCIKP_KEYSTORE=" + ksB,
	})

	// containerd (1.6 and 1.7) reports a stream processor's stderr only if it
	// has reaped the process when it checks; otherwise the failed unpack
	// says "wrong diff id calculated on extraction" (diff/stream_unix.go,
	// binaryProcessor.Err). Every attempt must fail; our message must come
	// through in at least one of a few, each with a fresh image.
	t.Run("wrong keystore fails with our message", func(t *testing.T) {
		const attempts = 5
		for i := range attempts {
			ref := encrypt(fmt.Sprintf("ctd-wrong-%d", i), ra["alice"])
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
			if !strings.Contains(out, "wrong diff id calculated on extraction") {
				t.Fatalf("unexpected failure:\n%s", out)
			}
			t.Logf("attempt %d: containerd lost the decoder's message (its race): %s", i+1, strings.TrimSpace(out))
		}
		t.Fatalf("our message never came through containerd in %d attempts", attempts)
	})

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
