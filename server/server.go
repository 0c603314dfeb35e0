// Package server is ocikp's gRPC key provider service: ocicrypt's
// KeyProviderService (WrapKey, UnWrapKey, the exec protocol's JSON in one
// bytes field) on the same core as the exec path (package keyprovider).
//
// It is secure by default: plaintext only on a unix socket or a loopback
// address, TLS (optionally requiring client certificates) anywhere else
// unless --insecure is given; certificates reload without dropping
// connections. It links grpc-go, so it lives in its own executable,
// ocikp-serve, which `ocikp serve` runs.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	kpb "github.com/containers/ocicrypt/utils/keyprovider"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/safetext"
	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/protocol"
)

// Config is what the service runs with.
type Config struct {
	Listen   string // host:port or unix:///path
	TLSCert  string
	TLSKey   string
	ClientCA string // if set, clients must present a certificate it signed
	Insecure bool   // allow plaintext on a non-loopback TCP address

	RequestTimeout time.Duration // per call, from its headers: receiving the request is included (default 30s)
	MaxMessage     int           // bytes (default protocol.MaxRequestSize)
	MaxConcurrent  int           // calls served at once, and streams open at once on one connection (default 64)
	MaxPending     int64         // bytes for requests being received or waiting (default 2 × MaxConcurrent × (MaxMessage + 32 KiB))
	DrainTimeout   time.Duration // graceful shutdown limit (default 30s)
	MaxConns       int           // connections open at once (default 1024); more wait to be accepted
	IdleTimeout    time.Duration // a connection without calls for this long is closed (default 2m)

	Metrics         string // host:port or unix:///path for Prometheus metrics over HTTP ("" for none)
	MetricsInsecure bool   // allow Metrics on a non-loopback address

	Provider *keyprovider.Provider
	Log      *slog.Logger
}

// Listener describes a parsed --listen address.
type Listener struct {
	Network, Address string
	Local            bool // a unix socket or a loopback address
}

// ParseListen reads host:port or unix:///path.
func ParseListen(addr string) (Listener, error) {
	if p, ok := strings.CutPrefix(addr, "unix://"); ok {
		if !strings.HasPrefix(p, "/") {
			return Listener{}, errors.New("unix socket address must be absolute: unix:///path/to/sock")
		}
		return Listener{Network: "unix", Address: p, Local: true}, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return Listener{}, fmt.Errorf("listen address %.60q: want host:port or unix:///path", addr)
	}
	local := host == "localhost"
	if ip := net.ParseIP(host); ip != nil {
		local = ip.IsLoopback()
	}
	return Listener{Network: "tcp", Address: addr, Local: local}, nil
}

// Server is a configured service.
type Server struct {
	cfg     Config
	lis     Listener
	certs   *certs
	grpc    *grpc.Server
	health  *health.Server
	sem     chan struct{}
	pending *budget
	served  atomic.Int64
	m       *metrics
	// Idle workers wait here for a call's work (workers.go).
	jobs           chan job
	workersStarted atomic.Int64
}

// New checks the configuration and loads certificates.
func New(cfg Config) (*Server, error) {
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = protocol.MaxRequestSize
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 64
	}
	cost := int64(cfg.MaxMessage) + streamOverhead
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 2 * int64(cfg.MaxConcurrent) * cost
	}
	if cfg.MaxPending < cost {
		return nil, fmt.Errorf("--max-pending-bytes %d is less than one request (--max-message-bytes plus %d KiB: %d)", cfg.MaxPending, streamOverhead>>10, cost)
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 1024
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 2 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	lis, err := ParseListen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	useTLS := cfg.TLSCert != "" || cfg.TLSKey != ""
	switch {
	case useTLS && (cfg.TLSCert == "" || cfg.TLSKey == ""):
		return nil, errors.New("--tls-cert and --tls-key go together")
	case cfg.ClientCA != "" && !useTLS:
		return nil, errors.New("--client-ca needs --tls-cert and --tls-key")
	case !useTLS && !lis.Local && !cfg.Insecure:
		return nil, hint.Wrap(fmt.Errorf("refusing plaintext on %s: it is not a unix socket or a loopback address", cfg.Listen),
			"give --tls-cert and --tls-key (and --client-ca to require client certificates)", "or --insecure if a network layer you trust protects it")
	}
	if cfg.Metrics != "" {
		ml, err := ParseListen(cfg.Metrics)
		if err != nil {
			return nil, fmt.Errorf("--metrics: %w", err)
		}
		if !ml.Local && !cfg.MetricsInsecure {
			return nil, hint.Wrap(fmt.Errorf("refusing --metrics on %s: it is not a unix socket or a loopback address", cfg.Metrics),
				"serve metrics on 127.0.0.1:PORT or unix:///PATH (and scrape through a proxy)", "or add --metrics-insecure if a network layer you trust protects it")
		}
	}
	s := &Server{cfg: cfg, lis: lis, sem: make(chan struct{}, cfg.MaxConcurrent), health: health.NewServer(),
		pending: &budget{limit: cfg.MaxPending}, jobs: make(chan job)}
	s.m = newMetrics(s.pending)
	opts := append(TransportOptions(cfg.MaxMessage, cfg.MaxConcurrent),
		// Every stream reserves its share of the pending budget and gets
		// its deadline before its message is read (budget.go).
		grpc.InTapHandle(s.admit),
		grpc.MaxHeaderListSize(maxHeaderList),
		// A client that connects and says nothing is dropped; one that
		// stays connected without calls is closed when idle; one that
		// stops answering pings (gone, or its network) is closed.
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: cfg.IdleTimeout, Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	if useTLS {
		s.certs = &certs{certFile: cfg.TLSCert, keyFile: cfg.TLSKey, caFile: cfg.ClientCA}
		if err := s.certs.load(); err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.certs.config())))
	}
	s.grpc = grpc.NewServer(opts...)
	kpb.RegisterKeyProviderServiceServer(s.grpc, &service{s: s})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	return s, nil
}

