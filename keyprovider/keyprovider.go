// Package keyprovider is ocikp's core: it answers ocicrypt key provider
// requests (wrap and unwrap) from recipients, the keystore and legacy
// formats. The exec command and the gRPC service both call it.
package keyprovider

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/safetext"
	"github.com/ocikp/ocikp/internal/suggest"
	"github.com/ocikp/ocikp/keys/keychain"
	"github.com/ocikp/ocikp/keys/kmspub"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/kms"
	"github.com/ocikp/ocikp/legacy"
	"github.com/ocikp/ocikp/plugin"
	"github.com/ocikp/ocikp/protocol"

	// Recipient forms and stored keys that register themselves.
	_ "github.com/ocikp/ocikp/keys/pkcs11"
	_ "github.com/ocikp/ocikp/p256"
	_ "github.com/ocikp/ocikp/pq"
)

// Enabled is what skopeo's bare --decryption-key provider:NAME sends: "no
// specific key".
const Enabled = protocol.Enabled

// Provider answers requests for one provider name and keystore.
type Provider struct {
	// Name is the provider's entry in the config's Parameters maps
	// ("" to detect it).
	Name string
	// Store is the software keystore.
	Store *soft.Store
	// Passphrase returns the passphrase for a sealed key, or nil.
	Passphrase func(keyName string) ([]byte, error)
	// Log receives debug events; nil for none. It never sees secrets.
	Log *slog.Logger
	// CacheKeys keeps the keystore's keys, and their private halves once
	// used, between requests, until the keystore directory changes. For a
	// long-lived service; the exec path reads the keystore every time.
	CacheKeys bool
	// Keychain holds the keys the keystore's Keychain references name
	// (nil: this machine's; elsewhere than macOS, none).
	Keychain *keychain.Keychain
	// Warn receives one-line warnings for the user (nil: to Log).
	Warn func(msg string)
	// Remote says requests come from other processes (the gRPC service):
	// a decryption key is a keystore name, never a file path, and errors
	// name no keystore path and no key names (Log gets the full ones).
	Remote bool
	// AllowClassical lets a wrap mix post-quantum and classical-only
	// recipients (the provider's --allow-classical).
	AllowClassical bool
	// AllowClassicalHint is how the user accepts a mix on purpose, named
	// in the refusal's hint: the flag of the command they ran ("ocikp
	// rewrap --allow-classical"). Empty: the exec provider's (through
	// ocikp config), or for a Remote provider the service's own flag.
	AllowClassicalHint string
	// KMS are the provider's KMS plugin processes (nil: created with
	// default settings when first needed). Close ends them.
	KMS *kms.Plugins

	cache   keyCache
	kmsOnce sync.Once
}

// plugins returns the provider's KMS plugins, creating them on first use.
func (p *Provider) plugins() *kms.Plugins {
	p.kmsOnce.Do(func() {
		if p.KMS == nil {
			p.KMS, _ = kms.New(kms.Settings{}) // without settings, New cannot fail
		}
	})
	return p.KMS
}

// Close ends the KMS plugin processes the provider started; wait says to
// wait for each to exit.
func (p *Provider) Close(wait bool) {
	if p.KMS != nil {
		p.KMS.Close(wait)
	}
}

// env is what backends may draw on while resolving one request's strings:
// the provider's resources, bounded by the request's context.
type env struct {
	p   *Provider
	ctx context.Context
}

func (e env) Context() context.Context     { return e.ctx }
func (e env) KMSPlugins() *kms.Plugins     { return e.p.plugins() }
func (e env) KMSCache() *kmspub.Cache      { return e.p.KMSCache() }
func (e env) Keychain() *keychain.Keychain { return e.p.keychain() }

func (p *Provider) keychain() *keychain.Keychain {
	if p.Keychain != nil {
		return p.Keychain
	}
	return keychain.System()
}

// Refs is the keystore's record of Keychain keys.
func (p *Provider) Refs() *keychain.Refs { return keychain.RefsIn(p.Store.Dir) }

// keyCache holds the keystore's identities as of the directory's mtime.
type keyCache struct {
	mu      sync.Mutex
	stamp   [2]time.Time // keystore and Keychain references
	keys    []backend.Key
	skipped []error
}

// Handle answers one request and returns the JSON reply.
func (p *Provider) Handle(req *protocol.Request) ([]byte, error) {
	reply, _, err := p.HandleBackend(req)
	return reply, err
}

// HandleBackend is Handle that also names the backend that served the
// request, for metrics: the stanza type that opened a layer ("p256",
// "gcpkms", …, "legacy-apple", "legacy-gcpkms"), or the recipient kinds of a
// wrap ("gcpkms+p256").
func (p *Provider) HandleBackend(req *protocol.Request) ([]byte, string, error) {
	return p.HandleContext(context.Background(), req)
}

