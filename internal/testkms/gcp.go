// Package testkms holds local stand-ins for cloud KMS services. It is test
// code: only tests import it. Each stand-in is a real server on a loopback
// port, driven by the vendor's real client library.
package testkms

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"hash/crc32"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// GCP is an in-process Cloud KMS: symmetric Encrypt and Decrypt with
// AES-256-GCM under per-key random keys, CRC32C checks as the real service
// does them, request counting and fault injection.
type GCP struct {
	kmspb.UnimplementedKeyManagementServiceServer
	base
	Addr string

	srv *grpc.Server
	// With TLS: the CA file to trust (SSL_CERT_FILE) and the bearer token
	// every request must carry.
	CAFile string
	token  string
	keys   map[string][]byte
	rsa    map[string]*rsa.PrivateKey // key version names
	fault  codes.Code
}

// StartGCP serves a fake KMS on 127.0.0.1 until the test ends. names are
// the key resource names it holds (projects/…/cryptoKeys/K).
func StartGCP(t testing.TB, names ...string) *GCP {
	g, err := NewGCP(names...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// StartGCPTLS serves a fake KMS over TLS that requires "Bearer token" on
// every request, as the real service does with real credentials.
func StartGCPTLS(t testing.TB, token string, names ...string) *GCP {
	certPEM, keyPEM, err := selfSigned()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	g, err := newGCP([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))}, names...)
	if err != nil {
		t.Fatal(err)
	}
	g.token = token
	g.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(g.CAFile, certPEM, 0o644)
	t.Cleanup(g.Close)
	return g
}

// SelfSignedFiles writes a self-signed certificate for 127.0.0.1 (its own
// CA) and its key into dir, for tests of TLS servers.
func SelfSignedFiles(t testing.TB, dir string) (certFile, keyFile string) {
	certPEM, keyPEM, err := selfSigned()
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, certPEM, 0o644)
	os.WriteFile(keyFile, keyPEM, 0o600)
	return certFile, keyFile
}

// selfSigned makes a certificate for 127.0.0.1.
func selfSigned() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "testkms"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// NewGCP serves a fake KMS on 127.0.0.1 until Close. Names with
// /cryptoKeyVersions/ are RSA_DECRYPT_OAEP_2048_SHA256 key versions.
func NewGCP(names ...string) (*GCP, error) { return newGCP(nil, names...) }

func newGCP(opts []grpc.ServerOption, names ...string) (*GCP, error) {
	g := &GCP{keys: map[string][]byte{}, rsa: map[string]*rsa.PrivateKey{}}
	g.init()
	for _, n := range names {
		if strings.Contains(n, "/cryptoKeyVersions/") {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				return nil, err
			}
			g.rsa[n] = k
			continue
		}
		k := make([]byte, 32)
		rand.Read(k)
		g.keys[n] = k
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g.Addr = l.Addr().String()
	g.srv = grpc.NewServer(opts...)
	kmspb.RegisterKeyManagementServiceServer(g.srv, g)
	go g.srv.Serve(l)
	return g, nil
}

// Close stops the server.
func (g *GCP) Close() {
	g.stop()
	g.srv.Stop()
}

// SetFault makes every request fail with code (codes.OK: none).
func (g *GCP) SetFault(c codes.Code) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fault = c
}

func (g *GCP) enter(ctx context.Context, method string) error {
	if g.token != "" {
		md, _ := metadata.FromIncomingContext(ctx)
		if a := md.Get("authorization"); len(a) != 1 || a[0] != "Bearer "+g.token {
			return status.Error(codes.Unauthenticated, "Request had invalid authentication credentials.")
		}
	}
	if g.count(ctx, method) && ctx.Err() != nil {
		return ctx.Err()
	}
	g.mu.Lock()
	fault := g.fault
	g.mu.Unlock()
	if fault != codes.OK {
		return status.Error(fault, "injected fault")
	}
	return nil
}

func crc(b []byte) *wrapperspb.Int64Value {
	return wrapperspb.Int64(int64(crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))))
}

func (g *GCP) aead(name string) (cipher.AEAD, error) {
	g.mu.Lock()
	k, ok := g.keys[name]
	g.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "CryptoKey %s not found.", name)
	}
	b, _ := aes.NewCipher(k)
	return cipher.NewGCM(b)
}

