package server

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocicfg "github.com/containers/ocicrypt/config"
	kpconfig "github.com/containers/ocicrypt/config/keyprovider-config"
	ockp "github.com/containers/ocicrypt/keywrap/keyprovider"
	kpb "github.com/containers/ocicrypt/utils/keyprovider"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/soft"
)

type fixture struct {
	t         testing.TB
	provider  *keyprovider.Provider
	recipient string
}

func newFixture(t testing.TB) *fixture {
	st := &soft.Store{Dir: t.TempDir()}
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	k, err := st.Create("alice", priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, provider: &keyprovider.Provider{Name: "ocikp", Store: st}, recipient: k.Recipient}
}

// start runs a server until the test ends and returns its address as a
// client dials it, and a stop function.
func (f *fixture) start(cfg Config) (string, *Server, context.CancelFunc) {
	f.t.Helper()
	cfg.Provider = f.provider
	s, err := New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	l, err := s.Listen()
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	f.t.Cleanup(func() {
		cancel()
		<-done
	})
	addr := l.Addr().String()
	if s.lis.Network == "unix" {
		addr = "unix://" + s.lis.Address
	}
	return addr, s, cancel
}

// roundTrip wraps and unwraps through ocicrypt's own key provider client.
func (f *fixture) roundTrip(attrs kpconfig.KeyProviderAttrs) error {
	kw := ockp.NewKeyWrapper("ocikp", attrs)
	opts := []byte(`{"symkey":"grpc"}`)
	ann, err := kw.WrapKeys(&ocicfg.EncryptConfig{Parameters: map[string][][]byte{"ocikp": {[]byte(f.recipient)}}}, opts)
	if err != nil {
		return err
	}
	got, err := kw.UnwrapKey(&ocicfg.DecryptConfig{Parameters: map[string][][]byte{}}, ann)
	if err != nil {
		return err
	}
	if string(got) != string(opts) {
		f.t.Fatalf("round trip: %q", got)
	}
	return nil
}

func TestPlaintextUnixAndLoopback(t *testing.T) {
	f := newFixture(t)
	sock := filepath.Join(t.TempDir(), "kp.sock")
	addr, s, _ := f.start(Config{Listen: "unix://" + sock})
	if err := f.roundTrip(kpconfig.KeyProviderAttrs{Grpc: addr}); err != nil {
		t.Fatalf("unix: %v", err)
	}
	if fi, _ := os.Stat(sock); fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %o", fi.Mode().Perm())
	}
	addr, _, _ = f.start(Config{Listen: "127.0.0.1:0"})
	if err := f.roundTrip(kpconfig.KeyProviderAttrs{Grpc: addr}); err != nil {
		t.Fatalf("loopback: %v", err)
	}
	if s.Served() != 2 {
		t.Errorf("served %d", s.Served())
	}
}