// HandleContext is HandleBackend bounded by ctx: KMS plugin calls end with
// it (the plugin process is killed and replaced).
func (p *Provider) HandleContext(ctx context.Context, req *protocol.Request) ([]byte, string, error) {
	switch req.Op {
	case protocol.OpKeyWrap:
		ann, backend, err := p.wrap(ctx, req.KeyWrapParams)
		if err != nil {
			return nil, backend, err
		}
		reply, err := protocol.EncodeWrapResponse(ann)
		return reply, backend, err
	case protocol.OpKeyUnwrap:
		opts, backend, err := p.unwrap(ctx, req.KeyUnwrapParams)
		if err != nil {
			return nil, backend, err
		}
		reply, err := protocol.EncodeUnwrapResponse(opts)
		return reply, backend, err
	}
	return nil, "", fmt.Errorf("%w: unknown op", protocol.ErrMalformed)
}

// warnf reports something the user should change, though the request
// succeeds: on stderr for the exec provider (Warn), in the log otherwise.
func (p *Provider) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	switch {
	case p.Warn != nil:
		p.Warn(msg)
	case p.Log != nil:
		p.Log.Warn(msg)
	}
}

// debug logs a debug event. Callers check debugging first: the arguments
// would be built (and allocated) on every request even when debug logging
// is off.
func (p *Provider) debug(msg string, args ...any) {
	if p.Log != nil {
		p.Log.Debug(msg, args...)
	}
}

func (p *Provider) debugging() bool {
	return p.Log != nil && p.Log.Enabled(context.Background(), slog.LevelDebug)
}

// Wrap seals optsdata for every recipient in the provider's entry of
// ec.Parameters.
func (p *Provider) Wrap(w *protocol.KeyWrapParams) ([]byte, error) {
	ann, _, err := p.wrap(context.Background(), w)
	return ann, err
}

func (p *Provider) wrap(ctx context.Context, w *protocol.KeyWrapParams) ([]byte, string, error) {
	if len(w.Optsdata) == 0 {
		return nil, "", errors.New("keywrap request has no optsdata to wrap")
	}
	values, err := p.wrapEntry(w.EC.Parameters)
	if err != nil {
		return nil, "", err
	}
	var rs []envelope.Recipient
	for i, v := range values {
		r, err := p.recipientFor(ctx, string(v))
		if err != nil {
			return nil, "", fmt.Errorf("encryption key %d of %d: %w", i+1, len(values), err)
		}
		if d, ok := r.(interface{ Deprecated() string }); ok && d.Deprecated() != "" {
			p.warnf("encryption key %d of %d %s", i+1, len(values), d.Deprecated())
		}
		rs = append(rs, r)
	}
	names, strength := kinds(rs)
	if err := p.checkMix(strength); err != nil {
		return nil, "", err
	}
	if p.debugging() {
		p.debug("wrap", "recipients", len(rs))
	}
	ann, err := envelope.Seal(w.Optsdata, rs...)
	return ann, strings.Join(names, "+"), err
}

// kinds returns the recipients' kinds (their stanza types or key URL
// schemes), each once, sorted, and the same grouped by strength.
func kinds(rs []envelope.Recipient) ([]string, map[backend.Strength][]string) {
	var names []string
	strength := map[backend.Strength][]string{}
	for _, r := range rs {
		kind := "other"
		if t, ok := r.(interface{ Type() string }); ok {
			kind = t.Type()
		}
		if !slices.Contains(names, kind) {
			names = append(names, kind)
			st := backend.StrengthOf(r)
			strength[st] = append(strength[st], kind)
		}
	}
	slices.Sort(names)
	return names, strength
}

// ErrMixedStrength is a wrap that would mix post-quantum and classical-only
// recipients in one layer.
var ErrMixedStrength = errors.New("mix post-quantum and classical-only recipients")

// checkMix refuses a layer for post-quantum and classical-only recipients
// at once, as age does: it is only as strong as its weakest recipient, so
// whoever stores it today decrypts it once P-256 or RSA falls.
func (p *Provider) checkMix(strength map[backend.Strength][]string) error {
	pq, classical := strength[backend.PostQuantum], strength[backend.Classical]
	if len(pq) == 0 || len(classical) == 0 || p.AllowClassical {
		return nil
	}
	slices.Sort(pq)
	slices.Sort(classical)
	how := p.AllowClassicalHint
	switch {
	case how != "":
	case p.Remote:
		how = "the service's operator runs ocikp serve --allow-classical"
	default:
		how = "--allow-classical in ocikp's args in OCICRYPT_KEYPROVIDER_CONFIG (ocikp config --allow-classical)"
	}
	return hint.Wrap(fmt.Errorf("the encryption keys %w (post-quantum: %s; classical-only: %s): the layer would be only as strong as the classical ones",
		ErrMixedStrength, strings.Join(pq, ", "), strings.Join(classical, ", ")),
		"give every recipient a post-quantum key (ocikp keygen --type mlkem768x25519 NAME) or a symmetric KMS key",
		"or accept classical strength on purpose: "+how)
}

