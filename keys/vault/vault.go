// Package vault is the HashiCorp Vault / OpenBao Transit backend: file keys
// wrapped by transit/encrypt under a named key, with the envelope version as
// associated data (AEAD keys). Address, token and namespace come from the
// usual VAULT_* variables; a token file is read if VAULT_TOKEN is unset.
//
// It links Vault's API client, so it is linked only into ocikp-plugin-hashivault.
package vault

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/kmsplugin"
	"github.com/ocikp/ocikp/plugin"
)

// Rules: a key URL's ?addr= must be the configured address (VAULT_ADDR or
// the settings file's "addr") or listed in "allowed_addrs"; its ?mount=
// must be "transit" or listed in "allowed_mounts". The namespace and the
// token come only from the configuration.
var Rules = kmsplugin.Rules{
	Name: "hashivault", Service: "Vault", Section: "vault", Endpoint: "address",
	EndpointsEnv: kmsplugin.EnvVaultAllowedAddrs, EndpointsSetting: "allowed_addrs",
	MountsEnv: kmsplugin.EnvVaultAllowedMounts, MountsSetting: "allowed_mounts", DefaultMounts: []string{"transit"},
}

// configuredAddr is where the Vault client goes when a URL names no address.
func configuredAddr() string {
	for _, env := range []string{"VAULT_AGENT_ADDR", "VAULT_ADDR"} {
		if a := os.Getenv(env); a != "" {
			return a
		}
	}
	return api.DefaultAddress
}

// Target says where a call for u goes; see Rules.
func (b *Backend) Target(u string) (kmsplugin.Target, error) {
	k, err := ParseURL(u)
	if err != nil {
		return kmsplugin.Target{}, err
	}
	t := kmsplugin.Target{Mount: k.Mount}
	if k.Addr != "" {
		if t.Endpoint, err = kmsplugin.NormalizeEndpoint(k.Addr); err != nil {
			return t, err
		}
		if own, err := kmsplugin.NormalizeEndpoint(configuredAddr()); err == nil && own == t.Endpoint {
			t.Endpoint = ""
		}
	}
	return t, nil
}

// StanzaType is the envelope stanza type of Transit recipients.
const StanzaType = "hashivault"

// Scheme of Transit key URLs.
const Scheme = "hashivault"

// EnvTokenFile names a file holding the Vault token (default ~/.vault-token).
const EnvTokenFile = "OCIKP_VAULT_TOKEN_FILE"

var associatedData = base64.StdEncoding.EncodeToString([]byte("ocikp/v1 hashivault"))

// Key is a parsed hashivault:// URL.
type Key struct {
	URL   string
	Name  string // transit key name
	Mount string // secrets engine mount, default "transit"
	Addr  string // "" for VAULT_ADDR
}

// ParseURL reads hashivault://KEY[?addr=https://vault:8200&mount=transit].
func ParseURL(s string) (*Key, error) {
	bad := errors.New("hashivault key URL: want hashivault://KEY[?addr=URL&mount=PATH]")
	if !strings.HasPrefix(s, Scheme+"://") {
		return nil, bad
	}
	u, err := url.Parse(s)
	if err != nil || u.User != nil || u.Fragment != "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, bad
	}
	k := &Key{URL: s, Name: u.Host, Mount: "transit"}
	for key, vs := range u.Query() {
		if len(vs) != 1 || vs[0] == "" {
			return nil, fmt.Errorf("hashivault key URL: query parameter %.20q must appear once, not empty", key)
		}
		switch key {
		case "addr":
			a, err := url.Parse(vs[0])
			if err != nil || (a.Scheme != "https" && a.Scheme != "http") || a.Host == "" {
				return nil, errors.New("hashivault key URL: addr must be an http(s) URL")
			}
			k.Addr = vs[0]
		case "mount":
			k.Mount = strings.Trim(vs[0], "/")
		default:
			return nil, fmt.Errorf("hashivault key URL: unknown query parameter %.20q (addr, mount)", key)
		}
	}
	for _, c := range k.Name + k.Mount {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_./", c)) {
			return nil, bad
		}
	}
	// Names and mounts become parts of a request path on the Vault server:
	// no "..", no empty or dot-led segments.
	for _, seg := range append(strings.Split(k.Mount, "/"), k.Name) {
		if seg == "" || seg[0] == '.' {
			return nil, bad
		}
	}
	return k, nil
}

// Backend talks to Vault, one client per address.
type Backend struct {
	Timeout time.Duration
	mu      sync.Mutex
	clients map[string]*api.Client
}