// DefaultMaxMessage is the largest request by default (--max-message-bytes).
const DefaultMaxMessage = protocol.MaxRequestSize

// TransportOptions are the service's gRPC transport settings that cost or
// save CPU per call, apart from its limits and checks; internal/cmd/grpcfloor
// uses them too, so that the floor it measures has the same transport.
func TransportOptions(maxMessage, maxConcurrent int) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMessage + 1024), // the field plus protobuf framing
		grpc.MaxSendMsgSize(maxMessage + 1024),
		grpc.MaxConcurrentStreams(uint32(min(maxConcurrent, 1000))),
	}
}

// A connection silent for keepaliveTime is pinged, and closed (its streams
// with it) if the ping is not answered within keepaliveTimeout. Variables
// only so that a test can shorten them.
var (
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 10 * time.Second
)

// Reload rereads the TLS certificate, key and client CA; connections keep
// going, new handshakes use the new files.
func (s *Server) Reload() error {
	if s.certs == nil {
		return nil
	}
	return s.certs.load()
}

// Served returns the number of calls answered.
func (s *Server) Served() int64 { return s.served.Load() }

// Listen opens the listening socket (separate from Serve so that callers
// and tests know the address, e.g. for port 0).
func (s *Server) Listen() (net.Listener, error) {
	if s.lis.Network == "unix" {
		// A stale socket from a previous run would make Listen fail.
		if fi, err := os.Lstat(s.lis.Address); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(s.lis.Address)
		}
	}
	l, err := net.Listen(s.lis.Network, s.lis.Address)
	if err != nil {
		return nil, err
	}
	if s.lis.Network == "unix" {
		if err := os.Chmod(s.lis.Address, 0o660); err != nil {
			l.Close()
			return nil, err
		}
	}
	// "localhost" is looked up: if it resolves elsewhere (a changed
	// /etc/hosts), plaintext would be served off loopback.
	if s.certs == nil && !s.cfg.Insecure {
		if err := checkLoopback(l.Addr()); err != nil {
			l.Close()
			return nil, hint.Wrap(fmt.Errorf("refusing plaintext: --listen %s %w", s.cfg.Listen, err),
				"listen on 127.0.0.1:PORT or [::1]:PORT, or give --tls-cert and --tls-key")
		}
	}
	return netutil.LimitListener(l, s.cfg.MaxConns), nil
}

// checkLoopback refuses a TCP address that is not a loopback one.
func checkLoopback(a net.Addr) error {
	if ta, ok := a.(*net.TCPAddr); ok && !ta.IP.IsLoopback() {
		return fmt.Errorf("bound %s, which is not a loopback address", ta)
	}
	return nil
}

// Serve answers calls on l until ctx ends, then drains in-flight calls (up
// to DrainTimeout) and returns.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(kpb.KeyProviderService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(l) }()
	if s.cfg.Metrics != "" {
		stop, err := s.m.serve(s.cfg.Metrics, s.cfg.MetricsInsecure, s.cfg.Log)
		if err != nil {
			s.grpc.Stop()
			<-errc
			return err
		}
		defer stop()
	}
	// The bound address, not the flag: with port 0 the log is the only
	// place that tells where the service is.
	addr := s.cfg.Listen
	if s.lis.Network != "unix" {
		addr = l.Addr().String()
	}
	s.cfg.Log.Info("serving", "listen", addr, "tls", s.certs != nil, "client_certs", s.certs != nil && s.certs.caFile != "")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.health.Shutdown()
	s.cfg.Log.Info("shutting down: draining calls in flight", "limit", s.cfg.DrainTimeout)
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.DrainTimeout):
		s.cfg.Log.Warn("drain limit reached: stopping")
		s.grpc.Stop()
	}
	<-errc
	return nil
}

type service struct {
	kpb.UnimplementedKeyProviderServiceServer
	s *Server
}