func TestPlaintextRefusedOffLoopback(t *testing.T) {
	f := newFixture(t)
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", "192.0.2.1:9000", "example.com:443"} {
		if _, err := New(Config{Listen: addr, Provider: f.provider}); err == nil || !strings.Contains(err.Error(), "refusing plaintext") {
			t.Errorf("%s: %v", addr, err)
		}
	}
	if _, err := New(Config{Listen: "0.0.0.0:0", Insecure: true, Provider: f.provider}); err != nil {
		t.Errorf("--insecure: %v", err)
	}
	for _, bad := range []string{"unix://rel.sock", "nohost", ""} {
		if _, err := New(Config{Listen: bad, Provider: f.provider}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// pki makes a CA and leaf certificates on disk.
type pki struct {
	t    testing.TB
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	CA   string
}

func newPKI(t testing.TB, name string) *pki {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ := x509.ParseCertificate(der)
	p := &pki{t: t, dir: t.TempDir(), cert: cert, key: key}
	p.CA = p.write(name+"-ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(name, typ string, der []byte) string {
	path := filepath.Join(p.dir, name)
	os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
	return path
}

// leaf issues a certificate; server ones are for 127.0.0.1.
func (p *pki) leaf(name string, server bool) (certFile, keyFile string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	kder, _ := x509.MarshalECPrivateKey(key)
	return p.write(name+".pem", "CERTIFICATE", der), p.write(name+"-key.pem", "EC PRIVATE KEY", kder)
}

func TestTLSAndMutualTLS(t *testing.T) {
	f := newFixture(t)
	srvPKI, clientPKI, otherPKI := newPKI(t, "server"), newPKI(t, "clients"), newPKI(t, "other")
	cert, key := srvPKI.leaf("server", true)

	addr, _, _ := f.start(Config{Listen: "127.0.0.1:0", TLSCert: cert, TLSKey: key})
	if err := f.roundTrip(kpconfig.KeyProviderAttrs{Grpc: addr, GrpcTLS: &kpconfig.GrpcTLS{RootCAFile: srvPKI.CA}}); err != nil {
		t.Fatalf("TLS: %v", err)
	}
	if err := f.roundTrip(kpconfig.KeyProviderAttrs{Grpc: addr}); err == nil {
		t.Fatal("a plaintext client talked to the TLS server")
	}
	if err := f.roundTrip(kpconfig.KeyProviderAttrs{Grpc: addr, GrpcTLS: &kpconfig.GrpcTLS{RootCAFile: otherPKI.CA}}); err == nil {
		t.Fatal("a client trusting another CA accepted the server")
	}

	addr, _, _ = f.start(Config{Listen: "127.0.0.1:0", TLSCert: cert, TLSKey: key, ClientCA: clientPKI.CA})
	ccert, ckey := clientPKI.leaf("client", false)
	if err := f.roundTrip(kpconfig.KeyProviderAttrs{Grpc: addr, GrpcTLS: &kpconfig.GrpcTLS{RootCAFile: srvPKI.CA, CertFile: ccert, KeyFile: ckey}}); err != nil {
		t.Fatalf("mTLS: %v", err)
	}
	if err := f.roundTrip(kpconfig.KeyProviderAttrs{Grpc: addr, GrpcTLS: &kpconfig.GrpcTLS{RootCAFile: srvPKI.CA}}); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	wcert, wkey := otherPKI.leaf("intruder", false)
	if err := f.roundTrip(kpconfig.KeyProviderAttrs{Grpc: addr, GrpcTLS: &kpconfig.GrpcTLS{RootCAFile: srvPKI.CA, CertFile: wcert, KeyFile: wkey}}); err == nil {
		t.Fatal("a client certificate from the wrong CA was accepted")
	}
}

// A reload switches certificates for new handshakes while an open
// connection keeps working.
func TestReloadKeepsConnections(t *testing.T) {
	f := newFixture(t)
	oldPKI, newPKI2 := newPKI(t, "old"), newPKI(t, "new")
	cert, key := oldPKI.leaf("server", true)
	addr, s, _ := f.start(Config{Listen: "127.0.0.1:0", TLSCert: cert, TLSKey: key})
	conn := dialTLS(t, addr, oldPKI.CA)
	health := healthpb.NewHealthClient(conn)
	if r, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "keyprovider.KeyProviderService"}); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", r, err)
	}
	ncert, nkey := newPKI2.leaf("server", true)
	copyFile(t, ncert, cert)
	copyFile(t, nkey, key)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("the open connection broke on reload: %v", err)
	}
	if err := f.roundTrip(kpconfig.KeyProviderAttrs{Grpc: addr, GrpcTLS: &kpconfig.GrpcTLS{RootCAFile: newPKI2.CA}}); err != nil {
		t.Fatalf("new certificate not served: %v", err)
	}
}

func dialTLS(t *testing.T, addr, ca string) *grpc.ClientConn {
	pemData, _ := os.ReadFile(ca)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemData)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(to, b, 0o600)
}

