package azurekv

import (
	"bytes"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/kmsplugin"
	"github.com/ocikp/ocikp/internal/testkms"
)

func newBackend(t *testing.T, timeout time.Duration) (*Backend, *testkms.Azure, string) {
	fake := testkms.StartAzure(t, "tok-123", "layers")
	t.Setenv("SSL_CERT_FILE", fake.CAFile)
	t.Setenv(EnvAccessToken, "tok-123")
	u, _ := url.Parse(fake.URL)
	return New(timeout), fake, "azurekms://" + u.Host + "/layers"
}

func TestParseURL(t *testing.T) {
	for _, c := range []struct{ in, vault, name, version string }{
		{"azurekms://myvault.vault.azure.net/layers", "https://myvault.vault.azure.net", "layers", ""},
		{"azurekeyvault://myvault.vault.azure.net/layers/0123abcd", "https://myvault.vault.azure.net", "layers", "0123abcd"},
		{"azurekms://hsm.managedhsm.azure.net/k-1", "https://hsm.managedhsm.azure.net", "k-1", ""},
	} {
		k, err := ParseURL(c.in)
		if err != nil || k.VaultURL != c.vault || k.Name != c.name || k.Version != c.version {
			t.Errorf("%s: %+v %v", c.in, k, err)
		}
	}
	for _, bad := range []string{"", "azurekms://", "azurekms://v.vault.azure.net", "azurekms://v.vault.azure.net/", "azurekms://v/a/b/c",
		"azurekms://v/a?x=1", "azurekms://v/a_b", "gcpkms://v/a", "azurekms://u@v/a", "azurekms://v/a/"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestWrapUnwrap(t *testing.T) {
	b, fake, u := newBackend(t, 10*time.Second)
	fk := bytes.Repeat([]byte{3}, 32)
	s, err := b.Wrap(u, fk)
	if err != nil {
		t.Fatal(err)
	}
	// The wrapping key version is pinned in the stanza.
	if s.Type != StanzaType || s.KID != u+"/0123456789abcdef0123456789abcdef" || len(s.Key) != 256 {
		t.Fatalf("stanza %+v", s)
	}
	got, err := b.Unwrap(s)
	if err != nil || !bytes.Equal(got, fk) {
		t.Fatalf("unwrap: %v", err)
	}
	if fake.Calls("wrapkey") != 1 || fake.Calls("unwrapkey") != 1 {
		t.Fatalf("calls %d/%d", fake.Calls("wrapkey"), fake.Calls("unwrapkey"))
	}
}

func TestErrors(t *testing.T) {
	b, fake, u := newBackend(t, 10*time.Second)
	s, err := b.Wrap(u, bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Wrap(strings.Replace(u, "/layers", "/missing", 1), []byte("k")); err == nil || !strings.Contains(err.Error(), "key not found") {
		t.Errorf("missing: %v", err)
	}
	for _, c := range []struct {
		status     int
		want, hint string
		maxCalls   int
	}{
		{403, "permission denied: the caller needs the unwrapKey key permission", "Key Vault Crypto User", 1},
		{429, "throttled", "retry later", 4},
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
		if n := fake.Calls("unwrapkey"); n < 1 || n > c.maxCalls {
			t.Errorf("%d: %d attempts, want 1..%d", c.status, n, c.maxCalls)
		}
	}
	fake.SetFault(0)
	t.Setenv(EnvAccessToken, "wrong")
	if _, err := New(5 * time.Second).Unwrap(s); err == nil || !strings.Contains(err.Error(), "credentials missing, invalid or expired") {
		t.Errorf("wrong token: %v", err)
	}
	t.Setenv(EnvAccessToken, "tok-123")
	bad := *s
	bad.Key = append([]byte{}, s.Key...)
	bad.Key[10] ^= 1
	if _, err := b.Unwrap(&bad); err == nil || !strings.Contains(err.Error(), "rejected") {
		t.Errorf("corrupted: %v", err)
	}
	if _, err := b.Unwrap(&envelope.Stanza{Type: "gcpkms"}); err != envelope.ErrIncorrectIdentity {
		t.Errorf("foreign: %v", err)
	}
	fake.SetHang(true)
	start := time.Now()
	if _, err := New(1500 * time.Millisecond).Unwrap(s); err == nil || !strings.Contains(err.Error(), "no answer in time") || time.Since(start) > 8*time.Second {
		t.Errorf("hang: %v after %v", err, time.Since(start))
	}
}

func FuzzParseURL(f *testing.F) {
	f.Add("azurekms://v.vault.azure.net/k/1")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseURL(s)
		if err == nil && (k.Name == "" || !strings.HasPrefix(k.VaultURL, "https://")) {
			t.Fatalf("%q: %+v", s, k)
		}
	})
}

// DefaultAzureCredential with an environment service principal (client
// secret), against a fake Entra ID on the fake vault's address; instance
// discovery off as for a disconnected cloud, and the chain restricted to the
// environment credential so that nothing reaches for instance metadata.
func TestDefaultAzureCredentialEnvironment(t *testing.T) {
	fake := testkms.StartAzure(t, "tok-from-entra", "layers")
	t.Setenv("SSL_CERT_FILE", fake.CAFile)
	t.Setenv(EnvAccessToken, "")
	t.Setenv(EnvDisableInstanceDiscovery, "1")
	t.Setenv("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential")
	t.Setenv("AZURE_AUTHORITY_HOST", fake.URL)
	t.Setenv("AZURE_TENANT_ID", testkms.Tenant)
	t.Setenv("AZURE_CLIENT_ID", "11111111-1111-1111-1111-111111111111")
	t.Setenv("AZURE_CLIENT_SECRET", testkms.ClientSecret)
	u, _ := url.Parse(fake.URL)
	kurl := "azurekms://" + u.Host + "/layers"
	s, err := New(10*time.Second).Wrap(kurl, bytes.Repeat([]byte{8}, 32))
	if err != nil {
		t.Fatal(err)
	}
	if fake.TokenRequests() != 1 || fake.Calls("wrapkey") != 1 {
		t.Fatalf("%d token requests, %d wrapkey", fake.TokenRequests(), fake.Calls("wrapkey"))
	}
	t.Setenv("AZURE_CLIENT_SECRET", "wrong")
	_, err = New(10 * time.Second).Unwrap(s)
	if err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("wrong secret: %v", err)
	}
}

