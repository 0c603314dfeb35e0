package gcpkms

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/testkms"
)

const (
	keyName = "projects/p/locations/global/keyRings/r/cryptoKeys/k"
	keyURL  = "gcpkms://" + keyName
)

func newBackend(t *testing.T, timeout time.Duration) (*Backend, *testkms.GCP) {
	fake := testkms.StartGCP(t, keyName)
	t.Setenv(EnvEndpoint, fake.Addr)
	t.Setenv(EnvInsecure, "1")
	o, err := OptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	o.Timeout = timeout
	b := New(o)
	t.Cleanup(func() { b.Close() })
	return b, fake
}

func TestParseURL(t *testing.T) {
	for _, c := range []struct {
		in      string
		name    string
		version bool
	}{
		{keyURL, keyName, false},
		{keyURL + "/cryptoKeyVersions/3", keyName + "/cryptoKeyVersions/3", true},
	} {
		name, v, err := ParseURL(c.in)
		if err != nil || name != c.name || v != c.version {
			t.Errorf("%s: %q %v %v", c.in, name, v, err)
		}
	}
	for _, bad := range []string{"", "gcpkms://", "gcpkms://projects/p", "awskms://" + keyName,
		"gcpkms://projects//locations/l/keyRings/r/cryptoKeys/k", "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k?x",
		"gcpkms://project/p/locations/l/keyRings/r/cryptoKeys/k", keyURL + "/cryptoKeyVersions"} {
		if _, _, err := ParseURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestWrapUnwrap(t *testing.T) {
	b, fake := newBackend(t, 5*time.Second)
	fk := bytes.Repeat([]byte{9}, 32)
	s, err := b.Wrap(keyURL, fk)
	if err != nil {
		t.Fatal(err)
	}
	if s.Type != StanzaType || s.KID != keyURL || bytes.Contains(s.Key, fk) {
		t.Fatalf("stanza %+v", s)
	}
	got, err := b.Unwrap(s)
	if err != nil || !bytes.Equal(got, fk) {
		t.Fatalf("unwrap: %v", err)
	}
	if fake.Calls("Encrypt") != 1 || fake.Calls("Decrypt") != 1 {
		t.Fatalf("calls: %d encrypt, %d decrypt", fake.Calls("Encrypt"), fake.Calls("Decrypt"))
	}
	// The additional data binds the stanza to the format: a ciphertext made
	// without it does not unwrap.
	raw, _ := fake.Seal(keyName, fk, nil)
	if _, err := b.Unwrap(&envelope.Stanza{Type: StanzaType, KID: keyURL, Key: raw}); err == nil {
		t.Fatal("unwrapped a ciphertext without the envelope's additional data")
	}
}

func TestLegacySeedBlob(t *testing.T) {
	b, fake := newBackend(t, 5*time.Second)
	opts := []byte(`{"symkey":"seed"}`)
	ct, _ := fake.Seal(keyName, opts, nil)
	blob, _ := json.Marshal(map[string]any{"key_url": keyURL, "wrapped_key": ct, "wrap_type": "AES"})
	if !IsLegacy(blob) {
		t.Fatal("not detected")
	}
	got, err := b.OpenLegacy(blob)
	if err != nil || !bytes.Equal(got, opts) {
		t.Fatalf("got %q, %v", got, err)
	}
	for _, bad := range []string{`{`, `{"key_url":"x","wrapped_key":"AA==","wrap_type":"RSA"}`, `{"key_url":"x","wrapped_key":"","wrap_type":"AES"}`} {
		if _, err := b.OpenLegacy([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestErrors(t *testing.T) {
	b, fake := newBackend(t, 5*time.Second)
	fk := bytes.Repeat([]byte{1}, 32)
	s, err := b.Wrap(keyURL, fk)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Wrap("gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/missing", fk)
	if err == nil || !strings.Contains(err.Error(), "key not found") {
		t.Errorf("missing key: %v", err)
	}
	for _, c := range []struct {
		code codes.Code
		want string
		hint string
	}{
		{codes.PermissionDenied, "permission denied: the caller needs cloudkms.cryptoKeyVersions.useToDecrypt", "roles/cloudkms.cryptoKeyDecrypter"},
		{codes.FailedPrecondition, "cannot be used (disabled, destroyed", "enable the key version"},
		{codes.Unauthenticated, "credentials missing, invalid or expired", "GOOGLE_APPLICATION_CREDENTIALS"},
		{codes.ResourceExhausted, "quota exceeded or throttled", "retry later"},
	} {
		fake.SetFault(c.code)
		fake.ResetCalls()
		_, err := b.Unwrap(s)
		// Quota refusals are retried with back-off (quota_test.go); no
		// other refusal is.
		if n := fake.Calls("Decrypt"); (n != 1) != (c.code == codes.ResourceExhausted) {
			t.Errorf("%v: %d attempts; only transient errors and quota refusals may be retried", c.code, n)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), keyURL) {
			t.Errorf("%v: %v", c.code, err)
		}
		if h := strings.Join(hint.Of(err), " "); !strings.Contains(h, c.hint) {
			t.Errorf("%v: hints %q", c.code, h)
		}
	}
	fake.SetFault(codes.OK)
	bad := *s
	bad.Key = append([]byte{}, s.Key...)
	bad.Key[len(bad.Key)-1] ^= 1
	if _, err := b.Unwrap(&bad); err == nil || !strings.Contains(err.Error(), "rejected") {
		t.Errorf("corrupted: %v", err)
	}
	if _, err := b.Unwrap(&envelope.Stanza{Type: "p256"}); !errors.Is(err, envelope.ErrIncorrectIdentity) {
		t.Errorf("foreign stanza: %v", err)
	}
}

// A hanging KMS yields a clear error within the deadline; an unavailable one
// is retried a bounded number of times within it.
func TestDeadlineAndRetries(t *testing.T) {
	b, fake := newBackend(t, 1500*time.Millisecond)
	s, err := b.Wrap(keyURL, bytes.Repeat([]byte{2}, 32))
	if err != nil {
		t.Fatal(err)
	}
	fake.SetHang(true)
	start := time.Now()
	_, err = b.Unwrap(s)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no answer in time") {
		t.Fatalf("hang: %v", err)
	}
	if took > 5*time.Second {
		t.Fatalf("hang: error after %v, deadline 1.5s", took)
	}
	fake.SetHang(false)
	fake.SetFault(codes.Unavailable)
	fake.ResetCalls()
	start = time.Now()
	_, err = b.Unwrap(s)
	took = time.Since(start)
	n := fake.Calls("Decrypt")
	t.Logf("unavailable: %d attempts in %v", n, took)
	if err == nil || took > 5*time.Second || n < 1 || n > 30 {
		t.Fatalf("unavailable: %v after %v and %d attempts", err, took, n)
	}
}

func FuzzParseURL(f *testing.F) {
	f.Add(keyURL)
	f.Add(keyURL + "/cryptoKeyVersions/1")
	f.Add("gcpkms://projects//x")
	f.Fuzz(func(t *testing.T, s string) {
		name, _, err := ParseURL(s)
		if err == nil && "gcpkms://"+name != s {
			t.Fatalf("%q parsed to %q", s, name)
		}
	})
}

// A KMS that cannot be reached yields a clear error within the deadline.
func TestUnreachable(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close() // nothing listens here now
	t.Setenv(EnvEndpoint, addr)
	t.Setenv(EnvInsecure, "1")
	o, err := OptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	o.Timeout = 2 * time.Second
	b := New(o)
	defer b.Close()
	start := time.Now()
	_, err = b.Wrap(keyURL, make([]byte, 32))
	took := time.Since(start)
	if err == nil || took > 6*time.Second || !(strings.Contains(err.Error(), "unreachable") || strings.Contains(err.Error(), "no answer in time")) {
		t.Fatalf("%v after %v", err, took)
	}
	t.Logf("%v (after %v)", err, took.Round(time.Millisecond))
}