func rawClient(t *testing.T, addr string, opts ...grpc.CallOption) kpb.KeyProviderServiceClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(opts...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return kpb.NewKeyProviderServiceClient(conn)
}

func TestBadMessages(t *testing.T) {
	f := newFixture(t)
	addr, _, _ := f.start(Config{Listen: "127.0.0.1:0"})
	c := rawClient(t, addr, grpc.MaxCallSendMsgSize(4<<20))
	for name, c2 := range map[string]struct {
		data []byte
		code codes.Code
		want string
	}{
		"malformed": {[]byte(`{"op":`), codes.InvalidArgument, "ocikp: error: malformed key provider request"},
		"wrong op":  {[]byte(`{"op":"keyunwrap","keyunwrapparams":{"annotation":"eA=="}}`), codes.InvalidArgument, "sent to the keywrap method"},
		"no key":    {[]byte(`{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"ocikp":["eA=="]}},"optsdata":"eA=="}}`), codes.FailedPrecondition, "ocikp: hint:"},
		"oversized": {make([]byte, 2<<20), codes.ResourceExhausted, ""},
	} {
		_, err := c.WrapKey(context.Background(), &kpb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: c2.data})
		if status.Code(err) != c2.code || !strings.Contains(status.Convert(err).Message(), c2.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// slowFixture makes unwraps take d, through a passphrase-protected key;
// entered receives once for each unwrap that has begun.
func slowFixture(t *testing.T, d time.Duration) (f *fixture, req []byte, entered chan struct{}) {
	f = newFixture(t)
	entered = make(chan struct{}, 16)
	st := &soft.Store{Dir: t.TempDir()}
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	k, _ := st.Create("slow", priv, []byte("pw"))
	f.provider = &keyprovider.Provider{Name: "ocikp", Store: st, Passphrase: func(string) ([]byte, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		time.Sleep(d)
		return []byte("pw"), nil
	}}
	f.recipient = k.Recipient
	ann, err := f.provider.Wrap(wrapParams(f.recipient))
	if err != nil {
		t.Fatal(err)
	}
	req = []byte(`{"op":"keyunwrap","keyunwrapparams":{"dc":{"Parameters":{}},"annotation":"` + b64(ann) + `"}}`)
	return f, req, entered
}

func TestDeadlineAndDrain(t *testing.T) {
	const hang = 1500 * time.Millisecond
	f, req, entered := slowFixture(t, hang)
	addr, _, _ := f.start(Config{Listen: "127.0.0.1:0", RequestTimeout: 300 * time.Millisecond})
	start := time.Now()
	_, err := rawClient(t, addr).UnWrapKey(context.Background(), &kpb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: req})
	if status.Code(err) != codes.DeadlineExceeded || time.Since(start) >= hang {
		t.Fatalf("hanging backend: %v after %v", err, time.Since(start))
	}

	// Shutdown with a call in flight: the call finishes.
	addr, _, stop := f.start(Config{Listen: "127.0.0.1:0"})
	c := rawClient(t, addr)
	errc := make(chan error, 1)
	go func() {
		_, err := c.UnWrapKey(context.Background(), &kpb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: req})
		errc <- err
	}()
	for len(entered) > 0 { // the first call's entry
		<-entered
	}
	<-entered // the call is in the provider, not merely sent
	stop()
	if err := <-errc; err != nil {
		t.Fatalf("call in flight at shutdown: %v", err)
	}

	// A client that cancels mid-call gets Canceled; the server carries on.
	addr, s, _ := f.start(Config{Listen: "127.0.0.1:0"})
	c = rawClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = c.UnWrapKey(ctx, &kpb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: req})
	if code := status.Code(err); code != codes.DeadlineExceeded && code != codes.Canceled {
		t.Fatalf("cancelled call: %v", err)
	}
	if _, err := c.UnWrapKey(context.Background(), &kpb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: req}); err != nil || s.Served() != 1 {
		t.Fatalf("after a cancel: %v (served %d)", err, s.Served())
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	maddr := l.Addr().String()
	l.Close()
	addr, _, _ := f.start(Config{Listen: "127.0.0.1:0", Metrics: maddr})
	if err := f.roundTrip(kpconfig.KeyProviderAttrs{Grpc: addr}); err != nil {
		t.Fatal(err)
	}
	rawClient(t, addr).WrapKey(context.Background(), &kpb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: []byte("{")})
	wants := []string{
		`ocikp_requests_total{backend="p256",op="keywrap",result="OK"} 1`,
		`ocikp_requests_total{backend="p256",op="keyunwrap",result="OK"} 1`,
		`ocikp_requests_total{backend="none",op="keywrap",result="InvalidArgument"} 1`,
		`ocikp_request_duration_seconds_count{op="keyunwrap"} 1`,
		`ocikp_requests_in_flight 0`,
	}
	lacking := func(body string) (l []string) {
		for _, want := range wants {
			if !strings.Contains(body, want) {
				l = append(l, want)
			}
		}
		return l
	}
	// The metrics listener starts beside the gRPC one, and a call is
	// counted out just after its reply is sent: poll, bounded.
	var body string
	for range 100 {
		if resp, err := http.Get("http://" + maddr + "/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if body = string(b); len(lacking(body)) == 0 {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range lacking(body) {
		t.Errorf("metrics lack %s", want)
	}
	if strings.Contains(body, "symkey") {
		t.Error("metrics contain request data")
	}
}