// Target names the vault a call for the URL goes to, and calls it Azure's
// own only under Azure's vault domains on port 443.
func FuzzTarget(f *testing.F) {
	f.Add("azurekms://v.vault.azure.net/k/1")
	f.Add("azurekms://v.vault.azure.net.evil.example/k")
	f.Add("azurekms://V.VAULT.AZURE.NET:443/k")
	f.Add("azurekms://v.vault.azure.net:8443/k")
	f.Fuzz(func(t *testing.T, u string) {
		k, perr := ParseURL(u)
		tg, terr := New(time.Second).Target(u)
		if perr != nil || terr != nil {
			return
		}
		n, err := kmsplugin.NormalizeEndpoint(k.VaultURL)
		if err != nil || n != tg.Endpoint {
			t.Fatalf("vault %q, target %q", k.VaultURL, tg.Endpoint)
		}
		if tg.Builtin {
			host := strings.TrimPrefix(tg.Endpoint, "https://")
			ok := false
			for _, d := range []string{".vault.azure.net:443", ".managedhsm.azure.net:443", ".vault.azure.cn:443", ".managedhsm.azure.cn:443",
				".vault.usgovcloudapi.net:443", ".managedhsm.usgovcloudapi.net:443"} {
				label, found := strings.CutSuffix(host, d)
				ok = ok || (found && label != "" && !strings.ContainsAny(label, ".:[]%@"))
			}
			if !ok {
				t.Fatalf("%q taken for Azure's own", tg.Endpoint)
			}
		}
	})
}

func TestTargetAzureDomains(t *testing.T) {
	for u, builtin := range map[string]bool{
		"azurekms://myvault.vault.azure.net/k":            true,
		"azurekms://MyVault.Vault.Azure.Net/k":            true,
		"azurekms://hsm.managedhsm.azure.net/k/1":         true,
		"azurekms://v.vault.azure.cn/k":                   true,
		"azurekms://v.vault.usgovcloudapi.net/k":          true,
		"azurekms://v.vault.azure.net:8443/k":             false,
		"azurekms://v.vault.azure.net.attacker.example/k": false,
		"azurekms://vault.azure.net/k":                    false,
		"azurekms://a.b.vault.azure.net/k":                false,
		"azurekms://127.0.0.1:8443/k":                     false,
		"azurekeyvault://attackervault.vault.azure.net/k": true,
	} {
		tg, err := New(time.Second).Target(u)
		if err != nil || tg.Builtin != builtin {
			t.Errorf("%s: builtin %v, %v; want %v", u, tg.Builtin, err, builtin)
		}
	}
}
