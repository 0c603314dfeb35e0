package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/server"
)

// health asks a service for its gRPC health status: a probe for images and
// nodes that have no grpc_health_probe (distroless) and for unix sockets,
// which Kubernetes' built-in gRPC probe cannot dial. Exit 0 and "SERVING"
// when it serves; otherwise one error line and exit 1.
func health(args []string) int {
	fs := flag.NewFlagSet("ocikp health", flag.ContinueOnError)
	addr := fs.String("grpc", "unix:///run/ocikp/ocikp.sock", "service address: host:port or unix:///path")
	ca := fs.String("tls-ca", "", "CA of the service's certificate (TLS); plaintext without")
	cert := fs.String("tls-cert", "", "client certificate, for a service with --client-ca")
	key := fs.String("tls-key", "", "client key")
	serverName := fs.String("server-name", "", "name to verify in the service's certificate")
	service := fs.String("service", "", `service to ask about ("" is the whole server)`)
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if code, done := parseFlags(fs, args, "ocikp health [--grpc ADDR] [--tls-ca F [--tls-cert F --tls-key F] [--server-name N]] [--service S] [--timeout D]",
		"Ask an ocikp serve service whether it serves (gRPC health). Prints SERVING and exits 0, or one error line and exits 1: a probe for systemd, containers and Kubernetes."); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Errorf("unexpected argument %.40q", fs.Arg(0)), "health")
	}
	if (*cert == "") != (*key == "") {
		return usageError(errors.New("--tls-cert and --tls-key go together"), "health")
	}
	// A socket that is not there fails now, not at the end of --timeout.
	if p, ok := strings.CutPrefix(*addr, "unix://"); ok {
		if _, err := os.Stat(p); err != nil {
			return fail(hint.Wrap(fmt.Errorf("no service socket at %s: %w", p, err), "is ocikp serve running, and listening there (--listen unix://"+p+")?"))
		}
	}
	creds := insecure.NewCredentials()
	// ocikp doctor tells a bad local TLS file from a service that does not
	// answer by these errors' prefixes ("--tls-ca:", "client certificate:";
	// cmd/ocikp/testdata/script/doctor_grpc.txtar).
	if *ca != "" || *cert != "" || *serverName != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: *serverName}
		if *ca != "" {
			pool, err := server.ReadCertPool(*ca)
			if err != nil {
				return fail(fmt.Errorf("--tls-ca: %w", err))
			}
			cfg.RootCAs = pool
		}
		if *cert != "" {
			pair, err := tls.LoadX509KeyPair(*cert, *key)
			if err != nil {
				return fail(fmt.Errorf("client certificate: %w", err))
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fail(fmt.Errorf("%.80s: %w", *addr, err))
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: *service}, grpc.WaitForReady(false))
	if err != nil {
		return fail(hint.Wrap(fmt.Errorf("%.80s: no health answer within %v: %w", *addr, *timeout, err),
			"is ocikp serve running and listening there? (its log says \"serving\")"))
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return fail(fmt.Errorf("%.80s: %s", *addr, resp.Status))
	}
	fmt.Println("SERVING")
	return 0
}