// CheckMix applies the mixing rule to the recipients of a layer (rewrap).
func (p *Provider) CheckMix(rs []envelope.Recipient) error {
	_, strength := kinds(rs)
	return p.checkMix(strength)
}

// wrapEntry picks the provider's values out of ec.Parameters.
func (p *Provider) wrapEntry(params map[string][][]byte) ([][]byte, error) {
	noRecipients := hint.Wrap(errors.New("keywrap request names no ocikp recipients"),
		`pass --encryption-key provider:NAME:RECIPIENT, where RECIPIENT comes from "ocikp recipient KEYNAME"`)
	if p.Name != "" {
		v := params[p.Name]
		if len(v) == 0 {
			return nil, hint.Wrap(fmt.Errorf("keywrap request has no encryption keys for provider %q", p.Name),
				fmt.Sprintf("pass --encryption-key provider:%s:RECIPIENT; check that --name matches the provider's name in OCICRYPT_KEYPROVIDER_CONFIG", p.Name))
		}
		return v, nil
	}
	// Without --name: the one entry whose values are all ocikp recipients.
	var found []string
	for name, vs := range params {
		ok := len(vs) > 0
		for _, v := range vs {
			ok = ok && backend.IsRecipient(string(v))
		}
		if ok {
			found = append(found, name)
		}
	}
	switch len(found) {
	case 0:
		return nil, noRecipients
	case 1:
		return params[found[0]], nil
	}
	return nil, hint.Wrap(fmt.Errorf("keywrap request has ocikp recipients under %d provider names", len(found)),
		"run ocikp with --name NAME in OCICRYPT_KEYPROVIDER_CONFIG (ocikp config --name NAME writes one)")
}

// RecipientFor resolves what an --encryption-key names: a recipient
// string of a registered backend (a KMS key URL among them) or a keystore
// key's name.
func (p *Provider) RecipientFor(ctx context.Context, v string) (envelope.Recipient, error) {
	return p.recipientFor(ctx, v)
}

func (p *Provider) recipientFor(ctx context.Context, v string) (envelope.Recipient, error) {
	r, err := backend.Recipient(env{p, ctx}, v)
	if !errors.Is(err, backend.ErrUnknown) {
		return r, err
	}
	if p.Store != nil && soft.ValidName(v) {
		if k, kerr := p.Store.Get(v); kerr == nil {
			r, err := k.NewRecipient()
			if err != nil {
				return nil, fmt.Errorf("key %q: %w", k.Name, err)
			}
			return r, nil
		}
		if ref, kerr := p.Refs().Get(v); kerr == nil {
			r, err := ref.NewRecipient()
			if err != nil {
				return nil, fmt.Errorf("key %q: %w", ref.Name, err)
			}
			return r, nil
		}
		if k, kerr := p.storedKey(v); kerr == nil {
			if r, ok := k.(interface {
				Recipient() (envelope.Recipient, error)
			}); ok {
				return r.Recipient()
			}
		}
		// Worded as unwrap words it: a name, not a malformed recipient.
		return nil, p.noKeyNamed(v, "name a key from 'ocikp list', or pass a recipient (ocikp recipient KEYNAME prints one)")
	}
	return nil, hint.Wrap(errors.New("not an ocikp recipient or key name"),
		"recipients look like ocikp1mlkem768x255191… or ocikp1p2561… (see: ocikp recipient KEYNAME); schemes: "+strings.Join(backend.Schemes(), ", "))
}

// KMSCache is the cache of asymmetric KMS public keys in the keystore.
func (p *Provider) KMSCache() *kmspub.Cache {
	return &kmspub.Cache{Dir: filepath.Join(p.Store.Dir, "kms")}
}

// FetchPublicKey asks the KMS plugin for an asymmetric key's public key.
func (p *Provider) FetchPublicKey(ctx context.Context, url string) (*kmspub.Entry, error) {
	return p.plugins().FetchPublicKey(ctx, url)
}

// Unwrap recovers optsdata from an annotation: with a local key if one
// opens it, else through the KMS plugin if the layer has KMS stanzas.
func (p *Provider) Unwrap(u *protocol.KeyUnwrapParams) ([]byte, error) {
	opts, _, err := p.unwrap(context.Background(), u)
	return opts, err
}

