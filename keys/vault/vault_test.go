package vault

import (
	"bytes"
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

func newBackend(t *testing.T, timeout time.Duration) (*Backend, *testkms.Vault) {
	fake := testkms.StartVault(t, "s.testtoken", "transit/layers", "kv-transit/other")
	t.Setenv("VAULT_ADDR", fake.URL)
	t.Setenv("VAULT_TOKEN", "s.testtoken")
	t.Setenv("VAULT_NAMESPACE", "")
	t.Setenv(EnvTokenFile, filepath.Join(t.TempDir(), "none"))
	return New(timeout), fake
}

func TestParseURL(t *testing.T) {
	for _, c := range []struct{ in, name, mount, addr string }{
		{"hashivault://layers", "layers", "transit", ""},
		{"hashivault://layers?mount=kv-transit", "layers", "kv-transit", ""},
		{"hashivault://layers?addr=https://vault.example:8200&mount=/team/transit/", "layers", "team/transit", "https://vault.example:8200"},
	} {
		k, err := ParseURL(c.in)
		if err != nil || k.Name != c.name || k.Mount != c.mount || k.Addr != c.addr {
			t.Errorf("%s: %+v %v", c.in, k, err)
		}
	}
	for _, bad := range []string{"", "hashivault://", "hashivault://a/b", "hashivault://k?addr=ftp://x", "hashivault://k?x=1",
		"hashivault://k?mount=..", "hashivault://k?mount=", "gcpkms://k", "hashivault://u@k"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestWrapUnwrap(t *testing.T) {
	b, fake := newBackend(t, 5*time.Second)
	fk := bytes.Repeat([]byte{5}, 32)
	for _, u := range []string{"hashivault://layers", "hashivault://other?mount=kv-transit", "hashivault://layers?addr=" + fake.URL} {
		fake.ResetCalls()
		s, err := b.Wrap(u, fk)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if s.Type != StanzaType || s.KID != u || !bytes.HasPrefix(s.Key, []byte("vault:v1:")) {
			t.Fatalf("stanza %+v", s)
		}
		got, err := b.Unwrap(s)
		if err != nil || !bytes.Equal(got, fk) {
			t.Fatalf("%s: %v", u, err)
		}
		if fake.Calls("encrypt") != 1 || fake.Calls("decrypt") != 1 {
			t.Fatalf("calls %d/%d", fake.Calls("encrypt"), fake.Calls("decrypt"))
		}
	}
}

func TestNamespaceAndTokenFile(t *testing.T) {
	_, fake := newBackend(t, 5*time.Second)
	t.Setenv("VAULT_NAMESPACE", "team-a")
	t.Setenv("VAULT_TOKEN", "")
	tf := filepath.Join(t.TempDir(), "token")
	if err := writeFile(tf, "s.testtoken\n"); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvTokenFile, tf)
	b := New(5 * time.Second)
	if _, err := b.Wrap("hashivault://layers", []byte("k")); err != nil {
		t.Fatal(err)
	}
	if ns := fake.Namespaces(); len(ns) != 1 || ns[0] != "team-a" {
		t.Fatalf("namespaces %v", ns)
	}
	t.Setenv(EnvTokenFile, filepath.Join(t.TempDir(), "none"))
	if _, err := New(time.Second).Wrap("hashivault://layers", []byte("k")); err == nil || !strings.Contains(err.Error(), "no Vault token") {
		t.Fatalf("no token: %v", err)
	}
}

func TestErrors(t *testing.T) {
	b, fake := newBackend(t, 5*time.Second)
	s, err := b.Wrap("hashivault://layers", bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Wrap("hashivault://missing", []byte("k")); err == nil || !strings.Contains(err.Error(), "key not found") {
		t.Errorf("missing: %v", err)
	}
	for _, c := range []struct {
		status        int
		want, hint    string
		min, maxCalls int
	}{
		{403, "permission denied: the token needs the update capability on transit/decrypt/layers", "policy", 1, 1},
		// Retried with back-off until the timeout (quota_test.go).
		{429, "rate limited", "retry later", 1, 30},
		{503, "sealed or unavailable", "unseal", 1, 30},
		{500, "HTTP 500", "", 1, 30},
	} {
		fake.SetFault(c.status)
		fake.ResetCalls()
		_, err := b.Unwrap(s)
		if c.maxCalls > 1 && err != nil && strings.Contains(err.Error(), "no answer in time") {
			continue // retries with backoff ran into the deadline: also a clear, bounded error
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%d: %v", c.status, err)
		}
		if h := strings.Join(hint.Of(err), " "); !strings.Contains(h, c.hint) {
			t.Errorf("%d: hints %q", c.status, h)
		}
		if n := fake.Calls("decrypt"); n < c.min || n > c.maxCalls {
			t.Errorf("%d: %d attempts, want %d..%d", c.status, n, c.min, c.maxCalls)
		}
	}
	fake.SetFault(0)
	bad := *s
	bad.Key = []byte(strings.Replace(string(s.Key), "vault:v1:", "vault:v1:A", 1))
	if _, err := b.Unwrap(&bad); err == nil || !strings.Contains(err.Error(), "rejected") {
		t.Errorf("corrupted: %v", err)
	}
	if _, err := b.Unwrap(&envelope.Stanza{Type: "awskms"}); err != envelope.ErrIncorrectIdentity {
		t.Errorf("foreign: %v", err)
	}
	fake.SetHang(true)
	hb := New(1500 * time.Millisecond)
	start := time.Now()
	if _, err := hb.Unwrap(s); err == nil || time.Since(start) > 8*time.Second {
		t.Fatalf("hang: %v after %v", err, time.Since(start))
	} else {
		t.Logf("hang: %v after %v", err, time.Since(start).Round(time.Millisecond))
	}
}

func FuzzParseURL(f *testing.F) {
	f.Add("hashivault://layers?addr=https://v:8200&mount=transit")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseURL(s)
		if err == nil && (k.Name == "" || k.Mount == "") {
			t.Fatalf("%q: %+v", s, k)
		}
	})
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

// Target names every address a call for the URL would use: the policy can
// only refuse what it is shown.
func FuzzTarget(f *testing.F) {
	f.Add("hashivault://layers?addr=https://v:8200&mount=transit")
	f.Add("hashivault://k?addr=HTTP://127.0.0.1")
	f.Add("hashivault://k?addr=https://[::1]:8200/")
	f.Fuzz(func(t *testing.T, u string) {
		t.Setenv("VAULT_ADDR", "https://vault.example:8200")
		k, perr := ParseURL(u)
		tg, terr := (&Backend{}).Target(u)
		if perr != nil {
			if terr == nil {
				t.Fatalf("Target accepted what ParseURL refuses: %q", u)
			}
			return
		}
		if terr != nil {
			return // an address the policy cannot name is refused
		}
		if tg.Mount != k.Mount {
			t.Fatalf("mount %q, target %q", k.Mount, tg.Mount)
		}
		if k.Addr != "" {
			n, err := kmsplugin.NormalizeEndpoint(k.Addr)
			if err != nil || (tg.Endpoint != n && !(tg.Endpoint == "" && n == "https://vault.example:8200")) {
				t.Fatalf("address %q, target %q", k.Addr, tg.Endpoint)
			}
		} else if tg.Endpoint != "" {
			t.Fatalf("no address, target %q", tg.Endpoint)
		}
	})
}

func TestParseURLRefusesPathTricks(t *testing.T) {
	for _, u := range []string{"hashivault://..", "hashivault://.hidden", "hashivault://k?mount=a/../b", "hashivault://k?mount=a//b", "hashivault://k?mount=./x"} {
		if _, err := ParseURL(u); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
}
