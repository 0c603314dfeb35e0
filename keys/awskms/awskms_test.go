package awskms

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/kmsplugin"
	"github.com/ocikp/ocikp/internal/testkms"
)

const keyID = "1234abcd-12ab-34cd-56ef-1234567890ab"

// Env points the real SDK at a fake on loopback: dummy credentials, no
// shared config, and never the instance metadata service.
func Env(t *testing.T, fake *testkms.AWS) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_KMS": fake.URL, "AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "secret",
		"AWS_REGION": "eu-central-1", "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_PROFILE": "", "AWS_SESSION_TOKEN": "", EnvProfile: "",
	} {
		t.Setenv(k, v)
	}
}

func newBackend(t *testing.T, timeout time.Duration) (*Backend, *testkms.AWS) {
	fake := testkms.StartAWS(t, []string{keyID}, map[string]string{"alias/layers": keyID})
	Env(t, fake)
	return New(timeout), fake
}

func TestParseURL(t *testing.T) {
	arn := "arn:aws:kms:us-west-2:111122223333:key/" + keyID
	for _, c := range []struct{ in, id, region, endpoint string }{
		{"awskms:///" + keyID, keyID, "", ""},
		{"awskms://" + keyID, keyID, "", ""},
		{"awskms:///" + arn, arn, "us-west-2", ""},
		{"awskms:///alias/layers?region=ap-south-1", "alias/layers", "ap-south-1", ""},
		{"awskms://alias/layers", "alias/layers", "", ""},
		{"awskms://kms.example.internal:4566/alias/layers", "alias/layers", "", "https://kms.example.internal:4566"},
		{"awskms:///" + arn + "?region=us-east-1", arn, "us-east-1", ""},
	} {
		k, err := ParseURL(c.in)
		if err != nil || k.KeyID != c.id || k.Region != c.region || k.Endpoint != c.endpoint {
			t.Errorf("%s: %+v %v", c.in, k, err)
		}
	}
	for _, bad := range []string{"", "awskms://", "awskms:///", "gcpkms:///x", "awskms:///alias/", "awskms:///x?foo=1",
		"awskms:///x?region=a&region=b", "awskms:///arn:aws:s3:::bucket", "awskms://u:p@host/x", "awskms:///a b"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestWrapUnwrap(t *testing.T) {
	b, fake := newBackend(t, 5*time.Second)
	fk := bytes.Repeat([]byte{7}, 32)
	for _, u := range []string{
		"awskms:///alias/layers",
		"awskms://" + keyID,
		"awskms:///arn:aws:kms:us-west-2:111122223333:key/" + keyID,
		"awskms:///alias/layers?region=ap-south-1",
	} {
		fake.ResetCalls()
		s, err := b.Wrap(u, fk)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if s.Type != StanzaType || s.KID != u || bytes.Contains(s.Key, fk) {
			t.Fatalf("stanza %+v", s)
		}
		got, err := b.Unwrap(s)
		if err != nil || !bytes.Equal(got, fk) {
			t.Fatalf("%s: unwrap: %v", u, err)
		}
		if fake.Calls("Encrypt") != 1 || fake.Calls("Decrypt") != 1 {
			t.Fatalf("%s: calls %d/%d", u, fake.Calls("Encrypt"), fake.Calls("Decrypt"))
		}
		want := "eu-central-1"
		if strings.Contains(u, "us-west-2") {
			want = "us-west-2"
		} else if strings.Contains(u, "ap-south-1") {
			want = "ap-south-1"
		}
		for _, r := range fake.Regions() {
			if r != want {
				t.Errorf("%s: signed for %s, want %s", u, r, want)
			}
		}
	}
}

func TestErrors(t *testing.T) {
	b, fake := newBackend(t, 5*time.Second)
	s, err := b.Wrap("awskms:///alias/layers", bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Wrap("awskms:///alias/missing", []byte("k")); err == nil || !strings.Contains(err.Error(), "key not found") {
		t.Errorf("missing: %v", err)
	}
	for _, c := range []struct {
		errType    string
		status     int
		want, hint string
		maxCalls   int
	}{
		{"AccessDeniedException", 400, "permission denied: the caller needs kms:Decrypt", "key policy", 1},
		{"DisabledException", 400, "cannot be used (disabled", "enable the key", 1},
		{"UnrecognizedClientException", 400, "credentials missing, invalid or expired", "AWS_PROFILE", 1},
		// Retried with back-off until the timeout (quota_test.go).
		{"ThrottlingException", 400, "throttled", "retry later", 20},
		{"KMSInternalException", 500, "KMSInternalException", "", 20},
	} {
		fake.SetFault(c.errType, c.status)
		fake.ResetCalls()
		_, err := b.Unwrap(s)
		if err == nil || !strings.Contains(err.Error(), "awskms:///alias/layers") {
			t.Fatalf("%s: %v", c.errType, err)
		}
		if n := fake.Calls("Decrypt"); n < 1 || n > c.maxCalls {
			t.Errorf("%s: %d attempts, want 1..%d", c.errType, n, c.maxCalls)
		}
		// Transient errors are retried with jittered backoff, which may run
		// into the deadline first: then the error says so instead.
		if c.maxCalls > 1 && strings.Contains(err.Error(), "no answer in time") {
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.errType, err)
		}
		if h := strings.Join(hint.Of(err), " "); !strings.Contains(h, c.hint) {
			t.Errorf("%s: hints %q", c.errType, h)
		}
	}
	fake.SetFault("", 0)
	// The encryption context binds the stanza: another context does not unwrap.
	bad := *s
	bad.Key = append([]byte{}, s.Key...)
	bad.Key[len(bad.Key)-1] ^= 1
	if _, err := b.Unwrap(&bad); err == nil || !strings.Contains(err.Error(), "rejected") {
		t.Errorf("corrupted: %v", err)
	}
	if _, err := b.Unwrap(&envelope.Stanza{Type: "gcpkms"}); !errors.Is(err, envelope.ErrIncorrectIdentity) {
		t.Errorf("foreign: %v", err)
	}
}

func TestDeadline(t *testing.T) {
	b, fake := newBackend(t, 1500*time.Millisecond)
	s, err := b.Wrap("awskms:///alias/layers", bytes.Repeat([]byte{2}, 32))
	if err != nil {
		t.Fatal(err)
	}
	fake.SetHang(true)
	start := time.Now()
	_, err = b.Unwrap(s)
	if took := time.Since(start); err == nil || !strings.Contains(err.Error(), "no answer in time") || took > 5*time.Second {
		t.Fatalf("hang: %v after %v", err, took)
	}
}

func FuzzParseURL(f *testing.F) {
	f.Add("awskms:///alias/layers?region=eu-west-1")
	f.Add("awskms://host:1/arn:aws:kms:r:1:key/x")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseURL(s)
		if err == nil && (k.KeyID == "" || k.URL != s) {
			t.Fatalf("%q: %+v", s, k)
		}
	})
}

