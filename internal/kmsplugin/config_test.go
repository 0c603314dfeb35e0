package kmsplugin

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	c, err := parseConfig([]byte(`{"timeout":"5s","gcp":{"credentials_file":"/c.json"},"vault":{"addr":"https://v:8200","namespace":"ns"}}`))
	if err != nil || c.Timeout != "5s" || c.GCP.CredentialsFile != "/c.json" || c.Vault.Namespace != "ns" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []string{`{"gcp":{"credentals_file":"x"}}`, `{"timeout":"soon"}`, `{} {}`, `[`, `{"aws":[]}`} {
		if _, err := parseConfig([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestApplyConfigEnvWins(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/kms.json"
	writeFile(t, path, `{"vault":{"addr":"https://from-file:8200","namespace":"file-ns"},"aws":{"profile":"p"}}`)
	t.Setenv(EnvConfig, path)
	t.Setenv("VAULT_ADDR", "https://from-env:8200")
	t.Setenv("VAULT_NAMESPACE", "")
	t.Setenv("OCIKP_AWS_PROFILE", "")
	if err := applyConfig(); err != nil {
		t.Fatal(err)
	}
	if got := getenv("VAULT_ADDR"); got != "https://from-env:8200" {
		t.Errorf("VAULT_ADDR %q: the environment must win", got)
	}
	if getenv("VAULT_NAMESPACE") != "file-ns" || getenv("OCIKP_AWS_PROFILE") != "p" {
		t.Errorf("file values not applied")
	}
	writeFile(t, path, `{"vault":{"adress":"x"}}`)
	if err := applyConfig(); err == nil || !strings.Contains(err.Error(), "adress") {
		t.Errorf("misspelt key: %v", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"timeout":"5s","gcp":{"endpoint":"h:1"},"aws":{"region":"r"},"azure":{"tenant_id":"t"},"vault":{"token_file":"/t"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseConfig(b)
	})
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func getenv(k string) string { return os.Getenv(k) }

// One endpoint, one spelling: normalising is idempotent and keeps the host.
func FuzzNormalizeEndpoint(f *testing.F) {
	for _, s := range []string{"vault.example", "HTTPS://Vault.Example:443/", "http://127.0.0.1:8200", "[::1]:8200", "a@b", "https://h:0", "h:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeEndpoint(s)
		if err != nil {
			return
		}
		again, err := NormalizeEndpoint(n)
		if err != nil || again != n {
			t.Fatalf("%q -> %q -> %q (%v)", s, n, again, err)
		}
	})
}

func TestPolicy(t *testing.T) {
	t.Setenv("OCIKP_TEST_ADDRS", "vault-dr.example:8200, http://127.0.0.1:8200")
	t.Setenv("OCIKP_TEST_MOUNTS", "team/transit")
	t.Setenv("OCIKP_TEST_ACCOUNTS", "111122223333")
	p, err := LoadPolicy(Rules{Name: "t", Service: "Test", Section: "test", Endpoint: "address",
		EndpointsEnv: "OCIKP_TEST_ADDRS", EndpointsSetting: "allowed_addrs",
		MountsEnv: "OCIKP_TEST_MOUNTS", MountsSetting: "allowed_mounts", DefaultMounts: []string{"transit"},
		AccountsEnv: "OCIKP_TEST_ACCOUNTS", AccountsSetting: "allowed_accounts", Account: "account"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		t    Target
		want string // "" for allowed
	}{
		{Target{}, ""},
		{Target{Endpoint: "https://vault-dr.example:8200"}, ""},
		{Target{Endpoint: "http://127.0.0.1:8200"}, ""},
		{Target{Endpoint: "https://127.0.0.1:8200"}, `names Test address "https://127.0.0.1:8200" which is not allowed`},
		{Target{Endpoint: "https://x.example:443", Builtin: true}, ""},
		{Target{Mount: "transit"}, ""},
		{Target{Mount: "team/transit"}, ""},
		{Target{Mount: "kv"}, `names Test mount "kv" which is not allowed`},
		{Target{Account: "111122223333"}, ""},
		{Target{Account: "999999999999"}, `names account "999999999999" which is not in allowed_accounts`},
	} {
		err := p.Check(c.t)
		if (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.t, err, c.want)
		}
		if err != nil && !errors.Is(err, ErrNotAllowed) {
			t.Errorf("%+v: not ErrNotAllowed", c.t)
		}
	}
}
