// Package azurekv is the Azure Key Vault backend: file keys wrapped by Key
// Vault's wrapKey / unwrapKey (RSA-OAEP-256) under an RSA key in a vault or
// Managed HSM. Credentials: DefaultAzureCredential (environment, workload
// identity, managed identity, Azure CLI), or a bearer token in
// OCIKP_AZURE_ACCESS_TOKEN.
//
// It links the Azure SDK, so it is linked only into ocikp-plugin-azurekms.
package azurekv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/kmsplugin"
	"github.com/ocikp/ocikp/plugin"
)

// Rules: a key URL's vault must be a Key Vault or Managed HSM host of
// Azure's public or sovereign clouds (one label under their domains, port
// 443), or be listed in "allowed_hosts" (Azure Stack, private endpoints,
// test stand-ins). The tenant and credentials come only from the
// configuration.
var Rules = kmsplugin.Rules{
	Name: "azurekms", Service: "Azure Key Vault", Section: "azure", Endpoint: "host",
	EndpointsEnv: kmsplugin.EnvAzureAllowedHosts, EndpointsSetting: "allowed_hosts",
}

// azureHost matches the vault and Managed HSM hosts of Azure's clouds:
// public, China (21Vianet) and US Government.
var azureHost = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.(vault|managedhsm)\.(azure\.net|azure\.cn|usgovcloudapi\.net):443$`)

// Target says where a call for u goes; see Rules.
func (b *Backend) Target(u string) (kmsplugin.Target, error) {
	k, err := ParseURL(u)
	if err != nil {
		return kmsplugin.Target{}, err
	}
	ep, err := kmsplugin.NormalizeEndpoint(k.VaultURL)
	if err != nil {
		return kmsplugin.Target{}, err
	}
	return kmsplugin.Target{Endpoint: ep, Builtin: azureHost.MatchString(strings.TrimPrefix(ep, "https://"))}, nil
}

// StanzaType is the envelope stanza type of Azure Key Vault recipients.
const StanzaType = "azurekms"

// Schemes of Azure Key Vault key URLs: azurekms:// (cosign) and
// azurekeyvault:// (gocloud.dev).
var Schemes = []string{"azurekms", "azurekeyvault"}

// EnvAccessToken holds a Key Vault bearer token, used instead of
// DefaultAzureCredential (for example from
// az account get-access-token --resource https://vault.azure.net).
const EnvAccessToken = "OCIKP_AZURE_ACCESS_TOKEN"

// EnvDisableInstanceDiscovery ("1") skips Microsoft Entra instance
// discovery, for disconnected and private clouds (Azure Stack) whose
// authority (AZURE_AUTHORITY_HOST) Microsoft's cloud does not know.
const EnvDisableInstanceDiscovery = "OCIKP_AZURE_DISABLE_INSTANCE_DISCOVERY"

// Key is a parsed key URL.
type Key struct {
	URL      string
	VaultURL string // https://VAULT.vault.azure.net
	Name     string
	Version  string // "" for the current version
}

// ParseURL reads azurekms://VAULT.vault.azure.net/KEY[/VERSION] and the same
// with azurekeyvault://.
func ParseURL(s string) (*Key, error) {
	bad := errors.New("azurekms key URL: want azurekms://VAULT.vault.azure.net/KEY[/VERSION]")
	scheme, _, _ := strings.Cut(s, "://")
	if scheme != Schemes[0] && scheme != Schemes[1] {
		return nil, bad
	}
	u, err := url.Parse(s)
	if err != nil || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Host == "" {
		return nil, bad
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) < 1 || len(parts) > 2 || parts[0] == "" || (len(parts) == 2 && parts[1] == "") {
		return nil, bad
	}
	for _, p := range parts {
		for _, c := range p {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return nil, bad
			}
		}
	}
	k := &Key{URL: s, VaultURL: "https://" + u.Host, Name: parts[0]}
	if len(parts) == 2 {
		k.Version = parts[1]
	}
	return k, nil
}

// Backend talks to Key Vault, one client per vault.
type Backend struct {
	Timeout time.Duration
	mu      sync.Mutex
	cred    azcore.TokenCredential
	clients map[string]*azkeys.Client
}

// New returns a backend; timeout bounds each call, retries included.
func New(timeout time.Duration) *Backend {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &Backend{Timeout: timeout, clients: map[string]*azkeys.Client{}}
}

type staticToken string

func (t staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(t), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func (b *Backend) client(k *Key) (*azkeys.Client, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.clients[k.VaultURL]; ok {
		return c, nil
	}
	if b.cred == nil {
		if tok := os.Getenv(EnvAccessToken); tok != "" {
			b.cred = staticToken(tok)
		} else {
			cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
				DisableInstanceDiscovery: os.Getenv(EnvDisableInstanceDiscovery) == "1"})
			if err != nil {
				return nil, hint.Wrap(fmt.Errorf("azurekms: no Azure credentials: %w", err),
					"set AZURE_CLIENT_ID/AZURE_TENANT_ID (with a secret, certificate or workload identity), run az login, or use a managed identity")
			}
			b.cred = cred
		}
	}
	opts := &azkeys.ClientOptions{}
	// Key Vault's authentication challenge names the resource to get a token
	// for; it is checked against the vault's domain, which a local stand-in
	// on a loopback address cannot match.
	if host, _, err := net.SplitHostPort(strings.TrimPrefix(k.VaultURL, "https://")); err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			opts.DisableChallengeResourceVerification = true
		}
	}
	c, err := azkeys.NewClient(k.VaultURL, b.cred, opts)
	if err != nil {
		return nil, fmt.Errorf("azurekms: %w", err)
	}
	b.clients[k.VaultURL] = c
	return c, nil
}

var alg = azkeys.EncryptionAlgorithmRSAOAEP256

// with parses u, gets its client and runs f under the call deadline.
func (b *Backend) with(u string, f func(ctx context.Context, k *Key, c *azkeys.Client) error) error {
	k, err := ParseURL(u)
	if err != nil {
		return err
	}
	c, err := b.client(k)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.Timeout)
	defer cancel()
	return f(ctx, k, c)
}

// pinned returns u with the key version that answered, when u named none,
// so that unwrapping keeps working after the key is rotated.
func pinned(u string, k *Key, id *azkeys.ID) string {
	if k.Version == "" && id != nil && id.Version() != "" {
		return strings.TrimSuffix(u, "/") + "/" + id.Version()
	}
	return u
}

// Wrap wraps fileKey with the key at u.
func (b *Backend) Wrap(u string, fileKey []byte) (*envelope.Stanza, error) {
	var s *envelope.Stanza
	err := b.with(u, func(ctx context.Context, k *Key, c *azkeys.Client) error {
		resp, err := c.WrapKey(ctx, k.Name, k.Version, azkeys.KeyOperationParameters{Algorithm: &alg, Value: fileKey}, nil)
		if err != nil {
			return explain(err, u, "wrapKey", "wrapKey")
		}
		s = &envelope.Stanza{Type: StanzaType, KID: pinned(u, k, resp.KID), Key: resp.Result}
		return nil
	})
	return s, err
}

// PublicKey fetches the public half of an RSA key, so that file keys can be
// wrapped offline; unwrapKey opens what RSA-OAEP-256 wraps either way. The
// key id returned pins the version.
func (b *Backend) PublicKey(u string) (*plugin.PublicKey, error) {
	var pk *plugin.PublicKey
	err := b.with(u, func(ctx context.Context, k *Key, c *azkeys.Client) error {
		resp, err := c.GetKey(ctx, k.Name, k.Version, nil)
		if err != nil {
			return explain(err, u, "get key", "get")
		}
		jwk := resp.Key
		if jwk == nil || jwk.Kty == nil || (*jwk.Kty != azkeys.KeyTypeRSA && *jwk.Kty != azkeys.KeyTypeRSAHSM) || len(jwk.N) == 0 || len(jwk.E) == 0 || len(jwk.E) > 4 {
			return fmt.Errorf("azurekms: %s is not an RSA key", u)
		}
		e := 0
		for _, x := range jwk.E {
			e = e<<8 | int(x)
		}
		pk = &plugin.PublicKey{StanzaType: StanzaType, KID: pinned(u, k, jwk.KID), N: jwk.N, E: e}
		return nil
	})
	return pk, err
}

// Unwrap unwraps an azurekms stanza.
func (b *Backend) Unwrap(s *envelope.Stanza) ([]byte, error) {
	if s.Type != StanzaType {
		return nil, envelope.ErrIncorrectIdentity
	}
	var plain []byte
	err := b.with(s.KID, func(ctx context.Context, k *Key, c *azkeys.Client) error {
		resp, err := c.UnwrapKey(ctx, k.Name, k.Version, azkeys.KeyOperationParameters{Algorithm: &alg, Value: s.Key}, nil)
		if err != nil {
			return explain(err, s.KID, "unwrapKey", "unwrapKey")
		}
		plain = resp.Result
		return nil
	})
	return plain, err
}

func explain(err error, u, op, permission string) error {
	base := fmt.Sprintf("azurekms: %s with %s", op, u)
	if errors.Is(err, context.DeadlineExceeded) {
		return hint.Wrap(fmt.Errorf("%s: no answer in time", base), "check the network path to Key Vault, or raise OCIKP_KMS_TIMEOUT")
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		var cue *azidentity.AuthenticationFailedError
		if errors.As(err, &cue) {
			return hint.Wrap(fmt.Errorf("%s: authentication failed", base), "check the Azure credentials ocikp runs with (az login, workload or managed identity)")
		}
		return hint.Wrap(fmt.Errorf("%s: %v", base, err), "check the network path to Key Vault")
	}
	switch re.StatusCode {
	case 401:
		return hint.Wrap(fmt.Errorf("%s: credentials missing, invalid or expired", base),
			"check the Azure credentials ocikp runs with (az login, workload or managed identity, "+EnvAccessToken+")")
	case 403:
		return hint.Wrap(fmt.Errorf("%s: permission denied: the caller needs the %s key permission (%s)", base, permission, re.ErrorCode),
			"grant the Key Vault Crypto User role, or "+permission+" in the vault's access policy")
	case 404:
		return hint.Wrap(fmt.Errorf("%s: key not found", base), "check the vault, key name and version")
	case 400:
		return fmt.Errorf("%s: rejected (%s): a layer wrapped under another key, a key that is not RSA, or corrupted", base, re.ErrorCode)
	case 429:
		return hint.Wrap(fmt.Errorf("%s: throttled (retried)", base), "retry later")
	}
	return fmt.Errorf("%s: HTTP %d %s", base, re.StatusCode, re.ErrorCode)
}