// Connections are capped (more wait to be accepted) and closed when idle.
func TestConnectionCapAndIdleTimeout(t *testing.T) {
	f := newFixture(t)
	const idle = 1500 * time.Millisecond
	addr, _, _ := f.start(Config{Listen: "127.0.0.1:0", MaxConns: 2, IdleTimeout: idle})
	dial := func() (*grpc.ClientConn, kpb.KeyProviderServiceClient) {
		c, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, kpb.NewKeyProviderServiceClient(c)
	}
	health := func(c *grpc.ClientConn, d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		_, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	c1, _ := dial()
	c2, _ := dial()
	c3, _ := dial()
	if err := health(c1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c1Idle := time.Now() // the server may close c1 from c1Idle+idle on
	if err := health(c2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// The probe must end before either connection can be closed as idle,
	// or a slow machine would let the third in through the idle close.
	probe := idle - time.Since(c1Idle) - 500*time.Millisecond
	if probe < 200*time.Millisecond {
		t.Fatalf("the first two calls took %v: no time left to probe the cap", time.Since(c1Idle))
	}
	if err := health(c3, probe); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a third connection was served: %v", err)
	}
	// Idle, the first two are closed by the server; the third gets in.
	if err := health(c3, 5*time.Second); err != nil {
		t.Fatalf("after the others went idle: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c1.GetState().String() == "READY" {
		if time.Now().After(deadline) {
			t.Fatal("an idle connection was not closed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// With TLS off, the address really bound must be a loopback one.
func TestCheckLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "0.0.0.0:1": false, "[::]:1": false, "192.0.2.1:1": false} {
		a, _ := net.ResolveTCPAddr("tcp", addr)
		if err := checkLoopback(a); (err == nil) != ok {
			t.Errorf("%s: %v", addr, err)
		}
	}
}

func TestMetricsAddressRule(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		metrics  string
		insecure bool
		ok       bool
	}{{"127.0.0.1:0", false, true}, {"unix:///tmp/m.sock", false, true}, {":9090", false, false}, {"0.0.0.0:9090", false, false}, {":9090", true, true}} {
		_, err := New(Config{Listen: "127.0.0.1:0", Metrics: c.metrics, MetricsInsecure: c.insecure, Provider: f.provider})
		if (err == nil) != c.ok {
			t.Errorf("--metrics %s (insecure %v): %v", c.metrics, c.insecure, err)
		}
	}
}
