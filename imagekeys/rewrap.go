package imagekeys

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/safetext"
	"github.com/ocikp/ocikp/kms"
)

// Opener recovers an envelope's file key with local identities (the
// keystore, Keychain references, KMS plugins): keyprovider.Provider.
type Opener interface {
	OpenFileKey(ctx context.Context, env *envelope.Envelope) ([]byte, string, error)
	// CheckMix refuses a recipient set that mixes post-quantum and
	// classical-only recipients, unless the provider allows it.
	CheckMix(rs []envelope.Recipient) error
}

// Resolver turns what the user names (recipient, key name, KMS URL) into
// a recipient: keyprovider.Provider.
type Resolver interface {
	RecipientFor(ctx context.Context, v string) (envelope.Recipient, error)
}

// Target is one recipient named on the command line, with the test that
// recognises its stanza in an envelope without a private-key operation.
type Target struct {
	Spec string
	R    envelope.Recipient // nil for a hint that only removes
	// Keep marks --keep: a KMS key URL whose stanzas a rotation seals the
	// new layer key for. It adds nothing to a layer that lacks one.
	Keep  bool
	match func(*envelope.Stanza) bool
}

// Display is the target as output shows it: escaped, and a recipient
// string too long for a line (post-quantum ones run to 2 KB) cut to its
// two ends.
func (t *Target) Display() string { return Shorten(t.Spec) }

// Shorten escapes s as safetext.Token does and cuts its middle when it
// is longer than a line's worth.
func Shorten(s string) string {
	const head, tail = 40, 16
	if len(s) > head+tail+8 {
		return safetext.Token(s[:head], head) + "…" + safetext.Token(s[len(s)-tail:], tail)
	}
	return safetext.Token(s, len(s))
}

// Matches reports whether s was written for this target.
func (t *Target) Matches(s *envelope.Stanza) bool { return t.match(s) }

// NewTarget resolves spec for --add (a recipient is required) or --remove
// (a recipient, a KMS key URL as shown by inspect, or a stanza tag).
func NewTarget(ctx context.Context, res Resolver, spec string, forRemove bool) (*Target, error) {
	r, err := res.RecipientFor(ctx, spec)
	if err == nil {
		t := &Target{Spec: spec, R: r}
		// Recipients whose stanzas carry a tag say which are theirs.
		if tr, ok := r.(interface{ Matches(*envelope.Stanza) bool }); ok {
			t.match = tr.Matches
		} else {
			t.match = kidMatch(spec)
		}
		return t, nil
	}
	if !forRemove {
		return nil, err
	}
	// A hint from inspect: "p256 tag 1a2b3c4d", a bare tag, or a key id.
	h := strings.TrimSpace(spec)
	if _, rest, ok := strings.Cut(h, " tag "); ok {
		h = rest
	}
	if tag, herr := hex.DecodeString(h); herr == nil && len(tag) >= 4 {
		return &Target{Spec: spec, match: func(s *envelope.Stanza) bool { return bytes.Equal(s.Tag, tag) }}, nil
	}
	if strings.Contains(spec, "://") {
		return &Target{Spec: spec, match: kidMatch(spec)}, nil
	}
	return nil, err
}

// NewKeepTarget resolves --keep URL: a KMS key URL, as inspect shows it.
func NewKeepTarget(ctx context.Context, res Resolver, url string) (*Target, error) {
	if !kms.IsURL(url) {
		return nil, fmt.Errorf("%s is not a KMS key URL (schemes: %s); keystore keys are kept without it", Shorten(url), strings.Join(kms.Schemes, ", "))
	}
	t, err := NewTarget(ctx, res, url, false)
	if err != nil {
		return nil, err
	}
	t.Keep = true
	return t, nil
}

// kidMatch matches a KMS stanza by its key id: the URL itself, or a
// version of it (Azure pins versions as URL/VERSION).
func kidMatch(url string) func(*envelope.Stanza) bool {
	return func(s *envelope.Stanza) bool {
		return s.KID != "" && (s.KID == url || strings.HasPrefix(s.KID, url+"/"))
	}
}

// keep is a recipient that keeps a stanza of the envelope being resealed:
// it already wraps that envelope's file key.
type keep struct{ s *envelope.Stanza }

func (k keep) Wrap([]byte) (*envelope.Stanza, error) { return k.s, nil }

// Type and PostQuantum let the mixing rule judge a kept stanza.
func (k keep) Type() string { return k.s.Type }
func (k keep) PostQuantum() bool {
	return backend.StanzaStrength(k.s.Type) == backend.PostQuantum
}

// LayerPlan is what a rewrap does to one layer.
type LayerPlan struct {
	Before, After []RecipientInfo
	Added         []string // specs
	Removed       []RecipientInfo
	OpenedBy      string // stanza type that opened the file key
	// --rotate-layer-keys: a new layer key and blob; other schemes'
	// wrapped keys (of the old key) dropped.
	Rotated   bool     `json:",omitempty"`
	NewDigest string   `json:",omitempty"`
	Dropped   []string `json:",omitempty"`
	// NewKey is, for a rotation, every recipient of the old layer key and
	// of the new one, each marked kept, added, removed or dropped.
	NewKey []KeyChange `json:"newKey,omitempty"`
}

// KeyChange is what a rotation did with one recipient.
type KeyChange struct {
	Status    string `json:"status"`    // KeyKept, KeyAdded, KeyRemoved, KeyDropped
	Recipient string `json:"recipient"` // the stanza's hint, or the --add recipient
	Reason    string `json:"reason"`
}