func (p *Provider) unwrap(ctx context.Context, u *protocol.KeyUnwrapParams) ([]byte, string, error) {
	var params map[string][][]byte
	if u.DC != nil {
		params = u.DC.Parameters
	}
	sel, err := p.identities(params)
	if err != nil {
		return nil, "", err
	}
	blob := u.Annotation
	env, err := envelope.Parse(blob)
	switch {
	case err == nil:
		return p.open(ctx, env, sel)
	case !errors.Is(err, envelope.ErrNotEnvelope):
		return nil, "", err
	case legacy.IsApple(blob):
		out, err := p.openApple(blob, sel)
		return out, "legacy-apple", err
	case isGCPLegacy(blob):
		if sel.selected && len(sel.kmsKIDs) == 0 {
			return nil, "legacy-gcpkms", errors.New("this layer was encrypted by the GCP KMS key provider, and the decryption config names no gcpkms:// key")
		}
		out, err := p.plugins().For("gcpkms").OpenLegacy(ctx, blob)
		return out, "legacy-gcpkms", err
	}
	return nil, "", errors.New("the layer's annotation is not an ocikp envelope or a known legacy format")
}

// Work one unwrap may cause, whatever the layer holds: private-key
// operations (a stanza without a tag is tried against every key) and KMS
// calls. Far above what a real layer needs: tagged stanzas reach only
// their key, and a layer has a few KMS recipients at most.
const (
	MaxKeyAttempts = 64
	MaxKMSAttempts = 8
)

// budget counts the attempts of one request (what: of what, for the
// error; formatted only then).
type budget struct {
	left, max int
	what      string
	hit       bool
}

func (b *budget) take() bool {
	if b.left == 0 {
		b.hit = true
		return false
	}
	b.left--
	return true
}

func (b *budget) failure() []error {
	if !b.hit {
		return nil
	}
	return []error{fmt.Errorf("stopped after %d %s; the rest of the layer's stanzas were not tried", b.max, b.what)}
}

// budgeted is an identity that stops when its request's budget is spent;
// match says which stanzas cost an attempt.
type budgeted struct {
	id    envelope.Identity
	match func(*envelope.Stanza) bool
	b     *budget
	ctx   context.Context // ends a key file's wait to open (soft.MaxDerivations)
	name  string          // a keystore key's name, for lockedError
}

func (c *budgeted) Unwrap(s *envelope.Stanza) ([]byte, error) {
	if !c.match(s) || !c.b.take() {
		return nil, envelope.ErrIncorrectIdentity
	}
	var out []byte
	var err error
	if id, ok := c.id.(interface {
		UnwrapContext(context.Context, *envelope.Stanza) ([]byte, error)
	}); ok {
		out, err = id.UnwrapContext(c.ctx, s)
	} else {
		out, err = c.id.Unwrap(s)
	}
	if c.name != "" && (errors.Is(err, soft.ErrPassphraseNeeded) || errors.Is(err, soft.ErrBadPassphrase)) {
		err = &lockedError{name: c.name, tagged: len(s.Tag) > 0, err: err}
	}
	return out, err
}

// lockedError is a key that matched a stanza but stayed sealed: no
// passphrase, or a wrong one. A failed unwrap leads with it: the user
// lacks a passphrase, not a key.
type lockedError struct {
	name   string
	tagged bool // the stanza's tag is this key's: it can open the layer
	err    error
}

func (e *lockedError) Error() string { return e.err.Error() }
func (e *lockedError) Unwrap() error { return e.err }

// PassphraseError is a failed unwrap that a sealed keystore key could
// have done with its passphrase. It wraps the NoIdentityError.
type PassphraseError struct {
	Key    string
	Wrong  bool // a passphrase was given, and it was not this key's
	Tagged bool // the layer's stanza carries the key's tag
	err    *envelope.NoIdentityError
}

func (e *PassphraseError) Error() string {
	can := "can"
	if !e.Tagged {
		can = "may" // an untagged stanza could be anyone's
	}
	what := "needs its passphrase"
	if e.Wrong {
		what = "the passphrase given is wrong"
	}
	return fmt.Sprintf("key %q %s open this layer but %s; it was encrypted for %s", e.Key, can, what, envelope.Describe(e.err.Stanzas))
}

func (e *PassphraseError) Unwrap() error { return e.err }

// passphraseFirst returns a PassphraseError for the first sealed key
// among failures, preferring one whose tag matched; nil if none.
func (p *Provider) passphraseFirst(failures []error, nie *envelope.NoIdentityError) error {
	var found *lockedError
	for _, f := range failures {
		var le *lockedError
		if errors.As(f, &le) && (found == nil || le.tagged && !found.tagged) {
			found = le
		}
	}
	// A remote client is not told which keys the service holds or which
	// are locked: the service's log says it (localFailures).
	if found == nil || p.Remote {
		return nil
	}
	pe := &PassphraseError{Key: found.name, Wrong: errors.Is(found.err, soft.ErrBadPassphrase), Tagged: found.tagged, err: nie}
	advice := "set OCIKP_PASSPHRASE_FILE (or OCIKP_PASSPHRASE) for unattended decryption, or add --passphrase-file FILE to ocikp's args in OCICRYPT_KEYPROVIDER_CONFIG"
	if pe.Wrong {
		advice = "check the passphrase in OCIKP_PASSPHRASE_FILE, OCIKP_PASSPHRASE or --passphrase-file"
	}
	return hint.Wrap(pe, advice)
}

