package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	kpb "github.com/containers/ocicrypt/utils/keyprovider"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ocikp/ocikp/protocol"
)

// unwrapRequest is an unwrap request for f's key, with a 200-byte
// optsdata as grpcload sends.
func (f *fixture) unwrapRequest() []byte {
	params := wrapParams(f.recipient)
	params.Optsdata = make([]byte, 200)
	ann, err := f.provider.Wrap(params)
	if err != nil {
		f.t.Fatal(err)
	}
	req, _ := json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
		"dc": map[string]any{"Parameters": map[string]any{}}, "annotation": ann}})
	return req
}

// callServer is a server of f's provider (keys cached, as ocikp serve
// runs it), not listening: its calls are made directly.
func callServer(t testing.TB) (*Server, *fixture, []byte) {
	f := newFixture(t)
	f.provider.CacheKeys = true
	s, err := New(Config{Listen: "127.0.0.1:0", Provider: f.provider})
	if err != nil {
		t.Fatal(err)
	}
	return s, f, f.unwrapRequest()
}

// unwrapOnce makes one unwrap call as the transport would: admitted, then
// handled.
func (s *Server) unwrapOnce(t testing.TB, req []byte) {
	ctx, err := s.admit(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.call(ctx, protocol.OpKeyUnwrap, req); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkCall is the service's per-call work without the transport: the
// handler (admission, deadline, concurrency slot, metrics) around the
// core's decode, unwrap and encode, as ocikp serve runs it (keys cached).
// The core alone is keyprovider's BenchmarkServiceUnwrap.
func BenchmarkCall(b *testing.B) {
	s, _, req := callServer(b)
	b.ReportAllocs()
	for b.Loop() {
		s.unwrapOnce(b, req)
	}
}

// BenchmarkServiceUnwrap is one unwrap through the whole service in this
// process, client included: gRPC over a real unix socket (plaintext, as on
// a node) and over loopback TLS, one connection per client goroutine
// (-cpu sets how many run at once, times GOMAXPROCS).
func BenchmarkServiceUnwrap(b *testing.B) {
	for _, transport := range []string{"unix", "tls"} {
		b.Run(transport, func(b *testing.B) {
			f := newFixture(b)
			f.provider.CacheKeys = true
			cfg := Config{Listen: "unix://" + filepath.Join(b.TempDir(), "s.sock"), MaxConcurrent: 256}
			creds := insecure.NewCredentials()
			if transport == "tls" {
				p := newPKI(b, "server")
				cfg.Listen = "127.0.0.1:0"
				cfg.TLSCert, cfg.TLSKey = p.leaf("server", true)
				pem, err := os.ReadFile(p.CA)
				if err != nil {
					b.Fatal(err)
				}
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(pem)
				creds = credentials.NewTLS(&tls.Config{RootCAs: pool})
			}
			addr, _, _ := f.start(cfg)
			in := &kpb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: f.unwrapRequest()}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
				if err != nil {
					b.Error(err)
					return
				}
				defer conn.Close()
				c := kpb.NewKeyProviderServiceClient(conn)
				for pb.Next() {
					if _, err := c.UnWrapKey(context.Background(), in); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// The handler's own work around the core (admission, deadline, slot,
// metrics, the reply) allocates a small fixed number of times per call:
// the core's allocations are the decoder's and the crypto's business.
func TestCallAllocs(t *testing.T) {
	s, f, req := callServer(t)
	core := testing.AllocsPerRun(200, func() {
		r, err := protocol.DecodeRequest(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.provider.HandleContext(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	})
	call := testing.AllocsPerRun(200, func() { s.unwrapOnce(t, req) })
	t.Logf("allocations per call: %.0f in the core, %.0f more in the handler", core, call-core)
	// 16 measured (admission, deadline, slot, metrics, the reply); a
	// handler that formats, logs or copies per call goes well past it.
	if extra := call - core; extra > maxHandlerAllocs {
		t.Errorf("the handler allocates %.0f times per call beyond the core, want at most %d", extra, maxHandlerAllocs)
	}
}

const maxHandlerAllocs = 24

// A call's work runs on a kept worker: sequential calls start a few
// workers, not one each (a fresh goroutine grows its stack in every
// unwrap's cryptography).
func TestWorkersKept(t *testing.T) {
	s, _, req := callServer(t)
	const calls = 200
	for range calls {
		s.unwrapOnce(t, req)
	}
	n := s.workersStarted.Load()
	t.Logf("%d sequential calls started %d workers", calls, n)
	if n > calls/10 {
		t.Errorf("%d sequential calls started %d workers, want at most %d", calls, n, calls/10)
	}
}
