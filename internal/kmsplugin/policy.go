package kmsplugin

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/ocikp/ocikp/internal/hint"
)

// Target is where a call for one key URL would go, as a backend reads the
// URL before it connects anywhere. Key URLs come from untrusted places (a
// stanza's kid is written by whoever pushed the image; a service's client
// names recipients), so the plugin checks the target against its Rules
// before any backend method sees the URL.
type Target struct {
	// Endpoint is the endpoint the URL itself names, normalised by
	// NormalizeEndpoint ("https://host:443"); "" when it names none and the
	// call goes where the plugin's trusted configuration points
	// (VAULT_ADDR, the SDK's default endpoints, the configured GCP
	// endpoint).
	Endpoint string
	// Builtin says Endpoint is one of the cloud's own (an Azure Key Vault
	// or Managed HSM host), allowed without being listed.
	Builtin bool
	// Mount is the Vault secrets engine mount the URL names.
	Mount string
	// Account is the AWS account or GCP project the URL names, "" for
	// none (the caller's own).
	Account string
}

// Rules say, per plugin, what a key URL may name and which trusted
// settings widen that. Each backend package defines its own.
type Rules struct {
	Name     string // the backend's scheme, prefixed to messages: "hashivault"
	Service  string // "Vault", for messages
	Section  string // the KMS settings file's section, "vault"
	Endpoint string // what an endpoint is called: "address", "host", "endpoint"

	EndpointsEnv     string // comma-separated allowed endpoints
	EndpointsSetting string // their key in Section

	MountsEnv, MountsSetting string   // allowed Vault mounts ("" if none)
	DefaultMounts            []string // allowed without listing

	AccountsEnv, AccountsSetting string // allowed accounts/projects ("" if none)
	Account                      string // what an account is called: "AWS account", "project"
}

// Policy is Rules with the allowed values read from the environment
// (which the settings file fills, see applyConfig).
type Policy struct {
	rules     Rules
	endpoints []string
	mounts    []string
	accounts  []string
}

// LoadPolicy reads the allowlists that r names from the environment.
func LoadPolicy(r Rules) (*Policy, error) {
	p := &Policy{rules: r}
	for _, e := range list(os.Getenv(r.EndpointsEnv)) {
		n, err := NormalizeEndpoint(e)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.EndpointsEnv, err)
		}
		p.endpoints = append(p.endpoints, n)
	}
	if r.MountsEnv != "" {
		for _, m := range list(os.Getenv(r.MountsEnv)) {
			p.mounts = append(p.mounts, strings.Trim(m, "/"))
		}
	}
	if r.AccountsEnv != "" {
		p.accounts = list(os.Getenv(r.AccountsEnv))
	}
	return p, nil
}

func list(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// ErrNotAllowed marks a key URL that names something the configuration
// does not allow.
var ErrNotAllowed = errors.New("not allowed by the KMS settings")

type notAllowed struct{ msg string }

func (e *notAllowed) Error() string { return e.msg }
func (e *notAllowed) Unwrap() error { return ErrNotAllowed }

// Check refuses a target that names an endpoint, mount or account the
// configuration does not allow.
func (p *Policy) Check(t Target) error {
	r := p.rules
	refuse := func(what, value, setting, env string) error {
		return hint.Wrap(&notAllowed{fmt.Sprintf("names %s %s %s which is not allowed", r.Service, what, quote(value))},
			fmt.Sprintf(`allow it with "%s": {"%s": [%s]} in the KMS settings file, or in %s`, r.Section, setting, quote(value), env))
	}
	if t.Endpoint != "" && !t.Builtin && !slices.Contains(p.endpoints, t.Endpoint) {
		return refuse(r.Endpoint, t.Endpoint, r.EndpointsSetting, r.EndpointsEnv)
	}
	if t.Mount != "" && !slices.Contains(r.DefaultMounts, t.Mount) && !slices.Contains(p.mounts, t.Mount) {
		return refuse("mount", t.Mount, r.MountsSetting, r.MountsEnv)
	}
	if t.Account != "" && len(p.accounts) > 0 && !slices.Contains(p.accounts, t.Account) {
		return hint.Wrap(&notAllowed{fmt.Sprintf("names %s %s which is not in %s", r.Account, quote(t.Account), r.AccountsSetting)},
			fmt.Sprintf(`add it to "%s": {"%s": […]} in the KMS settings file (or %s)`, r.Section, r.AccountsSetting, r.AccountsEnv))
	}
	return nil
}

// quote shows a value from an untrusted URL: bounded, Go-quoted (so no
// control character reaches a terminal).
func quote(s string) string {
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// NormalizeEndpoint reads "host", "host:port" or "http(s)://host[:port]"
// and returns "scheme://host:port" (https by default, the scheme's port by
// default, host in lower case), so that one endpoint has one spelling.
func NormalizeEndpoint(s string) (string, error) {
	bad := fmt.Errorf("endpoint %s: want host[:port] or https://host[:port]", quote(s))
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", bad
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return "", bad
	}
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
	}
	return u.Scheme + "://" + net.JoinHostPort(strings.ToLower(host), port), nil
}