// open tries local keys first (cheap, offline), then the KMS plugin, so a
// layer that a local key opens never starts the plugin or calls a KMS.
func (p *Provider) open(ctx context.Context, env *envelope.Envelope, sel *selection) ([]byte, string, error) {
	fk, typ, err := p.openFileKey(ctx, env, sel)
	if err != nil {
		return nil, "", err
	}
	out, err := env.OpenPayload(fk)
	return out, typ, err
}

// OpenFileKey recovers the file key of env with the keystore's keys, then
// the KMS plugins, under the budgets and with the errors of an unwrap, and
// checks it against the payload: the first step of a rewrap. It also
// returns the type of the stanza that opened it.
func (p *Provider) OpenFileKey(ctx context.Context, env *envelope.Envelope) ([]byte, string, error) {
	sel, err := p.identities(nil)
	if err != nil {
		return nil, "", err
	}
	fk, typ, err := p.openFileKey(ctx, env, sel)
	if err != nil {
		return nil, "", err
	}
	if _, err := env.OpenPayload(fk); err != nil {
		return nil, "", err
	}
	return fk, typ, nil
}

func (p *Provider) openFileKey(ctx context.Context, env *envelope.Envelope, sel *selection) ([]byte, string, error) {
	keyBudget := &budget{left: MaxKeyAttempts, max: MaxKeyAttempts, what: "private-key attempts"}
	ids := make([]envelope.Identity, len(sel.keys))
	for i, k := range sel.keys {
		ids[i] = &budgeted{id: k, match: k.Matches, b: keyBudget, ctx: ctx, name: k.Name()}
	}
	if p.debugging() {
		p.debug("unwrap", "stanzas", len(env.Recipients), "keys", len(sel.keys))
	}
	fk, s, err := env.UnwrapStanza(ids...)
	var nie *envelope.NoIdentityError
	var local []error // failures of local keys
	if errors.As(err, &nie) {
		local = append(slices.Clone(nie.Failures), sel.skipped...)
		nie.Failures = nil
	}
	kmsBudget := &budget{left: MaxKMSAttempts, max: MaxKMSAttempts, what: "KMS calls"}
	if nie != nil && hasKMSStanza(env) && (!sel.selected || len(sel.kmsKIDs) > 0) {
		p.debug("unwrap: trying the KMS plugin")
		fk, s, err = env.UnwrapStanza(p.kmsIdentities(ctx, env, sel.kmsKIDs, kmsBudget)...)
		errors.As(err, &nie)
	}
	if errors.As(err, &nie) {
		// A spent budget first: it says why the rest was not tried.
		budgets := append(keyBudget.failure(), kmsBudget.failure()...)
		locked := p.passphraseFirst(local, nie)
		nie.Failures = append(append(budgets, p.localFailures(local)...), nie.Failures...)
		if locked != nil {
			return nil, "", locked
		}
		return nil, "", p.noKeyError(nie, sel)
	}
	if err != nil {
		return nil, "", err
	}
	return fk, s.Type, nil
}

// kmsIdentities returns one plugin identity per KMS stanza type in env, so
// that each stanza goes to the plugin of its cloud, within b.
func (p *Provider) kmsIdentities(ctx context.Context, env *envelope.Envelope, kids []string, b *budget) []envelope.Identity {
	var ids []envelope.Identity
	seen := map[string]bool{}
	for _, s := range env.Recipients {
		c := p.plugins().For(s.Type)
		if c == nil || seen[s.Type] {
			continue
		}
		seen[s.Type] = true
		id := &plugin.Identity{Client: c, Types: []string{s.Type}, KIDs: kids, Ctx: ctx}
		ids = append(ids, &budgeted{id: id, match: id.Matches, b: b})
	}
	return ids
}

func hasKMSStanza(env *envelope.Envelope) bool {
	for _, s := range env.Recipients {
		if kms.IsStanza(s.Type) {
			return true
		}
	}
	return false
}

