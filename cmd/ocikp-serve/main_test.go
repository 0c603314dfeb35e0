package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	kpb "github.com/containers/ocicrypt/utils/keyprovider"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ocikp/ocikp/internal/testdaemon"
	"github.com/ocikp/ocikp/internal/testkms"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// bin builds the real executable once for the package's tests.
func bin(t *testing.T) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ocikp-serve-test")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ocikp-serve")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = &buildError{err, out}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return "build: " + e.err.Error() + "\n" + string(e.out) }

// tlsService runs ocikp-serve on a loopback port with certificate A in
// files it may later swap, until the test ends.
type tlsService struct {
	t           *testing.T
	addr        string
	cmd         *exec.Cmd
	cert, key   string
	certA, keyA string
	certB, keyB string
}

func startTLS(t *testing.T, args ...string) *tlsService {
	s := &tlsService{t: t}
	dir := t.TempDir()
	s.certA, s.keyA = testkms.SelfSignedFiles(t, t.TempDir())
	s.certB, s.keyB = testkms.SelfSignedFiles(t, t.TempDir())
	s.cert, s.key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	s.use(s.certA, s.keyA)
	s.cmd = exec.Command(bin(t), append([]string{"--listen", "127.0.0.1:0", "--tls-cert", s.cert, "--tls-key", s.key,
		"--keystore", t.TempDir()}, args...)...)
	logs := &testdaemon.Log{}
	s.cmd.Stderr = logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait() })
	s.addr = logs.Wait(t, testdaemon.Serving)
	s.waitFor(s.certA, "ocikp-serve did not come up")
	return s
}

// use puts a certificate and key in the served files (write and rename, as
// cert-manager and configuration tools do).
func (s *tlsService) use(cert, key string) {
	for from, to := range map[string]string{cert: s.cert, key: s.key} {
		b, err := os.ReadFile(from)
		if err != nil {
			s.t.Fatal(err)
		}
		os.WriteFile(to+".new", b, 0o600)
		os.Rename(to+".new", to)
	}
}

