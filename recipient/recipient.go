// Package recipient turns recipient strings into envelope recipients. Each
// backend registers the URL scheme of its recipient strings; a backend that
// is not part of this build still registers, so that its users get "built
// without …" rather than "unknown recipient".
package recipient

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/kmsconfig"
	"github.com/ocikp/ocikp/p256"
	"github.com/ocikp/ocikp/plugin"
)

// ParseFunc parses one recipient string of a registered scheme; ctx bounds
// the work its Wrap may do (a KMS call).
type ParseFunc func(ctx context.Context, s string) (envelope.Recipient, error)

// ErrUnknown is returned for a string that no registered scheme claims.
var ErrUnknown = errors.New("not an ocikp recipient")

var schemes = map[string]ParseFunc{}

// Register adds a scheme ("ocikp-p256", "gcpkms", …). Later registrations
// replace earlier ones, so a real backend can replace its stub.
func Register(scheme string, f ParseFunc) { schemes[scheme] = f }

// bech32Kinds are the checksummed recipient kinds: a string whose start is
// near one of them (see Scheme) belongs to it, so that a typo is reported
// by its parser as a checksum mismatch, not as an unknown recipient.
var bech32Kinds []bech32Kind

type bech32Kind struct {
	hrp  string
	near func(string) bool
}

// RegisterBech32 adds a checksummed recipient kind under its Bech32
// human-readable part ("ocikp1p256"); near recognises its strings, typos
// included.
func RegisterBech32(hrp string, near func(string) bool, f ParseFunc) {
	bech32Kinds = append(bech32Kinds, bech32Kind{hrp, near})
	schemes[hrp] = f
}

func parseP256(_ context.Context, s string) (envelope.Recipient, error) { return p256.Parse(s) }

// kmsPlugins are the KMS plugins, one executable per cloud so that each
// links one SDK; each is started only when one of its keys is used.
// Each inherits only its own cloud's variables (plugin.Client.EnvAllow).
var kmsPlugins = map[string]*plugin.Client{
	"gcpkms":     {Name: "ocikp-plugin-gcpkms", EnvAllow: []string{"GOOGLE_*", "GCE_*", "CLOUDSDK_*", "OCIKP_GCPKMS_*", "OCIKP_GCP_*"}},
	"awskms":     {Name: "ocikp-plugin-awskms", EnvAllow: []string{"AWS_*", "OCIKP_AWS_*"}},
	"azurekms":   {Name: "ocikp-plugin-azurekms", EnvAllow: []string{"AZURE_*", "IDENTITY_*", "MSI_*", "IMDS_*", "OCIKP_AZURE_*"}},
	"hashivault": {Name: "ocikp-plugin-hashivault", EnvAllow: []string{"VAULT_*", "OCIKP_VAULT_*"}},
}

// kmsKinds maps URL schemes and stanza types to their plugin.
var kmsKinds = map[string]string{
	"gcpkms": "gcpkms", "gcpkms-rsa": "gcpkms",
	"awskms": "awskms", "awskms-rsa": "awskms",
	"azurekms": "azurekms", "azurekeyvault": "azurekms",
	"hashivault": "hashivault",
}

// KMSSchemes are the recipient URL schemes the KMS plugins serve.
var KMSSchemes = []string{"gcpkms", "awskms", "azurekms", "azurekeyvault", "hashivault"}

// KMSStanzaTypes are the stanza types the KMS plugins write.
var KMSStanzaTypes = []string{"gcpkms", "gcpkms-rsa", "awskms", "awskms-rsa", "azurekms", "hashivault"}

// KMSPlugin returns the plugin for a URL scheme or stanza type, or nil.
func KMSPlugin(kind string) *plugin.Client {
	return kmsPlugins[kmsKinds[kind]]
}

// KMSSettings are what a command's flags pass to the KMS plugins, through
// their environment.
type KMSSettings struct {
	ConfigFile string // KMS settings file (OCIKP_KMS_CONFIG)
	GCPADC     string // Google Cloud credentials file
	AWSProfile string // AWS shared-config profile
}

// ConfigureKMS passes s to every KMS plugin started from now on, through
// this process's environment (which plugins inherit, and which a service
// reads to know what to watch); files are made absolute, as plugins may run
// in another directory.
func ConfigureKMS(s KMSSettings) error {
	set := map[string]string{"OCIKP_AWS_PROFILE": s.AWSProfile}
	for env, f := range map[string]string{kmsconfig.EnvConfig: s.ConfigFile, "OCIKP_GCPKMS_CREDENTIALS": s.GCPADC} {
		if f == "" {
			continue
		}
		abs, err := filepath.Abs(f)
		if err != nil {
			return err
		}
		set[env] = abs
	}
	for env, v := range set {
		if v != "" {
			if err := os.Setenv(env, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// CloseKMS ends the KMS plugins that were started.
func CloseKMS(wait bool) {
	for _, c := range kmsPlugins {
		c.Close(wait)
	}
}

// RestartKMS makes every KMS plugin start anew on its next call, reading
// its settings file and credentials again; calls in flight finish on the
// old processes.
func RestartKMS() {
	for _, c := range kmsPlugins {
		c.Restart()
	}
}

// SetKMSProcs lets each KMS plugin run up to n processes, for concurrent
// calls (the service); the exec provider runs one.
func SetKMSProcs(n int) {
	for _, c := range kmsPlugins {
		c.MaxProcs = n
	}
}

// KMSRunning reports how many KMS plugin processes run now.
func KMSRunning() int {
	n := 0
	for _, c := range kmsPlugins {
		n += c.Running()
	}
	return n
}

func parseKMS(ctx context.Context, s string) (envelope.Recipient, error) {
	scheme, rest, _ := strings.Cut(s, "://")
	if rest == "" || strings.ContainsAny(s, " \t\n") {
		return nil, fmt.Errorf("%s recipient: want %s://… (see the README's KMS section)", scheme, scheme)
	}
	return &plugin.Recipient{Client: KMSPlugin(scheme), URL: s, Ctx: ctx}, nil
}

// IsKMS reports whether s is a KMS key URL.
func IsKMS(s string) bool {
	for _, k := range KMSSchemes {
		if strings.HasPrefix(s, k+"://") {
			return true
		}
	}
	return false
}

func init() {
	RegisterBech32(p256.HRP, p256.Near, parseP256)
	Register(p256.LegacyScheme, parseP256)
	Register("apple-se", parseP256)
	for _, s := range KMSSchemes {
		Register(s, parseKMS)
	}
}

// Scheme returns the scheme of s: the human-readable part of a
// checksummed recipient, else the part before the first ':'.
func Scheme(s string) string {
	for _, k := range bech32Kinds {
		if k.near(s) {
			return k.hrp
		}
	}
	scheme, _, ok := strings.Cut(s, ":")
	if !ok {
		return ""
	}
	return scheme
}

// Parse returns the recipient that s names. Its errors never quote s, which
// may be any string a caller passed.
func Parse(s string) (envelope.Recipient, error) { return ParseContext(context.Background(), s) }

// ParseContext is Parse for a recipient whose wrapping ctx bounds.
func ParseContext(ctx context.Context, s string) (envelope.Recipient, error) {
	f, ok := schemes[Scheme(s)]
	if !ok {
		return nil, ErrUnknown
	}
	return f(ctx, s)
}

// Known reports whether s has a registered scheme.
func Known(s string) bool {
	_, ok := schemes[Scheme(s)]
	return ok
}

// Schemes lists the registered schemes.
func Schemes() []string {
	var out []string
	for s := range schemes {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}
