// Package kms is the provider's side of the cloud KMS backends: the KMS
// key URL schemes (registered with package backend for both directions)
// and the plugin processes that serve them, one executable per cloud so
// that each links one SDK. A Plugins value owns those processes: the exec
// provider and the service each create their own, and close it.
package kms

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/kmsconfig"
	"github.com/ocikp/ocikp/keys/kmspub"
	"github.com/ocikp/ocikp/plugin"
)

// Schemes are the recipient URL schemes the KMS plugins serve.
var Schemes = []string{"gcpkms", "awskms", "azurekms", "azurekeyvault", "hashivault"}

// StanzaTypes are the stanza types the KMS plugins write.
var StanzaTypes = []string{"gcpkms", "gcpkms-rsa", "awskms", "awskms-rsa", "azurekms", "hashivault"}

// kinds maps URL schemes and stanza types to their plugin.
var kinds = map[string]string{
	"gcpkms": "gcpkms", "gcpkms-rsa": "gcpkms",
	"awskms": "awskms", "awskms-rsa": "awskms",
	"azurekms": "azurekms", "azurekeyvault": "azurekms",
	"hashivault": "hashivault",
}

// symmetric are the schemes whose keys the KMS wraps with a symmetric
// key (AES-256 in GCP KMS, AWS KMS and Vault Transit's default key type),
// which a quantum computer does not break. Azure Key Vault wraps with RSA.
var symmetric = map[string]bool{"gcpkms": true, "awskms": true, "hashivault": true}

// plugins are the plugin executables and the variables of ocikp's
// environment each inherits (plugin.Client.EnvAllow).
var plugins = map[string]struct {
	Name     string
	EnvAllow []string
}{
	"gcpkms":     {Name: "ocikp-plugin-gcpkms", EnvAllow: []string{"GOOGLE_*", "GCE_*", "CLOUDSDK_*", "OCIKP_GCPKMS_*", "OCIKP_GCP_*"}},
	"awskms":     {Name: "ocikp-plugin-awskms", EnvAllow: []string{"AWS_*", "OCIKP_AWS_*"}},
	"azurekms":   {Name: "ocikp-plugin-azurekms", EnvAllow: []string{"AZURE_*", "IDENTITY_*", "MSI_*", "IMDS_*", "OCIKP_AZURE_*"}},
	"hashivault": {Name: "ocikp-plugin-hashivault", EnvAllow: []string{"VAULT_*", "OCIKP_VAULT_*"}},
}

// Settings are what a command's flags pass to the KMS plugins.
type Settings struct {
	ConfigFile string // KMS settings file (OCIKP_KMS_CONFIG)
	GCPADC     string // Google Cloud credentials file
	AWSProfile string // AWS shared-config profile
	// Procs bounds the processes each plugin runs for concurrent calls
	// (the service); 0 means 1, the exec provider's.
	Procs int
}

// Plugins are the KMS plugin processes of one provider: started when a
// key needs them, reused between calls, ended by Close.
type Plugins struct {
	env     map[string]string
	clients map[string]*plugin.Client
}

// New returns the plugins for s; none runs until a call needs it. Files
// are made absolute, as plugins may run in another directory.
func New(s Settings) (*Plugins, error) {
	env := map[string]string{}
	if s.AWSProfile != "" {
		env["OCIKP_AWS_PROFILE"] = s.AWSProfile
	}
	for name, f := range map[string]string{kmsconfig.EnvConfig: s.ConfigFile, "OCIKP_GCPKMS_CREDENTIALS": s.GCPADC} {
		if f == "" {
			continue
		}
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, err
		}
		env[name] = abs
	}
	var extra []string
	for k, v := range env {
		extra = append(extra, k+"="+v)
	}
	slices.Sort(extra)
	p := &Plugins{env: env, clients: map[string]*plugin.Client{}}
	for kind, c := range plugins {
		// The settings pass the same filter as the inherited environment:
		// --adc reaches the GCP plugin only, --aws-profile the AWS one.
		own := plugin.FilterEnv(extra, c.EnvAllow)
		p.clients[kind] = &plugin.Client{Name: c.Name, EnvAllow: c.EnvAllow, Env: own, MaxProcs: s.Procs}
	}
	return p, nil
}

// For returns the plugin of a URL scheme or stanza type, or nil.
func (p *Plugins) For(kind string) *plugin.Client { return p.clients[kinds[kind]] }