func (p *Provider) openApple(blob []byte, sel *selection) ([]byte, error) {
	a, err := legacy.ParseApple(blob)
	if err != nil {
		return nil, err
	}
	// A copy: with CacheKeys, sel.skipped is shared by concurrent requests.
	failures := slices.Clone(sel.skipped)
	tried := 0
	for _, k := range sel.keys {
		// The Apple format is P-256 ECDH: only keys that offer it.
		p2, ok := k.(interface {
			KeyExchanger() (ecdh.KeyExchanger, error)
		})
		if !ok {
			continue
		}
		if tried == MaxKeyAttempts {
			failures = append(failures, fmt.Errorf("stopped after %d private-key attempts", MaxKeyAttempts))
			break
		}
		tried++
		kx, err := p2.KeyExchanger()
		if err != nil {
			failures = append(failures, err)
			continue
		}
		if out, err := a.Open(kx); err == nil {
			return out, nil
		}
	}
	// The Apple format has no key hints: every key is tried.
	nie := &envelope.NoIdentityError{Failures: p.localFailures(failures),
		Stanzas: []*envelope.Stanza{{Type: "apple-keychain", KID: a.KeyURL}}}
	return nil, p.noKeyError(nie, sel)
}

// noKeyError explains a failed unwrap: what the layer was encrypted for
// (in err), which keys were tried, and what to do.
func (p *Provider) noKeyError(err error, sel *selection) error {
	names := make([]string, len(sel.keys))
	for i, k := range sel.keys {
		names[i] = k.Name()
	}
	var tried string
	switch {
	case p.Remote:
		tried = fmt.Sprintf("tried %d key(s) of the service's keystore", len(sel.keys)+len(sel.kmsKIDs))
	case sel.selected:
		tried = fmt.Sprintf("tried the %d key(s) the decryption config named: %s", len(sel.keys)+len(sel.kmsKIDs), strings.Join(append(names, sel.kmsKIDs...), ", "))
	case len(sel.keys) == 0:
		tried = fmt.Sprintf("keystore %s has no usable keys", p.Store.Dir)
	default:
		tried = fmt.Sprintf("tried %d key(s) in keystore %s: %s", len(sel.keys), p.Store.Dir, strings.Join(names, ", "))
	}
	advice := "import the private key of one of those recipients (ocikp import NAME), or point OCIKP_KEYSTORE at a keystore that has one"
	// A key that matched but could not be used (locked, unreadable, a KMS
	// refusal) says best what to do.
	var nie *envelope.NoIdentityError
	if errors.As(err, &nie) {
		failed := false
		for _, f := range nie.Failures {
			if h := hint.Of(f); len(h) > 0 {
				advice, failed = h[0], true
				break
			}
		}
		// A layer for a TPM's EK opens only once the EK is enrolled.
		if p.Store != nil && !failed {
			if h := tpm.EnrolHint(p.Store.Dir, nie.Stanzas); h != "" {
				advice = h
			}
		}
	}
	return hint.Wrap(err, tried, advice)
}

// localFailures are what local keys said (a locked key, an unreadable
// file): for a remote client, only how many, as they name keys and paths;
// the service's log has them.
func (p *Provider) localFailures(errs []error) []error {
	if !p.Remote || len(errs) == 0 {
		return errs
	}
	for _, err := range errs {
		p.logFailure("keystore key failed", err)
	}
	return []error{fmt.Errorf("%d keystore key(s) could not be used; the service's log says why", len(errs))}
}

// selection is what an unwrap may use.
type selection struct {
	keys     []backend.Key // local keys
	kmsKIDs  []string      // KMS key URLs named in the decryption config
	selected bool          // the decryption config named keys: use only those
	skipped  []error       // key files that could not be read
}

// identities returns the keys to try: those named in the decryption
// parameters, else every key in the store (and, for KMS stanzas, any KMS
// key the plugin can use).
func (p *Provider) identities(params map[string][][]byte) (*selection, error) {
	sel := &selection{}
	values := p.unwrapEntry(params)
	for i, v := range values {
		sel.selected = true
		got, ok, err := backend.Decrypt(env{p, context.Background()}, string(v))
		if !ok {
			var k backend.Key
			k, err = p.namedKey(string(v))
			got.Keys = []backend.Key{k}
		}
		if err != nil {
			return nil, fmt.Errorf("decryption key %d of %d: %w", i+1, len(values), err)
		}
		sel.keys = append(sel.keys, got.Keys...)
		sel.kmsKIDs = append(sel.kmsKIDs, got.KMS...)
	}
	if sel.selected {
		return sel, nil
	}
	if p.CacheKeys {
		sel, err := p.cachedKeys(sel)
		return sel, p.redact(err)
	}
	return sel, p.redact(p.listKeys(sel))
}

// keystoreName is how errors name the keystore: its path for a local
// caller, nothing a remote client could learn from.
func (p *Provider) keystoreName() string {
	if p.Remote {
		return "the service's keystore"
	}
	return "keystore " + p.Store.Dir
}