// Seal encrypts as Encrypt does, without a request: for making blobs that
// other writers (the GCP KMS key provider) produced.
func (g *GCP) Seal(name string, plaintext, aad []byte) ([]byte, error) {
	a, err := g.aead(name)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.NonceSize())
	rand.Read(nonce)
	return a.Seal(nonce, nonce, plaintext, aad), nil
}

// Encrypt implements KeyManagementServiceServer.
func (g *GCP) Encrypt(ctx context.Context, req *kmspb.EncryptRequest) (*kmspb.EncryptResponse, error) {
	if err := g.enter(ctx, "Encrypt"); err != nil {
		return nil, err
	}
	if req.PlaintextCrc32C != nil && req.PlaintextCrc32C.Value != crc(req.Plaintext).Value {
		return nil, status.Error(codes.InvalidArgument, "plaintext_crc32c mismatch")
	}
	ct, err := g.Seal(req.Name, req.Plaintext, req.AdditionalAuthenticatedData)
	if err != nil {
		return nil, err
	}
	return &kmspb.EncryptResponse{
		Name: req.Name + "/cryptoKeyVersions/1", Ciphertext: ct, CiphertextCrc32C: crc(ct),
		VerifiedPlaintextCrc32C:                   req.PlaintextCrc32C != nil,
		VerifiedAdditionalAuthenticatedDataCrc32C: req.AdditionalAuthenticatedDataCrc32C != nil,
	}, nil
}

// Decrypt implements KeyManagementServiceServer.
func (g *GCP) Decrypt(ctx context.Context, req *kmspb.DecryptRequest) (*kmspb.DecryptResponse, error) {
	if err := g.enter(ctx, "Decrypt"); err != nil {
		return nil, err
	}
	if req.CiphertextCrc32C != nil && req.CiphertextCrc32C.Value != crc(req.Ciphertext).Value {
		return nil, status.Error(codes.InvalidArgument, "ciphertext_crc32c mismatch")
	}
	a, err := g.aead(req.Name)
	if err != nil {
		return nil, err
	}
	n := a.NonceSize()
	if len(req.Ciphertext) < n {
		return nil, status.Error(codes.InvalidArgument, "Decryption failed: the ciphertext is invalid.")
	}
	pt, err := a.Open(nil, req.Ciphertext[:n], req.Ciphertext[n:], req.AdditionalAuthenticatedData)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "Decryption failed: the ciphertext is invalid.")
	}
	return &kmspb.DecryptResponse{Plaintext: pt, PlaintextCrc32C: crc(pt), UsedPrimary: true}, nil
}

func (g *GCP) rsaKey(name string) (*rsa.PrivateKey, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k, ok := g.rsa[name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "CryptoKeyVersion %s not found.", name)
	}
	return k, nil
}

// GetPublicKey implements KeyManagementServiceServer.
func (g *GCP) GetPublicKey(ctx context.Context, req *kmspb.GetPublicKeyRequest) (*kmspb.PublicKey, error) {
	if err := g.enter(ctx, "GetPublicKey"); err != nil {
		return nil, err
	}
	k, err := g.rsaKey(req.Name)
	if err != nil {
		return nil, err
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	p := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	return &kmspb.PublicKey{Pem: p, PemCrc32C: crc([]byte(p)), Name: req.Name,
		Algorithm: kmspb.CryptoKeyVersion_RSA_DECRYPT_OAEP_2048_SHA256}, nil
}

// AsymmetricDecrypt implements KeyManagementServiceServer.
func (g *GCP) AsymmetricDecrypt(ctx context.Context, req *kmspb.AsymmetricDecryptRequest) (*kmspb.AsymmetricDecryptResponse, error) {
	if err := g.enter(ctx, "AsymmetricDecrypt"); err != nil {
		return nil, err
	}
	k, err := g.rsaKey(req.Name)
	if err != nil {
		return nil, err
	}
	pt, err := rsa.DecryptOAEP(sha256.New(), nil, k, req.Ciphertext, nil)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "Decryption failed: the ciphertext is invalid.")
	}
	return &kmspb.AsymmetricDecryptResponse{Plaintext: pt, PlaintextCrc32C: crc(pt),
		VerifiedCiphertextCrc32C: req.CiphertextCrc32C != nil}, nil
}