// Getenv is os.Getenv with the settings' variables as the plugins see
// them (a service watches the files they name).
func (p *Plugins) Getenv(name string) string {
	if v, ok := p.env[name]; ok {
		return v
	}
	return os.Getenv(name)
}

// Close ends the plugin processes; wait says to wait for each to exit.
func (p *Plugins) Close(wait bool) {
	for _, c := range p.clients {
		c.Close(wait)
	}
}

// Restart makes every plugin start anew on its next call, reading its
// settings file and credentials again; calls in flight finish on the old
// processes.
func (p *Plugins) Restart() {
	for _, c := range p.clients {
		c.Restart()
	}
}

// Running reports how many plugin processes run now.
func (p *Plugins) Running() int {
	n := 0
	for _, c := range p.clients {
		n += c.Running()
	}
	return n
}

// IsURL reports whether s is a KMS key URL.
func IsURL(s string) bool {
	for _, k := range Schemes {
		if strings.HasPrefix(s, k+"://") {
			return true
		}
	}
	return false
}

// IsStanza reports whether a stanza type is a KMS plugin's.
func IsStanza(typ string) bool { return slices.Contains(StanzaTypes, typ) }

// Env is what the KMS backend needs of the provider: its plugins and the
// keystore's cache of asymmetric KMS public keys.
type Env interface {
	KMSPlugins() *Plugins
	KMSCache() *kmspub.Cache
}

var errNoPlugins = errors.New("KMS keys are not available here")

func check(s string) error {
	scheme, rest, _ := strings.Cut(s, "://")
	if rest == "" || strings.ContainsAny(s, " \t\n") {
		return fmt.Errorf("%s key URL: want %s://… (see the README's KMS section)", scheme, scheme)
	}
	return nil
}

// recipient resolves a KMS key URL: offline from the public-key cache for
// an asymmetric key it holds (a GCP key version's is fetched once and
// cached), else a plugin recipient.
func recipient(env backend.Env, s string) (envelope.Recipient, error) {
	if err := check(s); err != nil {
		return nil, err
	}
	e, ok := env.(Env)
	if !ok {
		return nil, errNoPlugins
	}
	if r, err := offline(env.Context(), e, s); r != nil || err != nil {
		return r, err
	}
	scheme, _, _ := strings.Cut(s, "://")
	return &plugin.Recipient{Client: e.KMSPlugins().For(scheme), URL: s, Ctx: env.Context(), PostQuantumSafe: symmetric[scheme]}, nil
}

func offline(ctx context.Context, env Env, url string) (envelope.Recipient, error) {
	cache := env.KMSCache()
	e, err := cache.Get(url)
	if err == nil {
		return e.Recipient()
	}
	if !errors.Is(err, kmspub.ErrNotCached) {
		return nil, err
	}
	if !strings.HasPrefix(url, "gcpkms://") || !strings.Contains(url, "/cryptoKeyVersions/") {
		return nil, nil
	}
	e, err = env.KMSPlugins().FetchPublicKey(ctx, url)
	if err != nil {
		return nil, err
	}
	// A read-only keystore only costs the next wrap another fetch.
	_ = cache.Put(e)
	return e.Recipient()
}

// FetchPublicKey asks the plugin for an asymmetric key's public key.
func (p *Plugins) FetchPublicKey(ctx context.Context, url string) (*kmspub.Entry, error) {
	scheme, _, _ := strings.Cut(url, "://")
	c := p.For(scheme)
	if c == nil {
		return nil, fmt.Errorf("not a KMS key URL (schemes: %s)", strings.Join(Schemes, ", "))
	}
	pk, err := c.PublicKey(ctx, url)
	if err != nil {
		return nil, err
	}
	return &kmspub.Entry{URL: url, StanzaType: pk.StanzaType, KID: pk.KID, N: pk.N, E: pk.E, Prefix: pk.Prefix,
		Fetched: time.Now().UTC().Truncate(time.Second)}, nil
}

// decrypt: a KMS key URL as a decryption key sends that key's stanzas,
// and only those, to its plugin.
func decrypt(_ backend.Env, s string) (backend.Selection, error) {
	if err := check(s); err != nil {
		return backend.Selection{}, err
	}
	return backend.Selection{KMS: []string{s}}, nil
}

func init() {
	for _, s := range Schemes {
		backend.Register(s, backend.Backend{Recipient: recipient, Decrypt: decrypt})
	}
	for _, t := range StanzaTypes {
		st := backend.Classical
		if symmetric[t] {
			st = backend.PostQuantum
		}
		backend.RegisterStanza(t, st)
	}
}
