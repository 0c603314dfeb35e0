package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/ocikp/ocikp/internal/testdaemon"
)

// localPullLine is the line of ocikp's containerd 2 drop-in that makes CRI
// pulls decrypt; the Transfer-Service case removes it.
const localPullLine = "[plugins.'io.containerd.cri.v1.images']\n  use_local_image_pull = true\n"

// noPayload is how ctd-decoder fails when containerd starts it without the
// decryption payload (the Transfer Service, plain ctr).
const noPayload = "read payload: read configFd: bad file descriptor"

// criPull pulls ref through the CRI ImageService over containerd's socket,
// as the kubelet does, and returns the image's ID.
func criPull(t *testing.T, sock, ref string) (string, error) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	images := runtimeapi.NewImageServiceClient(conn)
	resp, err := images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return "", err
	}
	st, err := images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: resp.ImageRef}})
	if err != nil || st.Image == nil {
		t.Fatalf("ImageStatus of a pulled image: %v (%v)", err, st)
	}
	return resp.ImageRef, nil
}

// startServeUnix runs ocikp serve on a unix socket, as a node service, and
// returns the key provider config that points at it.
func startServeUnix(t *testing.T, bin, keystore string) string {
	dir, err := os.MkdirTemp("/tmp", "kp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	addr := "unix://" + filepath.Join(dir, "ocikp.sock")
	logs := testdaemon.Start(t, exec.Command(bin, "--keystore", keystore, "serve", "--listen", addr))
	logs.Wait(t, testdaemon.Serving)
	out, err := exec.Command(bin, "config", "--grpc", addr).Output()
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ocicrypt.json")
	os.WriteFile(cfg, out, 0o644)
	return cfg
}

// containerd 2 with its CRI plugin, the kubelet's path: PullImage over the
// CRI socket decrypts through ctd-decoder → ocikp with no key parameters,
// given ocikp's drop-in; nerdctl 2 on the same containerd; and what happens
// with containerd's default (Transfer Service) pull.
func TestContainerd2(t *testing.T) {
	bin := need(t, "containerd2")
	nerdctl := need(t, "nerdctl2")
	// A node runs ocikp-unwrap (docs/callers.md).
	p := newProviderExec(t, "ocikp", "ocikp-unwrap")
	sk := newSkopeo(t, p)
	reg := startRegistry(t)
	_, ra := p.keystore(t, "alice")
	ksB, rb := p.keystore(t, "bob")
	ksC, _ := p.keystore(t, "carol")
	const layers = 3
	encrypt := encryptFor(t, p, sk, reg, ksB, layers)

	dropIn := p.containerdDropIn(t, "2", p.config, ksB)
	if !strings.Contains(dropIn, localPullLine) {
		t.Fatalf("ocikp's containerd 2 drop-in lacks %q:\n%s", localPullLine, dropIn)
	}
	c := startContainerd(t, containerdSetup{bin: bin, nerdctl: nerdctl, major: "2", dropIn: dropIn, registry: reg})

	t.Run("CRI PullImage decrypts with ocikp's drop-in (local pull)", func(t *testing.T) {
		ref := encrypt("cri-good", ra["alice"], rb["bob"])
		id, err := criPull(t, c.sock, ref)
		if err != nil {
			t.Fatalf("PullImage: %v\ncontainerd log:\n%s", err, tail(c.logs.String(), 20))
		}
		if n := p.calls(t); n != layers {
			t.Errorf("the CRI pull called the provider %d times for %d layers", n, layers)
		}
		t.Logf("pulled %s as %s", ref, id)
	})

	t.Run("CRI PullImage with the wrong keystore fails", func(t *testing.T) {
		ref := encrypt("cri-wrong", ra["alice"])
		_, err := criPull(t, c.sock, ref)
		if err == nil {
			t.Fatal("the CRI pulled an image encrypted only for alice with bob's keystore")
		}
		if p.calls(t) == 0 {
			t.Errorf("the CRI pull failed without asking ocikp: %v", err)
		}
		// containerd's race (see wrongKeystoreThroughNerdctl) may drop our
		// message; when it comes through, it is ours, whole.
		if !strings.Contains(err.Error(), "ocikp: error: no key can decrypt this layer") && !strings.Contains(err.Error(), "wrong diff id") {
			t.Fatalf("unexpected failure: %v", err)
		}
		t.Logf("wrong-key error through the CRI: %v", err)
	})

	t.Run("nerdctl 2 pull unpacks through the stream processor", func(t *testing.T) {
		ref := encrypt("nerd-pull", ra["alice"], rb["bob"])
		out, err := c.nerd(t, "pull", "--unpack=true", ref)
		if err != nil {
			t.Fatalf("nerdctl pull: %v\n%s", err, out)
		}
		if n := p.calls(t); n != layers {
			t.Errorf("nerdctl pull called the provider %d times for %d layers", n, layers)
		}
	})

	wrongKeystoreThroughNerdctl(t, c, p, encrypt, ra["alice"], ksB)

	t.Run("nerdctl 2 image encrypt and decrypt with provider:ocikp", func(t *testing.T) {
		env := []string{"OCICRYPT_KEYPROVIDER_CONFIG=" + p.config, "OCIKP_KEYSTORE=" + ksB}
		nerd := func(env []string, args ...string) string {
			t.Helper()
			out, err := c.nerdEnv(t, env, args...)
			if err != nil {
				t.Fatalf("nerdctl %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return out
		}
		plain, enc, dec := reg+"/app:nerd-plain", reg+"/app:nerd-enc", reg+"/app:nerd-dec"
		pushImage(t, plain, layers)
		nerd(nil, "pull", plain)
		nerd(env, "image", "encrypt", "--recipient", "provider:ocikp:"+ra["alice"], "--recipient", "provider:ocikp:"+rb["bob"], plain, enc)
		if n := p.calls(t); n != layers {
			t.Errorf("nerdctl image encrypt called the provider %d times for %d layers", n, layers)
		}
		nerd(nil, "push", enc)
		for _, l := range remoteManifest(t, enc).Layers {
			if !strings.HasSuffix(string(l.MediaType), "+encrypted") {
				t.Fatalf("pushed layer not encrypted: %s", l.MediaType)
			}
		}
		nerd(env, "image", "decrypt", "--key", "provider:ocikp", enc, dec)
		if n := p.calls(t); n != layers {
			t.Errorf("nerdctl image decrypt called the provider %d times for %d layers", n, layers)
		}
		out, err := c.nerdEnv(t, []string{"OCICRYPT_KEYPROVIDER_CONFIG=" + p.config, "OCIKP_KEYSTORE=" + ksC},
			"image", "decrypt", "--key", "provider:ocikp", enc, reg+"/app:nerd-dec-wrong")
		if err == nil || !strings.Contains(out, "ocikp: error: no key can decrypt this layer") {
			t.Fatalf("nerdctl image decrypt with carol's keystore: %v\n%s", err, out)
		}
		t.Logf("wrong-key output through nerdctl image decrypt:\n%s", out)
	})

	// Plain ctr sends the decoder no payload, through the Transfer Service
	// or locally: it cannot decrypt (use nerdctl, or ctr-enc).
	t.Run("plain ctr pull does not decrypt", func(t *testing.T) {
		ctr := need(t, "ctr2")
		for _, mode := range [][]string{nil, {"--local"}} {
			args := append([]string{"--address", c.sock, "--namespace", "ocikp-e2e", "images", "pull", "--plain-http", "--snapshotter", "native"}, mode...)
			ref := encrypt("ctr-pull"+strings.Join(mode, ""), rb["bob"])
			out, err := run(t, nil, 2*time.Minute, ctr, append(args, ref)...)
			if err == nil {
				t.Fatalf("ctr images pull %v unpacked an encrypted image: ocikp's docs say it cannot\n%s", mode, out)
			}
			if n := p.calls(t); n != 0 {
				t.Errorf("ctr images pull %v called the provider %d times", mode, n)
			}
			if !strings.Contains(out, noPayload) && !strings.Contains(out, "wrong diff id") {
				t.Fatalf("ctr images pull %v failed otherwise than without a payload:\n%s", mode, out)
			}
			t.Logf("ctr images pull %v: %s", mode, tail(out, 1))
		}
	})

	t.Run("containerd's default CRI pull (Transfer Service) does not decrypt", func(t *testing.T) {
		c := startContainerd(t, containerdSetup{bin: bin, nerdctl: nerdctl, major: "2",
			dropIn: strings.Replace(dropIn, localPullLine, "", 1), registry: reg})
		ref := encrypt("cri-transfer", ra["alice"], rb["bob"])
		_, err := criPull(t, c.sock, ref)
		if err == nil {
			t.Fatal("containerd's Transfer Service pulled and unpacked an encrypted image: the README's advice is stale")
		}
		if n := p.calls(t); n != 0 {
			t.Errorf("the Transfer Service pull called the provider %d times", n)
		}
		if !strings.Contains(err.Error(), noPayload) && !strings.Contains(err.Error(), "wrong diff id") {
			t.Fatalf("the Transfer Service pull failed otherwise than without a payload: %v", err)
		}
		t.Logf("CRI PullImage through the Transfer Service: %v", err)
	})

	t.Run("CRI PullImage through ocikp serve on a unix socket", func(t *testing.T) {
		kp := startServeUnix(t, p.bin, ksB)
		c := startContainerd(t, containerdSetup{bin: bin, nerdctl: nerdctl, major: "2",
			dropIn: p.containerdDropIn(t, "2", kp, ""), registry: reg})
		if _, err := criPull(t, c.sock, encrypt("cri-grpc", ra["alice"], rb["bob"])); err != nil {
			t.Fatalf("PullImage with the service: %v\ncontainerd log:\n%s", err, tail(c.logs.String(), 20))
		}
		if _, err := criPull(t, c.sock, encrypt("cri-grpc-wrong", ra["alice"])); err == nil {
			t.Fatal("the CRI pulled an image encrypted only for alice through a service holding bob's key")
		}
	})

	// Last: the new key joins the decoder's keystore (bob's), which the
	// wrong-keystore subtests above count.
	t.Run("CRI PullImage of a post-quantum image", func(t *testing.T) {
		out, err := exec.Command(p.bin, "--keystore", ksB, "keygen", "--type", "mlkem768x25519", "bob-pq").Output()
		if err != nil {
			t.Fatal(err)
		}
		ref := encrypt("cri-pq", strings.TrimSpace(string(out)))
		if _, err := criPull(t, c.sock, ref); err != nil {
			t.Fatalf("PullImage: %v\ncontainerd log:\n%s", err, tail(c.logs.String(), 20))
		}
		if n := p.calls(t); n != layers {
			t.Errorf("the CRI pull called the provider %d times for %d layers", n, layers)
		}
	})
}

func (c *containerd) nerdEnv(t *testing.T, env []string, args ...string) (string, error) {
	base := []string{"--address", c.sock, "--namespace", "ocikp-e2e", "--snapshotter", "native",
		"--data-root", filepath.Join(c.dir, "nerdctl"), "--insecure-registry"}
	return run(t, env, 3*time.Minute, c.nerdctl, append(base, args...)...)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
