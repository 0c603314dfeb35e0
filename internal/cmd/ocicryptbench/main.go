// Command ocicryptbench times ocicrypt's own key wrappers in process, as
// skopeo and containerd run them without a key provider: JWE with a P-256
// key and PKCS#7 with an RSA-2048 certificate, one wrap and one unwrap of a
// layer's 200-byte options each (scripts/bench.sh runs it). Like ocicrypt in
// a pull, each unwrap parses the private key it is given.
//
//	ocicryptbench [-runs 2000] [-layers 1,10,30,100] [-recipients 1,4,16,64]
//
// It prints one JSON object a line: table rows, then the cost-growth points
// (N unwraps in a row; wrap for N recipients and unwrap with the key's
// entry last among N). It lives apart from cmd/ocikp, which must not link
// ocicrypt's wrappers.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/containers/ocicrypt/config"
	"github.com/containers/ocicrypt/keywrap"
	"github.com/containers/ocicrypt/keywrap/jwe"
	"github.com/containers/ocicrypt/keywrap/pkcs7"

	"github.com/ocikp/ocikp/internal/benchrow"
)

func main() {
	runs := flag.Int("runs", 2000, "timed runs of each operation")
	layers := flag.String("layers", "", "cost growth: N unwraps in a row for each N (comma-separated)")
	recips := flag.String("recipients", "", "cost growth: wrap for N recipients and unwrap with the key last, for each N (comma-separated)")
	flag.Parse()
	if err := run(*runs, *layers, *recips); err != nil {
		fmt.Fprintln(os.Stderr, "ocicryptbench:", err)
		os.Exit(1)
	}
}

// scheme is one of ocicrypt's wrappers with its keys: recipients[i] is
// what encryption takes for key i, private[i] and certs[i] what decryption
// takes.
type scheme struct {
	name       string
	kw         keywrap.KeyWrapper
	recipients [][]byte
	private    [][]byte
	certs      [][]byte
	recipParam string
}

func (s *scheme) ec(n int) *config.EncryptConfig {
	return &config.EncryptConfig{Parameters: map[string][][]byte{s.recipParam: s.recipients[:n]}}
}

// dc decrypts with the key of recipient n-1, the last of n.
func (s *scheme) dc(n int) *config.DecryptConfig {
	p := map[string][][]byte{"privkeys": {s.private[n-1]}, "privkeys-passwords": {nil}}
	if s.certs != nil {
		p["x509s"] = [][]byte{s.certs[n-1]}
	}
	return &config.DecryptConfig{Parameters: p}
}

func newJWE(n int) (*scheme, error) {
	s := &scheme{name: "ocicrypt JWE, P-256 (ECDH-ES+A256KW)", kw: jwe.NewKeyWrapper(), recipParam: "pubkeys"}
	for range n {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			return nil, err
		}
		s.private = append(s.private, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		s.recipients = append(s.recipients, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	}
	return s, nil
}

func newPKCS7(n int) (*scheme, error) {
	s := &scheme{name: "ocicrypt PKCS#7, RSA-2048", kw: pkcs7.NewKeyWrapper(), recipParam: "x509s"}
	for i := range n {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: "ocicryptbench"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
		cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			return nil, err
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert})
		s.private = append(s.private, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
		s.recipients = append(s.recipients, certPEM)
		s.certs = append(s.certs, certPEM)
	}
	return s, nil
}

var opts = []byte(strings.Repeat("o", 200))

func (s *scheme) wrap(n int) ([]byte, error) { return s.kw.WrapKeys(s.ec(n), opts) }

func (s *scheme) unwrap(n int, packet []byte) error {
	got, err := s.kw.UnwrapKey(s.dc(n), packet)
	if err != nil {
		return err
	}
	if string(got) != string(opts) {
		return fmt.Errorf("%s: unwrap returned other bytes", s.name)
	}
	return nil
}

// timeIt runs f runs times after a few untimed runs.
func timeIt(runs int, f func() error) ([]time.Duration, error) {
	var d []time.Duration
	for i := range runs + runs/10 + 1 {
		t := time.Now()
		if err := f(); err != nil {
			return nil, err
		}
		if i > runs/10 {
			d = append(d, time.Since(t))
		}
	}
	return d, nil
}

func emit(r benchrow.Row, d []time.Duration) {
	sort.Slice(d, func(a, b int) bool { return d[a] < d[b] })
	r.Runs = len(d)
	r.Median = float64(d[len(d)/2]) / 1e6
	r.P90 = float64(d[len(d)*9/10]) / 1e6
	benchrow.Print(r)
}

func run(runs int, layers, recips string) error {
	ls, err := benchrow.Counts(layers)
	if err != nil {
		return err
	}
	rs, err := benchrow.Counts(recips)
	if err != nil {
		return err
	}
	maxR := 1
	for _, n := range rs {
		maxR = max(maxR, n)
	}
	j, err := newJWE(maxR)
	if err != nil {
		return err
	}
	p, err := newPKCS7(maxR)
	if err != nil {
		return err
	}
	for _, s := range []*scheme{j, p} {
		packet, err := s.wrap(1)
		if err != nil {
			return fmt.Errorf("%s wrap: %w", s.name, err)
		}
		d, err := timeIt(runs, func() error { _, err := s.wrap(1); return err })
		if err != nil {
			return err
		}
		emit(benchrow.Row{Section: "inprocess", Name: s.name + " wrap"}, d)
		if d, err = timeIt(runs, func() error { return s.unwrap(1, packet) }); err != nil {
			return err
		}
		emit(benchrow.Row{Section: "inprocess", Name: s.name + " unwrap"}, d)
	}
	// Fewer rounds for the growth points: each is a whole sequence.
	rounds := max(20, runs/20)
	for _, n := range ls {
		for _, s := range []*scheme{j, p} {
			packet, _ := s.wrap(1)
			d, err := timeIt(rounds, func() error {
				for range n {
					if err := s.unwrap(1, packet); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			emit(benchrow.Row{Plot: "layers", Line: s.name + " unwrap, in process", X: float64(n)}, d)
		}
	}
	for _, n := range rs {
		for _, s := range []*scheme{j, p} {
			packet, err := s.wrap(n)
			if err != nil {
				return err
			}
			d, err := timeIt(rounds, func() error { return s.unwrap(n, packet) })
			if err != nil {
				return err
			}
			emit(benchrow.Row{Plot: "recipients", Line: s.name + " unwrap, in process", X: float64(n)}, d)
			if d, err = timeIt(rounds, func() error { _, err := s.wrap(n); return err }); err != nil {
				return err
			}
			emit(benchrow.Row{Plot: "recipients", Line: s.name + " wrap, in process", X: float64(n)}, d)
		}
	}
	return nil
}
