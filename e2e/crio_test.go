package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
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

// startCRIO runs CRI-O in a private root (vfs, its own sockets and state,
// tmpfs over the host-wide container paths) with the environment of the
// systemd drop-in "ocikp config --crio" printed, and a decryption keys
// directory holding keyFiles. It returns CRI-O's CRI socket.
func startCRIO(t *testing.T, reg, dropIn string, keyFiles map[string][]byte) (string, *testdaemon.Log) {
	crio := need(t, "crio")
	pinns := need(t, "pinns")
	need(t, "conmon")
	need(t, "crun")
	r := newContainersRoot(t, reg)
	dir, err := os.MkdirTemp("/tmp", "crio-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	keys := filepath.Join(dir, "keys")
	os.MkdirAll(keys, 0o700)
	for name, data := range keyFiles {
		os.WriteFile(filepath.Join(keys, name), data, 0o600)
	}
	for _, d := range []string{"cni", "hooks", "conf.d", "logs", "exits", "attach", "ns"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	// An empty crio.conf: CRI-O's defaults and the flags below, nothing
	// from the host's /etc/crio.
	os.WriteFile(filepath.Join(dir, "crio.conf"), nil, 0o644)
	_, env := serviceLines(dropIn)
	if len(env) == 0 {
		t.Fatalf("ocikp config --crio printed no Environment= line:\n%s", dropIn)
	}
	sock := filepath.Join(dir, "crio.sock")
	args := []string{"-m", "sh", "-c", hermeticScript, "sh", crio,
		"--config", filepath.Join(dir, "crio.conf"), "--config-dir", filepath.Join(dir, "conf.d"),
		"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", "vfs",
		"--listen", sock, "--stream-port", "0", "--cgroup-manager", "cgroupfs",
		"--pinns-path", pinns, "--signature-policy", r.policy, "--decryption-keys-path", keys,
		"--cni-config-dir", filepath.Join(dir, "cni"), "--cni-plugin-dir", filepath.Join(dir, "cni"),
		"--hooks-dir", filepath.Join(dir, "hooks"), "--disable-hostport-mapping",
		"--log-dir", filepath.Join(dir, "logs"), "--container-exits-dir", filepath.Join(dir, "exits"),
		"--container-attach-socket-dir", filepath.Join(dir, "attach"), "--namespaces-dir", filepath.Join(dir, "ns"),
		"--version-file", filepath.Join(dir, "version"), "--version-file-persist", filepath.Join(dir, "version-persist"),
		"--clean-shutdown-file", filepath.Join(dir, "clean.shutdown"), "--enable-metrics=false", "--log-level", "info"}
	cmd := exec.Command(need(t, "unshare"), args...)
	cmd.Env = append(append(os.Environ(), r.env...), env...)
	logs := testdaemon.Start(t, cmd)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if criVersion(sock) == nil {
			return sock, logs
		}
		if logs.Exited() || time.Now().After(deadline) {
			t.Fatalf("CRI-O did not answer on %s:\n%s", sock, tail(logs.String(), 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func criVersion(sock string) error {
	if _, err := os.Stat(sock); err != nil {
		return err
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
	return err
}

// unrelatedKey is a PEM private key that opens none of the test's layers,
// as a node may keep for another scheme in CRI-O's decryption_keys_path.
func unrelatedKey(t *testing.T) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// CRI-O v1.34 through its CRI socket: it decrypts in-process, so ocikp is
// enabled only by OCICRYPT_KEYPROVIDER_CONFIG in its environment (the
// drop-in "ocikp config --crio" prints), with no key parameters.
func TestCRIO(t *testing.T) {
	// A node runs ocikp-unwrap (docs/callers.md).
	p := newProviderExec(t, "ocikp", "ocikp-unwrap")
	sk := newSkopeo(t, p)
	reg := startRegistry(t)
	_, ra := p.keystore(t, "alice")
	ksB, rb := p.keystore(t, "bob")
	const layers = 3
	encrypt := encryptFor(t, p, sk, reg, ksB, layers)
	dropIn := func(kp, keystore string) string {
		args := []string{"config", "--crio", "--keyprovider-config", kp}
		if keystore != "" {
			args = append([]string{"--keystore", keystore}, args...)
		}
		out, err := exec.Command(p.bin, args...).Output()
		if err != nil {
			t.Fatalf("ocikp config --crio: %v", err)
		}
		return string(out)
	}

	t.Run("empty decryption keys directory", func(t *testing.T) {
		sock, logs := startCRIO(t, reg, dropIn(p.config, ksB), nil)
		if _, err := criPull(t, sock, encrypt("crio-good", ra["alice"], rb["bob"])); err != nil {
			t.Fatalf("PullImage: %v\nCRI-O log:\n%s", err, tail(logs.String(), 20))
		}
		checkCalls(t, p, "CRI-O's pull", layers)
		_, err := criPull(t, sock, encrypt("crio-wrong", ra["alice"]))
		p.calls(t)
		if err == nil || !strings.Contains(err.Error(), "ocikp: error: no key can decrypt this layer") {
			t.Fatalf("PullImage of an image only alice can open, bob's keystore: %v", err)
		}
		t.Logf("wrong-key error through CRI-O: %v", err)
	})

	t.Run("an unrelated key in the decryption keys directory", func(t *testing.T) {
		sock, logs := startCRIO(t, reg, dropIn(p.config, ksB), map[string][]byte{"other.pem": unrelatedKey(t)})
		if _, err := criPull(t, sock, encrypt("crio-other-key", ra["alice"], rb["bob"])); err != nil {
			t.Fatalf("PullImage: %v\nCRI-O log:\n%s", err, tail(logs.String(), 20))
		}
		checkCalls(t, p, "CRI-O's pull", layers)
	})

	t.Run("through ocikp serve on a unix socket", func(t *testing.T) {
		sock, logs := startCRIO(t, reg, dropIn(startServeUnix(t, p.bin, ksB), ""), nil)
		if _, err := criPull(t, sock, encrypt("crio-grpc", ra["alice"], rb["bob"])); err != nil {
			t.Fatalf("PullImage with the service: %v\nCRI-O log:\n%s", err, tail(logs.String(), 20))
		}
		if _, err := criPull(t, sock, encrypt("crio-grpc-wrong", ra["alice"])); err == nil {
			t.Fatal("CRI-O pulled an image encrypted only for alice through a service holding bob's key")
		}
	})
}
