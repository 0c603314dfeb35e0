// Command grpcfloor is the transport floor for scripts/load-serve.sh: a
// gRPC server of the same service (ocicrypt's KeyProviderService), on the
// same kind of listener with the same TLS and the same transport options as
// ocikp serve, whose UnWrapKey does one P-256 ECDH (the private-key work
// every unwrap needs) and answers a fixed reply of a real reply's size, and
// nothing else: no JSON, no envelope, no metrics, no logging. Its CPU per
// call is what gRPC, TLS and one ECDH cost; an ocikp serve unwrap minus it
// is what ocikp itself adds.
//
//	grpcfloor -listen 127.0.0.1:0 [-tls-cert F -tls-key F]
//	grpcfloor -listen unix:///path
//
// It prints {"msg":"serving","listen":ADDR} on stderr once it listens, as
// ocikp serve logs it, and serves until SIGTERM or SIGINT.
package main

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	kpb "github.com/containers/ocicrypt/utils/keyprovider"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ocikp/ocikp/server"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback host:port or unix:///path")
	cert := flag.String("tls-cert", "", "server certificate (PEM)")
	key := flag.String("tls-key", "", "server private key (PEM)")
	flag.Parse()
	if err := run(*listen, *cert, *key); err != nil {
		fmt.Fprintln(os.Stderr, "grpcfloor:", err)
		os.Exit(1)
	}
}

// floor answers every call with one ECDH and a fixed reply.
type floor struct {
	kpb.UnimplementedKeyProviderServiceServer
	priv      *ecdh.PrivateKey
	peer      *ecdh.PublicKey
	wrapReply []byte
	reply     []byte
}

func newFloor() (*floor, error) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	peer, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	// The sizes of ocikp's replies for a 200-byte optsdata (grpcload's) and
	// one P-256 recipient: an annotation of about 560 bytes, and the
	// optsdata back.
	ann := base64.StdEncoding.EncodeToString(make([]byte, 560))
	opts := base64.StdEncoding.EncodeToString(make([]byte, 200))
	return &floor{priv: priv, peer: peer.PublicKey(),
		wrapReply: []byte(`{"keywrapresults":{"annotation":"` + ann + `"}}`),
		reply:     []byte(`{"keyunwrapresults":{"optsdata":"` + opts + `"}}`),
	}, nil
}

func (f *floor) WrapKey(context.Context, *kpb.KeyProviderKeyWrapProtocolInput) (*kpb.KeyProviderKeyWrapProtocolOutput, error) {
	return &kpb.KeyProviderKeyWrapProtocolOutput{KeyProviderKeyWrapProtocolOutput: f.wrapReply}, nil
}

func (f *floor) UnWrapKey(context.Context, *kpb.KeyProviderKeyWrapProtocolInput) (*kpb.KeyProviderKeyWrapProtocolOutput, error) {
	if _, err := f.priv.ECDH(f.peer); err != nil {
		return nil, err
	}
	return &kpb.KeyProviderKeyWrapProtocolOutput{KeyProviderKeyWrapProtocolOutput: f.reply}, nil
}

func run(listen, certFile, keyFile string) error {
	lis, err := server.ParseListen(listen)
	if err != nil {
		return err
	}
	if !lis.Local {
		return errors.New("grpcfloor listens only on a unix socket or a loopback address")
	}
	f, err := newFloor()
	if err != nil {
		return err
	}
	opts := server.TransportOptions(server.DefaultMaxMessage, 256)
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return err
		}
		// ocikp serve's settings (server.TLSConfig): TLS 1.2 or later, h2.
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}, Certificates: []tls.Certificate{cert}})))
	}
	if lis.Network == "unix" {
		os.Remove(lis.Address)
	}
	l, err := net.Listen(lis.Network, lis.Address)
	if err != nil {
		return err
	}
	s := grpc.NewServer(opts...)
	kpb.RegisterKeyProviderServiceServer(s, f)
	addr := listen
	if lis.Network != "unix" {
		addr = l.Addr().String()
	}
	fmt.Fprintf(os.Stderr, "{\"msg\":\"serving\",\"listen\":%q}\n", strings.TrimSpace(addr))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { <-ctx.Done(); s.Stop() }()
	return s.Serve(l)
}