// Statuses of a KeyChange.
const (
	KeyKept    = "kept"
	KeyAdded   = "added"
	KeyRemoved = "removed"
	KeyDropped = "dropped"
)

// Reasons of a KeyChange.
const (
	ReasonLocalKey   = "a key of this keystore"
	ReasonKeep       = "named with --keep"
	ReasonAdd        = "named with --add"
	ReasonRemove     = "named with --remove"
	ReasonNotConfirm = "a KMS key found in the image, not named with --keep"
)

// Changed reports whether the layer's annotation changes.
func (p *LayerPlan) Changed() bool { return p.Rotated || len(p.Added)+len(p.Removed) > 0 }

// ErrNoEnvelope marks an encrypted layer without an ocikp envelope under
// the provider name.
var ErrNoEnvelope = errors.New("no ocikp envelope")

// RewrapLayer computes and applies the new recipient set of one layer's
// ocikp envelope under provider: the file key is opened once, removed
// stanzas dropped, new recipients wrapped, the rest kept as they were.
// Other schemes' annotations are left as they are, byte for byte. With
// dryRun the layer is not changed, and the file key is still opened (a
// plan that could not be carried out is reported as such).
func RewrapLayer(ctx context.Context, l *Descriptor, provider string, op Opener, add, remove []*Target, dryRun bool) (*LayerPlan, error) {
	ol, err := openLayerKey(ctx, l, provider, op)
	if err != nil {
		return nil, err
	}
	env, fk, plan := ol.env, ol.fileKey, ol.plan
	kept, added := plan.partition(env, add, remove)
	var recips []envelope.Recipient
	for _, s := range kept {
		recips = append(recips, keep{s})
	}
	for _, t := range added {
		recips = append(recips, t.R)
	}
	if len(recips) == 0 {
		return nil, errNoneLeft
	}
	if !plan.Changed() {
		plan.After = plan.Before
		return plan, nil
	}
	if err := op.CheckMix(recips); err != nil {
		return nil, err
	}
	clone := *env
	if err := clone.Reseal(fk, recips...); err != nil {
		return nil, err
	}
	for _, s := range clone.Recipients {
		plan.After = append(plan.After, describeStanza(s))
	}
	if dryRun {
		return plan, nil
	}
	blob, err := clone.Marshal()
	if err != nil {
		return nil, err
	}
	ol.replace(l, blob)
	return plan, nil
}

var errNoneLeft = errors.New("removing those recipients would leave the layer with none")

// layerKey is a layer's ocikp envelope, opened.
type layerKey struct {
	annotation string
	parts      []string // the annotation's comma-separated blobs
	index      int      // which of them is the envelope
	env        *envelope.Envelope
	fileKey    []byte
	plan       *LayerPlan // Before and OpenedBy filled in
}

// openLayerKey finds the one ocikp envelope under provider and opens its
// file key with a local identity.
func openLayerKey(ctx context.Context, l *Descriptor, provider string, op Opener) (*layerKey, error) {
	key := ProviderPrefix + provider
	v, ok := l.Annotations[key]
	if !ok {
		return nil, ErrNoEnvelope
	}
	w := &Wrapping{Annotation: key, Scheme: "provider", Provider: provider}
	w.read(v)
	ol := &layerKey{annotation: key, index: -1, plan: &LayerPlan{}}
	for i, e := range w.envelopes {
		if e != nil {
			if ol.index >= 0 {
				return nil, errors.New("two ocikp envelopes under one annotation")
			}
			ol.index, ol.env = i, e
		}
	}
	if ol.env == nil {
		return nil, ErrNoEnvelope
	}
	ol.parts = strings.Split(v, ",") // at most maxBlobsPerScheme: read checked
	for _, s := range ol.env.Recipients {
		ol.plan.Before = append(ol.plan.Before, describeStanza(s))
	}
	fk, typ, err := op.OpenFileKey(ctx, ol.env)
	if err != nil {
		return nil, err
	}
	ol.fileKey, ol.plan.OpenedBy = fk, typ
	return ol, nil
}

// replace puts blob in place of the envelope, keeping the annotation's
// other blobs.
func (ol *layerKey) replace(l *Descriptor, blob []byte) {
	parts := slices.Clone(ol.parts)
	parts[ol.index] = base64.StdEncoding.EncodeToString(blob)
	l.Annotations[ol.annotation] = strings.Join(parts, ",")
}

// partition splits env's stanzas into those kept and those a remove
// target matches (recorded in the plan), and returns the add targets not
// already present (recorded too).
func (plan *LayerPlan) partition(env *envelope.Envelope, add, remove []*Target) (kept []*envelope.Stanza, added []*Target) {
	for _, s := range env.Recipients {
		if slices.ContainsFunc(remove, func(t *Target) bool { return t.Matches(s) }) {
			plan.Removed = append(plan.Removed, describeStanza(s))
			continue
		}
		kept = append(kept, s)
	}
	for _, t := range add {
		if !t.Keep && !slices.ContainsFunc(kept, t.Matches) {
			added = append(added, t)
			plan.Added = append(plan.Added, t.Spec)
		}
	}
	return kept, added
}

// RecipientSet is a layer's recipients as a comparable key: KMS stanzas
// by key id, the others by type only, since a P-256 stanza's tag differs
// on every layer. Used to check that every layer ends the same.
func RecipientSet(after []RecipientInfo) string {
	var parts []string
	for _, r := range after {
		if r.KID != "" {
			parts = append(parts, r.Type+" "+r.KID)
		} else {
			parts = append(parts, r.Type)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
