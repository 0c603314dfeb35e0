package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/internal/testdaemon"
	"github.com/ocikp/ocikp/internal/testkms"
)

// startServe runs `ocikp serve` on a loopback port with a keystore and
// returns an ocicrypt config file pointing at it (with tlsArgs, TLS: the
// config then names tlsCA).
func startServe(t *testing.T, bin, keystore string, tlsCA string, tlsArgs ...string) string {
	addr, _ := testdaemon.Serve(t, exec.Command(bin, append([]string{"--keystore", keystore, "serve", "--listen", "127.0.0.1:0", "--name", "ocikp"}, tlsArgs...)...))
	cfgArgs := []string{"config", "--grpc", addr}
	if tlsCA != "" {
		cfgArgs = append(cfgArgs, "--tls-ca", tlsCA)
	}
	out, err := exec.Command(bin, cfgArgs...).Output()
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "ocicrypt-grpc.json")
	os.WriteFile(cfg, out, 0o644)
	return cfg
}

// Real skopeo v1.16.1 (ocicrypt 1.2: plaintext gRPC) against ocikp serve on
// a loopback port: several recipients, no key parameters, the wrong key.
func TestSkopeoGRPC(t *testing.T) {
	p := newProvider(t, "ocikp")
	sk := newSkopeo(t, p)
	reg := startRegistry(t)
	ksAB, r := p.keystore(t, "alice", "bob")
	ksC, _ := p.keystore(t, "carol")
	orig := pushImage(t, reg+"/grpc:1", 3)
	want := layerDigests(t, orig)

	good := startServe(t, p.bin, ksAB, "")
	bad := startServe(t, p.bin, ksC, "")
	run := func(cfg string, flags []string, src, dst string) (string, error) {
		sk.p = &provider{bin: p.bin, config: cfg, countFile: p.countFile}
		return sk.copy(t.TempDir(), flags, src, dst)
	}
	out, err := run(good, []string{"--encryption-key", "provider:ocikp:" + r["alice"], "--encryption-key", "provider:ocikp:" + r["bob"]},
		"docker://"+reg+"/grpc:1", "docker://"+reg+"/grpc:enc")
	if err != nil {
		t.Fatalf("encrypt over gRPC: %v\n%s", err, out)
	}
	m := remoteManifest(t, reg+"/grpc:enc")
	for _, l := range m.Layers {
		if !strings.HasSuffix(string(l.MediaType), "+encrypted") {
			t.Fatalf("layer not encrypted: %s", l.MediaType)
		}
	}
	dir := filepath.Join(t.TempDir(), "oci")
	out, err = run(good, []string{"--decryption-key", "provider:ocikp"}, "docker://"+reg+"/grpc:enc", "oci:"+dir+":out")
	if err != nil {
		t.Fatalf("decrypt over gRPC: %v\n%s", err, out)
	}
	if got := ociLayerDigests(t, dir); !slices.Equal(got, want) {
		t.Fatalf("layers %v, want %v", got, want)
	}
	out, err = run(bad, []string{"--decryption-key", "provider:ocikp"}, "docker://"+reg+"/grpc:enc", "oci:"+t.TempDir()+"/oci:out")
	if err == nil || !strings.Contains(out, "ocikp: error: no key can decrypt this layer") {
		t.Fatalf("wrong keystore over gRPC: %v\n%s", err, out)
	}
	t.Logf("wrong-key output through skopeo over gRPC:\n%s", out)
}

// skopeo v1.16.1 rebuilt on ocicrypt v1.3.2, whose key provider client speaks
// TLS (grpc-tls), against ocikp serve with a certificate.
func TestSkopeoGRPCTLS(t *testing.T) {
	p := newProvider(t, "ocikp")
	sk := newSkopeo(t, p)
	sk.bin = need(t, "skopeo-ocicrypt13")
	reg := startRegistry(t)
	ks, r := p.keystore(t, "alice")
	orig := pushImage(t, reg+"/tls:1", 3)
	want := layerDigests(t, orig)
	cert, key := testkms.SelfSignedFiles(t, t.TempDir())
	cfg := startServe(t, p.bin, ks, cert, "--tls-cert", cert, "--tls-key", key)
	sk.p = &provider{bin: p.bin, config: cfg, countFile: p.countFile}
	out, err := sk.copy(t.TempDir(), []string{"--encryption-key", "provider:ocikp:" + r["alice"]}, "docker://"+reg+"/tls:1", "docker://"+reg+"/tls:enc")
	if err != nil {
		t.Fatalf("encrypt over TLS: %v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "oci")
	out, err = sk.copy(t.TempDir(), []string{"--decryption-key", "provider:ocikp"}, "docker://"+reg+"/tls:enc", "oci:"+dir+":out")
	if err != nil {
		t.Fatalf("decrypt over TLS: %v\n%s", err, out)
	}
	if got := ociLayerDigests(t, dir); !slices.Equal(got, want) {
		t.Fatalf("layers %v, want %v", got, want)
	}
	// The same service refuses a client that does not trust its certificate.
	other, _ := testkms.SelfSignedFiles(t, t.TempDir())
	bad := filepath.Join(t.TempDir(), "bad.json")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(bad, []byte(strings.Replace(string(b), cert, other, 1)), 0o644)
	sk.p = &provider{bin: p.bin, config: bad, countFile: p.countFile}
	if out, err := sk.copy(t.TempDir(), []string{"--decryption-key", "provider:ocikp"}, "docker://"+reg+"/tls:enc", "oci:"+t.TempDir()+"/o:out"); err == nil {
		t.Fatalf("a client with the wrong CA decrypted:\n%s", out)
	}
}