// New returns a backend; timeout bounds each call, retries included.
func New(timeout time.Duration) *Backend {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &Backend{Timeout: timeout, clients: map[string]*api.Client{}}
}

func (b *Backend) client(k *Key) (*api.Client, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.clients[k.Addr]; ok {
		return c, nil
	}
	cfg := api.DefaultConfig() // VAULT_ADDR, VAULT_CACERT, VAULT_SKIP_VERIFY, …
	if cfg.Error != nil {
		return nil, fmt.Errorf("hashivault: configuration: %w", cfg.Error)
	}
	if k.Addr != "" {
		cfg.Address = k.Addr
	}
	cfg.Timeout = b.Timeout
	// The client's default, 2 retries, failed a rollout's pulls at a rate
	// limit quota with most of OCIKP_KMS_TIMEOUT left
	// (internal/cmd/simrollout): retry 429 and 5xx with its own jittered
	// back-off until the timeout, unless VAULT_MAX_RETRIES says otherwise.
	if os.Getenv(api.EnvVaultMaxRetries) == "" {
		cfg.MaxRetries = 30
	}
	check := cfg.CheckRetry
	if check == nil {
		check = api.DefaultRetryPolicy
	}
	cfg.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if rec, ok := ctx.Value(retriedKey{}).(*retried); ok {
			rec.mu.Lock()
			switch {
			case resp != nil && (resp.StatusCode == 429 || resp.StatusCode >= 500):
				rec.status = resp.StatusCode
			case resp == nil && err != nil && ctx.Err() == nil:
				// No answer (unreachable address): the client's
				// default 2 retries, not the raised ones.
				if rec.network++; rec.network > 2 {
					rec.mu.Unlock()
					return false, err
				}
			}
			rec.mu.Unlock()
		}
		return check(ctx, resp, err)
	}
	c, err := api.NewClient(cfg) // VAULT_TOKEN, VAULT_NAMESPACE
	if err != nil {
		return nil, fmt.Errorf("hashivault: %w", err)
	}
	if c.Token() == "" {
		path := os.Getenv(EnvTokenFile)
		if path == "" {
			if home, err := os.UserHomeDir(); err == nil {
				path = filepath.Join(home, ".vault-token")
			}
		}
		if data, err := os.ReadFile(path); err == nil {
			c.SetToken(strings.TrimSpace(string(data)))
		}
	}
	if c.Token() == "" {
		return nil, hint.Wrap(errors.New("hashivault: no Vault token"), "set VAULT_TOKEN or "+EnvTokenFile+", or log in so that ~/.vault-token exists")
	}
	b.clients[k.Addr] = c
	return c, nil
}

func (b *Backend) call(k *Key, op string, data map[string]any) (map[string]any, error) {
	c, err := b.client(k)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.Timeout)
	defer cancel()
	rec := new(retried)
	ctx = context.WithValue(ctx, retriedKey{}, rec)
	path := k.Mount + "/" + op + "/" + k.Name
	secret, err := c.Logical().WriteWithContext(ctx, path, data)
	if err != nil {
		return nil, explain(rec.last(err), k, op, path)
	}
	if secret == nil || secret.Data == nil {
		return nil, fmt.Errorf("hashivault: %s with %s: empty response", op, k.URL)
	}
	return secret.Data, nil
}

// Wrap encrypts fileKey under the transit key at u.
func (b *Backend) Wrap(u string, fileKey []byte) (*envelope.Stanza, error) {
	k, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	data, err := b.call(k, "encrypt", map[string]any{
		"plaintext": base64.StdEncoding.EncodeToString(fileKey), "associated_data": associatedData})
	if err != nil {
		return nil, err
	}
	ct, _ := data["ciphertext"].(string)
	if !strings.HasPrefix(ct, "vault:") {
		return nil, fmt.Errorf("hashivault: encrypt with %s: no ciphertext in the response", u)
	}
	return &envelope.Stanza{Type: StanzaType, KID: u, Key: []byte(ct)}, nil
}

// Unwrap decrypts a hashivault stanza.
func (b *Backend) Unwrap(s *envelope.Stanza) ([]byte, error) {
	if s.Type != StanzaType {
		return nil, envelope.ErrIncorrectIdentity
	}
	k, err := ParseURL(s.KID)
	if err != nil {
		return nil, err
	}
	data, err := b.call(k, "decrypt", map[string]any{"ciphertext": string(s.Key), "associated_data": associatedData})
	if err != nil {
		return nil, err
	}
	pt, _ := data["plaintext"].(string)
	out, err := base64.StdEncoding.DecodeString(pt)
	if err != nil || len(out) == 0 {
		return nil, fmt.Errorf("hashivault: decrypt with %s: no plaintext in the response", s.KID)
	}
	return out, nil
}

