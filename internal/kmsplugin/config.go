package kmsplugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ocikp/ocikp/internal/kmsconfig"
)

// EnvConfig names the KMS settings file (what ocikp keyprovider --kms-config sets).
const EnvConfig = kmsconfig.EnvConfig

// fileConfig is the KMS settings file: what flags and environment
// variables set, for callers (ocicrypt) that pass fixed arguments.
type fileConfig struct {
	Timeout string `json:"timeout,omitempty"`
	GCP     struct {
		CredentialsFile string   `json:"credentials_file,omitempty"`
		Endpoint        string   `json:"endpoint,omitempty"`
		AllowedProjects []string `json:"allowed_projects,omitempty"`
	} `json:"gcp"`
	AWS struct {
		Profile          string   `json:"profile,omitempty"`
		Region           string   `json:"region,omitempty"`
		AllowedEndpoints []string `json:"allowed_endpoints,omitempty"`
		AllowedAccounts  []string `json:"allowed_accounts,omitempty"`
	} `json:"aws"`
	Azure struct {
		TenantID     string   `json:"tenant_id,omitempty"`
		ClientID     string   `json:"client_id,omitempty"`
		AllowedHosts []string `json:"allowed_hosts,omitempty"`
	} `json:"azure"`
	Vault struct {
		Addr          string   `json:"addr,omitempty"`
		Namespace     string   `json:"namespace,omitempty"`
		TokenFile     string   `json:"token_file,omitempty"`
		CACert        string   `json:"ca_cert,omitempty"`
		AllowedAddrs  []string `json:"allowed_addrs,omitempty"`
		AllowedMounts []string `json:"allowed_mounts,omitempty"`
	} `json:"vault"`
}

// Environment variables that the settings file's allowlists stand for
// (comma-separated); see Rules and docs/security.md.
const (
	EnvGCPAllowedProjects  = "OCIKP_GCP_ALLOWED_PROJECTS"
	EnvAWSAllowedEndpoints = "OCIKP_AWS_ALLOWED_ENDPOINTS"
	EnvAWSAllowedAccounts  = "OCIKP_AWS_ALLOWED_ACCOUNTS"
	EnvAzureAllowedHosts   = "OCIKP_AZURE_ALLOWED_HOSTS"
	EnvVaultAllowedAddrs   = "OCIKP_VAULT_ALLOWED_ADDRS"
	EnvVaultAllowedMounts  = "OCIKP_VAULT_ALLOWED_MOUNTS"
)

// parseConfig decodes a settings file strictly: unknown keys are errors, so
// that a misspelt setting does not silently fall back to a default.
func parseConfig(data []byte) (*fileConfig, error) {
	if len(data) > 64<<10 {
		return nil, errors.New("too large")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c fileConfig
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("invalid: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid: trailing data")
	}
	if c.Timeout != "" {
		if d, err := time.ParseDuration(c.Timeout); err != nil || d <= 0 {
			return nil, errors.New(`invalid: "timeout" must be a duration such as "30s"`)
		}
	}
	for name, l := range c.allowlists() {
		for _, v := range l {
			if v == "" || strings.ContainsAny(v, ", \t\n") {
				return nil, fmt.Errorf("invalid: %s: entries must be non-empty, without commas or spaces", name)
			}
		}
	}
	for _, e := range append(c.AWS.AllowedEndpoints, append(c.Azure.AllowedHosts, c.Vault.AllowedAddrs...)...) {
		if _, err := NormalizeEndpoint(e); err != nil {
			return nil, fmt.Errorf("invalid: %w", err)
		}
	}
	return &c, nil
}

func (c *fileConfig) allowlists() map[string][]string {
	return map[string][]string{
		EnvGCPAllowedProjects: c.GCP.AllowedProjects, EnvAWSAllowedEndpoints: c.AWS.AllowedEndpoints,
		EnvAWSAllowedAccounts: c.AWS.AllowedAccounts, EnvAzureAllowedHosts: c.Azure.AllowedHosts,
		EnvVaultAllowedAddrs: c.Vault.AllowedAddrs, EnvVaultAllowedMounts: c.Vault.AllowedMounts,
	}
}

// SettingsFile returns the KMS settings file that plugins read (see kmsconfig).
func SettingsFile() string { return kmsconfig.SettingsFile() }

// configPath returns the settings file to read, "" for none: the default
// file is optional, a named one is not.
func configPath() string {
	p := SettingsFile()
	if p == "" || os.Getenv(EnvConfig) != "" {
		return p
	}
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// WatchedFiles lists the files whose change should restart warm plugins (so
// that they read them again): the settings file, the credential files it or
// the environment names, and the SDKs' default credential files. A service
// stats them; missing ones are listed too, so that creating one counts.
func WatchedFiles(getenv func(string) string) []string {
	files := []string{}
	add := func(f string) {
		if f != "" {
			files = append(files, f)
		}
	}
	settings := kmsconfig.SettingsFileFrom(getenv)
	add(settings)
	if data, err := os.ReadFile(settings); err == nil {
		if c, err := parseConfig(data); err == nil {
			add(c.GCP.CredentialsFile)
			add(c.Vault.TokenFile)
			add(c.Vault.CACert)
		}
	}
	for _, env := range []string{"OCIKP_GCPKMS_CREDENTIALS", "GOOGLE_APPLICATION_CREDENTIALS", "OCIKP_VAULT_TOKEN_FILE",
		"VAULT_CACERT", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"} {
		add(getenv(env))
	}
	if home, err := os.UserHomeDir(); err == nil {
		add(filepath.Join(home, ".vault-token"))
		add(filepath.Join(home, ".aws", "config"))
		add(filepath.Join(home, ".aws", "credentials"))
		add(filepath.Join(home, ".config", "gcloud", "application_default_credentials.json"))
	}
	return files
}

// applyConfig reads the settings file and sets the environment variables
// it stands for, where they are not already set: the environment (and so
// ocikp's flags) wins over the file.
func applyConfig() error {
	path := configPath()
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("KMS settings %s: %w", path, err)
	}
	c, err := parseConfig(data)
	if err != nil {
		return fmt.Errorf("KMS settings %s: %w", path, err)
	}
	set := map[string]string{
		"OCIKP_KMS_TIMEOUT":        c.Timeout,
		"OCIKP_GCPKMS_CREDENTIALS": c.GCP.CredentialsFile,
		"OCIKP_GCPKMS_ENDPOINT":    c.GCP.Endpoint,
		"OCIKP_AWS_PROFILE":        c.AWS.Profile,
		"AWS_REGION":               c.AWS.Region,
		"AZURE_TENANT_ID":          c.Azure.TenantID,
		"AZURE_CLIENT_ID":          c.Azure.ClientID,
		"VAULT_ADDR":               c.Vault.Addr,
		"VAULT_NAMESPACE":          c.Vault.Namespace,
		"OCIKP_VAULT_TOKEN_FILE":   c.Vault.TokenFile,
		"VAULT_CACERT":             c.Vault.CACert,
	}
	for env, l := range c.allowlists() {
		set[env] = strings.Join(l, ",")
	}
	for env, v := range set {
		if v != "" && os.Getenv(env) == "" {
			os.Setenv(env, v)
		}
	}
	return nil
}