func TestUnreachable(t *testing.T) {
	fake := testkms.StartAWS(t, []string{keyID}, nil)
	Env(t, fake)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	t.Setenv("AWS_ENDPOINT_URL_KMS", "http://"+l.Addr().String())
	l.Close()
	start := time.Now()
	_, err := New(3*time.Second).Wrap("awskms:///"+keyID, make([]byte, 32))
	if err == nil || time.Since(start) > 8*time.Second || !strings.Contains(strings.Join(hint.Of(err), " "), "network path") {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
}

// --aws-profile / OCIKP_AWS_PROFILE: credentials and region from a named
// profile in the shared config files.
func TestProfile(t *testing.T) {
	fake := testkms.StartAWS(t, []string{keyID}, nil)
	Env(t, fake)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config"), []byte("[profile layers]\nregion = ca-central-1\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "credentials"), []byte("[layers]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = s\n"), 0o600)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_REGION", "")
	t.Setenv(EnvProfile, "layers")
	if _, err := New(5*time.Second).Wrap("awskms:///"+keyID, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	if r := fake.Regions(); len(r) != 1 || r[0] != "ca-central-1" {
		t.Fatalf("signed for %v, want the profile's ca-central-1", r)
	}
	t.Setenv(EnvProfile, "nosuch")
	if _, err := New(5*time.Second).Wrap("awskms:///"+keyID, make([]byte, 32)); err == nil {
		t.Fatal("unknown profile accepted")
	}
}

// Target names every endpoint a call for the URL would use.
func FuzzTarget(f *testing.F) {
	f.Add("awskms://host:1/arn:aws:kms:us-east-1:1:key/x")
	f.Add("awskms:///alias/layers?region=eu-west-1")
	f.Add("awskms://KMS.Example:443/alias/x")
	f.Fuzz(func(t *testing.T, u string) {
		k, perr := ParseURL(u)
		tg, terr := New(time.Second).Target(u)
		if perr != nil || terr != nil {
			if perr == nil && k.Endpoint == "" {
				t.Fatalf("Target refused a URL without an endpoint: %q: %v", u, terr)
			}
			return
		}
		if k.Endpoint == "" && tg.Endpoint != "" || k.Endpoint != "" && tg.Endpoint == "" {
			t.Fatalf("endpoint %q, target %q", k.Endpoint, tg.Endpoint)
		}
		if k.Endpoint != "" {
			if n, _ := kmsplugin.NormalizeEndpoint(k.Endpoint); n != tg.Endpoint {
				t.Fatalf("endpoint %q, target %q", k.Endpoint, tg.Endpoint)
			}
		}
		if k.Region != "" && !regionPattern.MatchString(k.Region) {
			t.Fatalf("region %q passed", k.Region)
		}
	})
}