// redact returns err for a local caller; for a remote one it logs err and
// returns a message without paths or key names.
func (p *Provider) redact(err error) error {
	if err == nil || !p.Remote {
		return err
	}
	p.logFailure("keystore error", err)
	return errors.New("the service's keystore could not be read; the service's log says why")
}

// logFailure logs what a remote client is not told.
func (p *Provider) logFailure(msg string, err error) {
	if p.Log != nil {
		p.Log.Warn(msg, "err", err.Error())
	}
}

// cachedKeys returns the cached identities, reloading them when the
// keystore directory changed (keys are created, replaced and deleted by
// link, rename and unlink, all of which change its mtime).
func (p *Provider) cachedKeys(sel *selection) (*selection, error) {
	var stamp [2]time.Time
	if fi, err := os.Stat(p.Store.Dir); err == nil {
		stamp[0] = fi.ModTime()
	}
	stamp[1] = p.Refs().Stamp()
	for _, st := range backend.StoredKinds() {
		if s := st.Stamp(p.Store.Dir); s.After(stamp[1]) {
			stamp[1] = s
		}
	}
	c := &p.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keys == nil || !stamp[0].Equal(c.stamp[0]) || !stamp[1].Equal(c.stamp[1]) {
		fresh := &selection{}
		if err := p.listKeys(fresh); err != nil {
			return nil, err
		}
		c.keys, c.skipped, c.stamp = fresh.keys, fresh.skipped, stamp
	}
	sel.keys, sel.skipped = c.keys, c.skipped
	return sel, nil
}

// listKeys reads every key of the store into sel.
func (p *Provider) listKeys(sel *selection) error {
	entries, err := p.Store.List()
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Err != nil {
			sel.skipped = append(sel.skipped, e.Err)
			continue
		}
		sel.keys = append(sel.keys, e.Key.Identity(p.Passphrase))
	}
	for _, e := range p.Refs().List() {
		if e.Err != nil {
			sel.skipped = append(sel.skipped, e.Err)
			continue
		}
		sel.keys = append(sel.keys, e.Ref.Identity(p.keychain(), p.Passphrase))
	}
	for _, st := range backend.StoredKinds() {
		for _, e := range st.List(p.Store.Dir, p.Passphrase) {
			if e.Err != nil {
				sel.skipped = append(sel.skipped, e.Err)
				continue
			}
			sel.keys = append(sel.keys, e.Key)
		}
	}
	return nil
}

// storedKey returns the keystore's key of a registered stored kind (a TPM
// key) by name; an error wrapping backend.ErrNoStoredKey if none has it.
func (p *Provider) storedKey(name string) (backend.Key, error) {
	for _, st := range backend.StoredKinds() {
		k, err := st.Get(p.Store.Dir, name, p.Passphrase)
		if !errors.Is(err, backend.ErrNoStoredKey) {
			return k, err
		}
	}
	return nil, backend.ErrNoStoredKey
}

// unwrapEntry returns the values in dc.Parameters that name ocikp keys.
// "Enabled" means "no specific key". Without --name, an entry is taken as
// ours only when each of its values names a key in the keystore.
func (p *Provider) unwrapEntry(params map[string][][]byte) [][]byte {
	strip := func(vs [][]byte) [][]byte {
		var out [][]byte
		for _, v := range vs {
			if string(v) != Enabled && len(v) > 0 {
				out = append(out, v)
			}
		}
		return out
	}
	if p.Name != "" {
		return strip(params[p.Name])
	}
	for _, vs := range params {
		vs = strip(vs)
		ok := len(vs) > 0
		for _, v := range vs {
			ok = ok && (p.hasKey(string(v)) || backend.IsDecrypt(string(v)))
		}
		if ok {
			return vs
		}
	}
	return nil
}

func (p *Provider) hasKey(name string) bool {
	if !soft.ValidName(name) {
		return false
	}
	_, err := os.Stat(filepath.Join(p.Store.Dir, name+".key"))
	if err == nil || p.Refs().Has(name) {
		return true
	}
	_, err = p.storedKey(name)
	return !errors.Is(err, backend.ErrNoStoredKey)
}