func conn(t *testing.T, addr, ca string) *grpc.ClientConn {
	pem, _ := os.ReadFile(ca)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func check(c *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// healthy reports whether a new connection trusting ca gets a health answer.
func (s *tlsService) healthy(ca string) error {
	c := conn(s.t, s.addr, ca)
	defer c.Close()
	return check(c)
}

func (s *tlsService) waitFor(ca, msg string) {
	deadline := time.Now().Add(10 * time.Second)
	for s.healthy(ca) != nil {
		if time.Now().After(deadline) {
			s.t.Fatal(msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The real executable: with polling off, certificates reload on SIGHUP and
// only then; SIGTERM ends it cleanly (exit 0).
func TestSIGHUPReloadAndSIGTERM(t *testing.T) {
	s := startTLS(t, "--reload-interval", "0")
	s.use(s.certB, s.keyB)
	time.Sleep(300 * time.Millisecond)
	if s.healthy(s.certA) != nil {
		t.Fatal("the certificate changed without SIGHUP while polling is off")
	}
	s.cmd.Process.Signal(syscall.SIGHUP)
	s.waitFor(s.certB, "the new certificate was not served after SIGHUP")
	if s.healthy(s.certA) == nil {
		t.Fatal("the old certificate is still served")
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

// Changed certificate files are picked up by polling, with no signal, and a
// connection opened before the change keeps working.
func TestCertificateFilesPolled(t *testing.T) {
	s := startTLS(t, "--reload-interval", "100ms")
	old := conn(t, s.addr, s.certA)
	defer old.Close()
	if err := check(old); err != nil {
		t.Fatal(err)
	}
	s.use(s.certB, s.keyB)
	s.waitFor(s.certB, "the changed certificate files were not picked up")
	if s.healthy(s.certA) == nil {
		t.Fatal("the old certificate is still served to new connections")
	}
	if err := check(old); err != nil {
		t.Fatalf("the connection opened before the change broke: %v", err)
	}
}

func runHealth(t *testing.T, args ...string) (stdout, stderr string, code int) {
	cmd := exec.Command(bin(t), append([]string{"health"}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// ocikp health: the probe for distroless images and unix sockets.
func TestHealthProbe(t *testing.T) {
	s := startTLS(t)
	if out, errOut, code := runHealth(t, "--grpc", s.addr, "--tls-ca", s.certA); code != 0 || out != "SERVING\n" || errOut != "" {
		t.Fatalf("TLS probe: exit %d, %q, %q", code, out, errOut)
	}
	if out, errOut, code := runHealth(t, "--grpc", s.addr, "--tls-ca", s.certA, "--service", "keyprovider.KeyProviderService"); code != 0 {
		t.Fatalf("probe of the key provider service: exit %d, %q, %q", code, out, errOut)
	}
	// A CA that did not sign the service's certificate: refused, one error line and a hint.
	_, errOut, code := runHealth(t, "--grpc", s.addr, "--tls-ca", s.certB, "--timeout", "1s")
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if code != 1 || len(lines) != 2 || !strings.HasPrefix(lines[0], "ocikp: error: "+s.addr+": no health answer") || !strings.HasPrefix(lines[1], "ocikp: hint: ") {
		t.Fatalf("wrong CA: exit %d, %q", code, errOut)
	}
	if _, errOut, code := runHealth(t, "--grpc", s.addr, "--tls-ca", s.certA, "--service", "no.such.Service"); code != 1 || !strings.Contains(errOut, "NotFound") {
		t.Fatalf("unknown service: exit %d, %q", code, errOut)
	}
	// Plaintext on a unix socket, the DaemonSet's case.
	sock := filepath.Join(t.TempDir(), "kp.sock")
	cmd := exec.Command(bin(t), "--listen", "unix://"+sock, "--keystore", t.TempDir(), "--log-level", "warn")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// Before the socket exists the probe fails at once, not at --timeout.
	start := time.Now()
	if _, errOut, code := runHealth(t, "--grpc", "unix://"+sock+".missing", "--timeout", "10s"); code != 1 ||
		!strings.HasPrefix(errOut, "ocikp: error: no service socket at "+sock+".missing") || time.Since(start) > 5*time.Second {
		t.Fatalf("missing socket: exit %d after %v, %q", code, time.Since(start), errOut)
	}
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		} else if i > 200 {
			t.Fatal("the service made no socket")
		}
		time.Sleep(25 * time.Millisecond)
	}
	if out, errOut, code := runHealth(t, "--grpc", "unix://"+sock, "--timeout", "10s"); code != 0 || out != "SERVING\n" {
		t.Fatalf("unix socket probe: exit %d, %q, %q", code, out, errOut)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if _, errOut, code := runHealth(t, "--grpc", "unix://"+sock, "--timeout", "300ms"); code != 1 || !strings.HasPrefix(errOut, "ocikp: error: ") {
		t.Fatalf("stopped service: exit %d, %q", code, errOut)
	}
	if _, _, code := runHealth(t, "--tls-cert", "c.pem"); code != 2 {
		t.Fatalf("--tls-cert without --tls-key: exit %d", code)
	}
}

// The service logs durations in seconds, under keys that say so.
func TestLogDurationsInSeconds(t *testing.T) {
	cmd := exec.Command(bin(t), "--listen", "127.0.0.1:0", "--keystore", t.TempDir(), "--log-level", "debug", "--drain-timeout", "7s")
	logs := testdaemon.Start(t, cmd)
	addr := logs.Wait(t, testdaemon.Serving)
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kpb.NewKeyProviderServiceClient(conn).UnWrapKey(ctx, &kpb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: []byte("{}")})
	cmd.Process.Signal(syscall.SIGTERM)
	logs.Wait(t, regexp.MustCompile(`"msg":"(stopped)"`)) // testdaemon waits for the process itself
	out := logs.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`"msg":"call",.*"duration_seconds":0\.\d+`),
		regexp.MustCompile(`"msg":"shutting down: draining calls in flight","limit_seconds":7\b`),
	} {
		if !want.MatchString(out) {
			t.Errorf("the log has no %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"duration":`) || strings.Contains(out, `"limit":`) {
		t.Errorf("a duration in nanoseconds:\n%s", out)
	}
}
