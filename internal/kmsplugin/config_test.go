package kmsplugin

import (
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