// namedKey resolves a decryption key value: a keystore name, or a path to a
// key file (ocikp key file or PEM). The value came in the request, so
// errors describe it without quoting it.
func (p *Provider) namedKey(v string) (backend.Key, error) {
	if p.Remote && strings.ContainsAny(v, `/\`) {
		// Nothing is opened: a client must not choose which file the
		// service reads.
		return nil, hint.Wrap(errors.New("the service takes keystore key names as decryption keys, not file paths"),
			"name a key of the service's keystore, or pass the bare provider:NAME to try every key")
	}
	if !strings.ContainsRune(v, os.PathSeparator) {
		if !soft.ValidName(v) {
			return nil, hint.Wrap(errors.New("neither a key name nor a key file path"), keyParamHint)
		}
		k, err := p.Store.Get(v)
		if errors.Is(err, soft.ErrNotFound) {
			ref, rerr := p.Refs().Get(v)
			if rerr == nil {
				return ref.Identity(p.keychain(), p.Passphrase), nil
			}
			if !errors.Is(rerr, keychain.ErrNotFound) {
				return nil, p.redact(rerr)
			}
			if sk, serr := p.storedKey(v); !errors.Is(serr, backend.ErrNoStoredKey) {
				return sk, p.redact(serr)
			}
			return nil, p.noKeyNamed(v, keyParamHint)
		}
		if err != nil {
			return nil, p.redact(err)
		}
		return k.Identity(p.Passphrase), nil
	}
	k, err := soft.ReadKey(v)
	if err != nil {
		// Strip the path the request gave from what the error says.
		msg := strings.ReplaceAll(err.Error(), v, "the named file")
		return nil, hint.Wrap(fmt.Errorf("key file: %s", msg),
			"key files must be ocikp key files (any type) or PEM P-256 private keys, mode 0600")
	}
	return k.Identity(p.Passphrase), nil
}

// noKeyNamed says that the keystore has no key name: for a local caller
// with the name (the user's own words) and the closest name it holds; a
// remote client learns no key names, so is neither told nor shown any.
func (p *Provider) noKeyNamed(name, advice string) error {
	if p.Remote {
		return hint.Wrap(fmt.Errorf("no key of that name in %s", p.keystoreName()), advice)
	}
	var names []string
	if entries, err := p.Store.List(); err == nil {
		for _, e := range entries {
			names = append(names, e.Name)
		}
	}
	for _, e := range p.Refs().List() {
		names = append(names, e.Name)
	}
	for _, st := range backend.StoredKinds() {
		for _, e := range st.List(p.Store.Dir, nil) {
			names = append(names, e.Name)
		}
	}
	err := fmt.Errorf("no key %.70q in %s", name, p.keystoreName())
	if h := suggest.Hint(name, names); h != "" {
		return hint.Wrap(err, h, advice)
	}
	return hint.Wrap(err, advice)
}

const keyParamHint = "name a key from 'ocikp list' or a key file path, or pass the bare provider:NAME to try every key"

// isGCPLegacy reports the GCP KMS provider's {"key_url","wrapped_key","wrap_type"}.
func isGCPLegacy(blob []byte) bool {
	s := string(blob)
	return strings.Contains(s, `"key_url"`) && strings.Contains(s, `"wrapped_key"`)
}

// Candidates names the keystore keys whose tag marks a stanza of env as
// theirs, and the KMS keys its stanzas name, without a private-key
// operation or a KMS call (inspect --keys). An untagged P-256 stanza could
// be anyone's and names no key.
func (p *Provider) Candidates(env *envelope.Envelope) []string {
	sel, err := p.identities(nil)
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range env.Recipients {
		switch {
		case len(s.Tag) > 0:
			for _, k := range sel.keys {
				if k.Matches(s) {
					out = append(out, k.Name())
				}
			}
		case s.KID != "" && kms.IsStanza(s.Type):
			out = append(out, "kms "+safetext.Token(s.KID, 200))
		}
	}
	return out
}

// OpenBlob returns the secret (optsdata) of one wrapped-key blob with the
// keystore's keys and the KMS plugins, as an unwrap with no decryption
// parameters would: ocikp envelopes and the seed providers' formats
// (migrate's first step).
func (p *Provider) OpenBlob(ctx context.Context, blob []byte) ([]byte, error) {
	out, _, err := p.unwrap(ctx, &protocol.KeyUnwrapParams{Annotation: blob})
	return out, err
}

// RecipientOfStanza returns a recipient that a stanza was written for, when
// it can be known without its private key: a KMS stanza's key URL, or a
// tagged P-256 stanza whose tag matches a key of the keystore. Rotating a
// layer's key needs every remaining recipient this way.
func (p *Provider) RecipientOfStanza(ctx context.Context, s *envelope.Stanza) (envelope.Recipient, error) {
	// Only a KMS key URL: a key id from a layer must not name a
	// keystore key (recipientFor also takes names).
	if s.KID != "" && kms.IsStanza(s.Type) && kms.IsURL(s.KID) {
		return p.recipientFor(ctx, s.KID)
	}
	if len(s.Tag) > 0 {
		sel, err := p.identities(nil)
		if err != nil {
			return nil, err
		}
		for _, k := range sel.keys {
			if r, ok := k.(interface {
				Recipient() (envelope.Recipient, error)
			}); ok && k.Matches(s) {
				return r.Recipient()
			}
		}
	}
	return nil, fmt.Errorf("%s: its recipient is not known here (no keystore key has its tag); name it with --add", s.Hint())
}
