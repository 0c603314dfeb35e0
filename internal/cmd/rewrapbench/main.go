// Command rewrapbench measures "ocikp rewrap --add" against the fastest
// way to give a new recipient access without it: skopeo decrypting and
// re-encrypting the image in one copy and pushing it (scripts/bench-rewrap.sh
// builds and runs it). Both talk to a real local registry through a
// counting TCP proxy on loopback, which reports the bytes each side sent.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ocikp/ocikp/internal/localreg"
)

func main() {
	ocikp := flag.String("ocikp", "", "ocikp binary (ocikp-image beside it)")
	skopeo := flag.String("skopeo", "skopeo", "skopeo built with ocicrypt >= 1.1")
	registry := flag.String("registry", "docker-registry", "Debian's docker-registry")
	size := flag.Int64("size", 1<<30, "image size in bytes, all layers")
	layers := flag.Int("layers", 10, "layers")
	flag.Parse()
	if err := bench(*ocikp, *skopeo, *registry, *size, *layers); err != nil {
		fmt.Fprintln(os.Stderr, "rewrapbench:", err)
		os.Exit(1)
	}
}

// counter is a TCP proxy that counts the bytes clients send and receive.
type counter struct {
	sent, received atomic.Int64
	open           atomic.Int64 // connections not yet counted
}

// settle waits until every connection has closed and been counted.
func (c *counter) settle() {
	for i := 0; i < 200 && c.open.Load() > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *counter) serve(ln net.Listener, upstream string) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		c.open.Add(1)
		go func() {
			defer c.open.Add(-1)
			defer conn.Close()
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{})
			go func() {
				n, _ := io.Copy(up, conn)
				c.sent.Add(n)
				up.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			n, _ := io.Copy(conn, up)
			c.received.Add(n)
			<-done
		}()
	}
}

func (c *counter) reset() { c.sent.Store(0); c.received.Store(0) }

func pushImage(ref string, size int64, n int) error {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		return err
	}
	for range n {
		l, err := random.Layer(size/int64(n), types.OCILayer)
		if err != nil {
			return err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return err
		}
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(r, img)
}

func run(env []string, bin string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return nil
}

func bench(ocikp, skopeo, registryBin string, size int64, layers int) error {
	dir, err := os.MkdirTemp("", "rewrapbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	reg, regCmd, err := localreg.Start(registryBin, dir)
	if err != nil {
		return err
	}
	defer regCmd.Process.Kill()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	c := &counter{}
	go c.serve(ln, reg)
	via := ln.Addr().String()

	ks := filepath.Join(dir, "keys")
	recips := map[string]string{}
	for _, k := range []string{"alice", "bob"} {
		out, err := exec.Command(ocikp, "--keystore", ks, "keygen", k).Output()
		if err != nil {
			return fmt.Errorf("keygen: %v", err)
		}
		recips[k] = strings.TrimSpace(string(out))
	}
	kpConfig := filepath.Join(dir, "ocicrypt.json")
	out, err := exec.Command(ocikp, "config", "--keystore", ks).Output()
	if err != nil {
		return err
	}
	os.WriteFile(kpConfig, out, 0o644)
	policy := filepath.Join(dir, "policy.json")
	os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644)
	env := []string{"OCICRYPT_KEYPROVIDER_CONFIG=" + kpConfig}

	fmt.Printf("image: %d layers, %d MiB in all, on a local registry (docker-registry), through a counting proxy on loopback\n", layers, size>>20)
	t0 := time.Now()
	if err := pushImage(reg+"/app:plain", size, layers); err != nil {
		return err
	}
	skopeoArgs := func(extra ...string) []string {
		return append([]string{"--policy", policy, "copy", "--src-tls-verify=false", "--dest-tls-verify=false"}, extra...)
	}
	if err := run(env, skopeo, skopeoArgs("--encryption-key", "provider:ocikp:"+recips["alice"], "docker://"+reg+"/app:plain", "docker://"+reg+"/app:enc")...); err != nil {
		return err
	}
	if err := run(env, skopeo, skopeoArgs("docker://"+reg+"/app:enc", "docker://"+reg+"/app:enc2")...); err != nil {
		return err
	}
	fmt.Printf("set-up (push, encrypt for alice): %.1fs\n", time.Since(t0).Seconds())

	type result struct {
		what           string
		wall           time.Duration
		sent, received int64
	}
	measure := func(what string, f func() error) (result, error) {
		c.reset()
		start := time.Now()
		err := f()
		c.settle()
		r := result{what, time.Since(start), c.sent.Load(), c.received.Load()}
		if err == nil {
			fmt.Printf("%-52s %8.3fs  sent %12d bytes  received %12d bytes\n", what+":", r.wall.Seconds(), r.sent, r.received)
		}
		return r, err
	}
	a, err := measure("ocikp rewrap --add bob", func() error {
		return run(nil, ocikp, "--keystore", ks, "rewrap", "--tls-verify=false", "--add", recips["bob"], "docker://"+via+"/app:enc")
	})
	if err != nil {
		return err
	}
	// skopeo refuses --decryption-key with --encryption-key in one copy:
	// decrypt to a local layout, then encrypt for both and push.
	b, err := measure("skopeo: decrypt to oci:, re-encrypt for both, push", func() error {
		local := "oci:" + filepath.Join(dir, "plain") + ":x"
		if err := run(env, skopeo, skopeoArgs("--decryption-key", "provider:ocikp", "docker://"+via+"/app:enc2", local)...); err != nil {
			return err
		}
		return run(env, skopeo, skopeoArgs("--encryption-key", "provider:ocikp:"+recips["alice"],
			"--encryption-key", "provider:ocikp:"+recips["bob"], local, "docker://"+via+"/app:reenc")...)
	})
	if err != nil {
		return err
	}
	fmt.Printf("rewrap against skopeo: %.0fx less wall time, %.0fx fewer bytes sent, %.0fx fewer bytes received\n",
		b.wall.Seconds()/a.wall.Seconds(), float64(b.sent)/float64(max(a.sent, 1)), float64(b.received)/float64(max(a.received, 1)))
	return nil
}