// PublicKey reads the latest version of a Transit RSA key (rsa-2048, -3072,
// -4096) for wrapping offline. Transit encrypts with RSA-OAEP, SHA-256 and
// an empty label, and writes "vault:vN:" ‖ base64; offline stanzas are made
// the same way, so transit/decrypt opens them.
func (b *Backend) PublicKey(u string) (*plugin.PublicKey, error) {
	k, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	c, err := b.client(k)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.Timeout)
	defer cancel()
	path := k.Mount + "/keys/" + k.Name
	secret, err := c.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return nil, explainRead(err, k, path)
	}
	if secret == nil || secret.Data == nil {
		return nil, hint.Wrap(fmt.Errorf("hashivault: %s: key not found", u), "check the key name and the mount (?mount=)")
	}
	typ, _ := secret.Data["type"].(string)
	if !strings.HasPrefix(typ, "rsa-") {
		return nil, fmt.Errorf("hashivault: %s is a %.20q key; offline wrapping needs an rsa-* key (the KMS wraps others)", u, typ)
	}
	ver := fmt.Sprint(secret.Data["latest_version"])
	keys, _ := secret.Data["keys"].(map[string]any)
	entry, _ := keys[ver].(map[string]any)
	pemText, _ := entry["public_key"].(string)
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return nil, fmt.Errorf("hashivault: %s: no public key for version %.10s", u, ver)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	rpub, ok := pub.(*rsa.PublicKey)
	if err != nil || !ok {
		return nil, fmt.Errorf("hashivault: %s: the public key is not RSA", u)
	}
	return &plugin.PublicKey{StanzaType: StanzaType, KID: u, N: rpub.N.Bytes(), E: rpub.E, Prefix: "vault:v" + ver + ":"}, nil
}

// retried keeps the status of the last answer a retry followed: when
// OCIKP_KMS_TIMEOUT ends a back-off the client returns only the
// cancellation, and the caller should read why it was waiting.
type retried struct {
	mu      sync.Mutex
	status  int
	network int // retries after no answer at all
}

type retriedKey struct{}

// last returns that answer as the error when the deadline ended the call,
// else err.
func (r *retried) last(err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status == 0 || !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &api.ResponseError{StatusCode: r.status, Errors: []string{"retried until OCIKP_KMS_TIMEOUT"}}
}

func explainRead(err error, k *Key, path string) error {
	var re *api.ResponseError
	if errors.As(err, &re) && re.StatusCode == 403 {
		return hint.Wrap(fmt.Errorf("hashivault: read %s: permission denied: the token needs the read capability on %s", k.URL, path),
			"grant it in the token's policy")
	}
	return explain(err, k, "read", path)
}

func explain(err error, k *Key, op, path string) error {
	base := fmt.Sprintf("hashivault: %s with %s", op, k.URL)
	if errors.Is(err, context.DeadlineExceeded) {
		return hint.Wrap(fmt.Errorf("%s: no answer in time", base), "check VAULT_ADDR and the network path to Vault, or raise OCIKP_KMS_TIMEOUT")
	}
	var re *api.ResponseError
	if !errors.As(err, &re) {
		return hint.Wrap(fmt.Errorf("%s: Vault unreachable: %v", base, err), "check VAULT_ADDR and the network path to Vault")
	}
	msg := strings.Join(re.Errors, "; ")
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	switch {
	case re.StatusCode == 403:
		return hint.Wrap(fmt.Errorf("%s: permission denied: the token needs the update capability on %s", base, path),
			"grant it in the token's policy, or check that the token has not expired (VAULT_TOKEN, VAULT_NAMESPACE)")
	case re.StatusCode == 400 && strings.Contains(msg, "not found"):
		return hint.Wrap(fmt.Errorf("%s: key not found: %s", base, msg), "check the key name and the mount (?mount=)")
	case re.StatusCode == 400:
		return fmt.Errorf("%s: rejected: %s (a layer wrapped under another key, or corrupted)", base, msg)
	case re.StatusCode == 429:
		return hint.Wrap(fmt.Errorf("%s: rate limited (retried until OCIKP_KMS_TIMEOUT)", base), "retry later, or raise the rate limit quota")
	case re.StatusCode == 503:
		return hint.Wrap(fmt.Errorf("%s: Vault is sealed or unavailable", base), "unseal Vault, or check its health")
	}
	return fmt.Errorf("%s: HTTP %d: %s", base, re.StatusCode, msg)
}