func (v *service) WrapKey(ctx context.Context, in *kpb.KeyProviderKeyWrapProtocolInput) (*kpb.KeyProviderKeyWrapProtocolOutput, error) {
	return v.s.call(ctx, protocol.OpKeyWrap, in.GetKeyProviderKeyWrapProtocolInput())
}

func (v *service) UnWrapKey(ctx context.Context, in *kpb.KeyProviderKeyWrapProtocolInput) (*kpb.KeyProviderKeyWrapProtocolOutput, error) {
	return v.s.call(ctx, protocol.OpKeyUnwrap, in.GetKeyProviderKeyWrapProtocolInput())
}

// call runs one request on the shared core, bounded in concurrency and time.
// Errors carry the same text as the exec path's stderr, never request data.
func (s *Server) call(ctx context.Context, op string, data []byte) (out *kpb.KeyProviderKeyWrapProtocolOutput, err error) {
	start := time.Now()
	backend := ""
	defer func() { s.m.observe(op, backend, status.Code(err).String(), time.Since(start)) }()
	// The message is in: the stream keeps only its size of the budget. The
	// deadline was set when its headers arrived (admit); this one only
	// matters to a call that did not come through the transport.
	received(ctx, len(data))
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > s.cfg.RequestTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.RequestTimeout)
		defer cancel()
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, s.done(op, start, status.FromContextError(ctx.Err()).Err())
	}
	// From here the slot and the in-flight gauge belong to the work, which
	// may outlive this handler: they are released when it really ends.
	s.m.inFlight.Inc()
	req, err := protocol.DecodeRequest(data)
	if err == nil && req.Op != op {
		err = fmt.Errorf("%w: op %q sent to the %s method", protocol.ErrMalformed, req.Op, op)
	}
	if err != nil {
		s.m.inFlight.Dec()
		<-s.sem
		return nil, s.done(op, start, status.Error(codes.InvalidArgument, s.message(err)))
	}
	rc := make(chan result, 1)
	s.dispatch(job{ctx, req, rc})
	select {
	case r := <-rc:
		backend = r.backend
		if r.err != nil {
			return nil, s.done(op, start, status.Error(codes.FailedPrecondition, s.message(r.err)))
		}
		s.served.Add(1)
		s.done(op, start, nil)
		return &kpb.KeyProviderKeyWrapProtocolOutput{KeyProviderKeyWrapProtocolOutput: r.reply}, nil
	case <-ctx.Done():
		// The backend keeps its goroutine until it returns; the caller is
		// answered now.
		return nil, s.done(op, start, status.FromContextError(ctx.Err()).Err())
	}
}

func (s *Server) done(op string, start time.Time, err error) error {
	// Checked first: the arguments would be built (and allocated) for
	// every call even when debug logging is off.
	if s.cfg.Log.Enabled(context.Background(), slog.LevelDebug) {
		s.cfg.Log.Debug("call", "op", op, "code", status.Code(err).String(), "duration", time.Since(start))
	}
	return err
}

// message is the error as the exec path prints it: the error, then hints.
// The core already leaves keystore paths and key names out of what it
// tells remote clients; the keystore path is removed here once more, in
// case any error on the way carried it.
func (s *Server) message(err error) string {
	parts := []string{"ocikp: error: " + oneLine(err.Error())}
	for i, h := range hint.Of(err) {
		if i == 2 {
			break
		}
		parts = append(parts, "ocikp: hint: "+oneLine(h))
	}
	msg := strings.Join(parts, "\n")
	if p := s.cfg.Provider; p != nil && p.Store != nil && p.Store.Dir != "" {
		msg = strings.ReplaceAll(msg, p.Store.Dir, "the service's keystore")
	}
	return msg
}

// oneLine makes a message one printable line (see safetext).
func oneLine(s string) string {
	return safetext.Clean(strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " "))
}

// certs holds the current TLS material; handshakes read it through
// callbacks, so a reload takes effect without restarting the listener.
type certs struct {
	certFile, keyFile, caFile string
	mu                        sync.RWMutex
	cert                      *tls.Certificate
	pool                      *x509.CertPool
}

func (c *certs) load() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("loading the TLS certificate: %w", err)
	}
	var pool *x509.CertPool
	if c.caFile != "" {
		if pool, err = ReadCertPool(c.caFile); err != nil {
			return fmt.Errorf("the client CA: %w", err)
		}
	}
	c.mu.Lock()
	c.cert, c.pool = &cert, pool
	c.mu.Unlock()
	return nil
}

// ReadCertPool reads a PEM file of CA certificates; a file with none is an
// error, not an empty pool that would refuse every peer.
func ReadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", path)
	}
	return pool, nil
}

func (c *certs) config() *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c.mu.RLock()
		defer c.mu.RUnlock()
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}, Certificates: []tls.Certificate{*c.cert}}
		if c.pool != nil {
			cfg.ClientCAs, cfg.ClientAuth = c.pool, tls.RequireAndVerifyClientCert
		}
		return cfg, nil
	}
	return base
}
