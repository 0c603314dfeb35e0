package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ocikp/ocikp/internal/testkms"
)

// The real executable: certificates reload on SIGHUP, and SIGTERM ends it
// cleanly (exit 0).
func TestSIGHUPReloadAndSIGTERM(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "ocikp-serve")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	certA, keyA := testkms.SelfSignedFiles(t, t.TempDir())
	certB, keyB := testkms.SelfSignedFiles(t, t.TempDir())
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cp := func(from, to string) {
		b, _ := os.ReadFile(from)
		os.WriteFile(to, b, 0o600)
	}
	cp(certA, cert)
	cp(keyA, key)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--listen", addr, "--tls-cert", cert, "--tls-key", key, "--keystore", t.TempDir(), "--log-level", "warn")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	healthy := func(ca string) error {
		pem, _ := os.ReadFile(ca)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for healthy(certA) != nil {
		if time.Now().After(deadline) {
			t.Fatal("ocikp-serve did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cp(certB, cert)
	cp(keyB, key)
	cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(5 * time.Second)
	for healthy(certB) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the new certificate was not served after SIGHUP")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if healthy(certA) == nil {
		t.Fatal("the old certificate is still served")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}
