package imagekeys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/safetext"
)

// Image is what a name points at: one manifest, or the whole graph an
// index reaches. Nested indexes are followed (containerd and skopeo pull
// through them), bounded by MaxIndexDepth and MaxGraphEntries; an entry
// that cannot be read refuses the image, so a manifest holding encrypted
// layers is never skipped. Only artifacts a runtime never pulls are
// passed over, by the rule of artifact, and listed in PassedOver.
type Image struct {
	Name      string
	Raw       []byte
	MediaType string
	Digest    string
	Index     *Index
	// Manifests are every image manifest the name reaches, each once,
	// depth first in index order.
	Manifests []*PlatformManifest
	// PassedOver are the artifacts left as they are.
	PassedOver []*PassedOver
	// children are the nested indexes, by the digest they were read by;
	// skipped are passed-over manifests, kept for their blobs.
	children map[string]*Index
	skipped  []*Manifest
}

// PlatformManifest is one image manifest of an Image.
type PlatformManifest struct {
	Platform string // "" for a lone manifest; a nested entry without one takes its index's
	Digest   string
	// Via are the digests of the nested indexes between the name's index
	// and this manifest; empty for an entry of the name's own index.
	Via   []string
	M     *Manifest
	entry *Descriptor // its index entry
}

// PassedOver is an index entry left as it is: an artifact a runtime never
// pulls, holding no encrypted layer.
type PassedOver struct {
	Digest    string   `json:"digest"`
	MediaType string   `json:"mediaType"`
	Platform  string   `json:"platform,omitempty"`
	Via       []string `json:"via,omitempty"`
	Reason    string   `json:"reason"`
}

// LoadTimeout bounds reading the whole graph a name reaches: each reply
// has its own bound (ReplyTimeout), and a graph has up to
// MaxGraphEntries of them.
var LoadTimeout = 10 * time.Minute

// Load resolves the name in st and reads every manifest and index it
// reaches, within LoadTimeout.
func Load(ctx context.Context, name string, st Store) (*Image, error) {
	stalled := fmt.Errorf("%w: the image's manifests were not all read within %v", ErrRegistryStalled, LoadTimeout)
	lctx, cancel := context.WithTimeoutCause(ctx, LoadTimeout, stalled)
	defer cancel()
	img, err := load(lctx, name, st)
	if err != nil && ctx.Err() == nil && context.Cause(lctx) == stalled {
		return nil, stalled
	}
	return img, err
}

func load(ctx context.Context, name string, st Store) (*Image, error) {
	raw, mt, dg, err := st.Resolve(ctx)
	if err != nil {
		return nil, err
	}
	img := &Image{Name: name, Raw: raw, MediaType: mt, Digest: dg}
	if mt == "" {
		mt = sniffMediaType(raw)
		img.MediaType = mt
	}
	if !IsIndex(mt) {
		m, err := ParseManifest(raw, mt)
		if err != nil {
			return nil, err
		}
		img.Manifests = []*PlatformManifest{{Digest: dg, M: m}}
		return img, nil
	}
	if img.Index, err = ParseIndex(raw, mt); err != nil {
		return nil, err
	}
	ld := &loader{st: st, img: img, seen: map[string]bool{dg: true}, bytes: len(raw)}
	if err := ld.index(ctx, img.Index, 1, nil, ""); err != nil {
		return nil, err
	}
	return img, nil
}

// loader walks an index graph within the bounds of the whole image.
type loader struct {
	st                     Store
	img                    *Image
	seen                   map[string]bool
	entries, bytes, layers int
}

// EntryError names the index entry an error is about.
type EntryError struct {
	Digest, MediaType string
	Via               []string
	Err               error
}

func (e *EntryError) Error() string {
	w := "index entry " + safetext.Token(e.Digest, 80) + " (" + safetext.Token(e.MediaType, 100) + ")"
	if len(e.Via) > 0 {
		w += " under " + safetext.Token(e.Via[len(e.Via)-1], 80)
	}
	return w + ": " + e.Err.Error()
}

// Unwrap gives the cause and, when the entry's content is at fault (a
// bound, a forgery) rather than the way to it, ErrManifest: no retry or
// other credentials will help.
func (e *EntryError) Unwrap() []error {
	if errors.Is(e.Err, ErrGraph) || errors.Is(e.Err, ErrDigest) {
		return []error{e.Err, ErrManifest}
	}
	return []error{e.Err}
}

// ErrGraph marks an index graph beyond the bounds or holding an entry
// ocikp cannot handle.
var ErrGraph = errors.New("the image cannot be handled whole")

func (ld *loader) index(ctx context.Context, x *Index, depth int, via []string, platform string) error {
	for _, d := range x.Manifests {
		fail := func(err error) error {
			return &EntryError{Digest: d.Digest, MediaType: d.MediaType, Via: via, Err: err}
		}
		if ld.entries++; ld.entries > MaxGraphEntries {
			return fail(fmt.Errorf("%w: its indexes list more than %d entries in all", ErrGraph, MaxGraphEntries))
		}
		if ld.seen[d.Digest] {
			continue // read once; Write updates every entry naming it
		}
		ld.seen[d.Digest] = true
		raw, fetched, err := ld.st.Fetch(ctx, d.Digest)
		if err == nil {
			err = d.checkSize(raw)
		}
		if err != nil {
			return fail(err)
		}
		if ld.bytes += len(raw); ld.bytes > MaxImageBytes {
			return fail(fmt.Errorf("%w: more than %d MiB of manifests and indexes", ErrGraph, MaxImageBytes>>20))
		}
		// The document's own media type wins: what it says it is, it is
		// read as.
		mt := sniffDeclared(raw)
		if mt == "" {
			mt = d.MediaType
		}
		if mt == "" {
			mt = fetched
		}
		p := platform
		if d.Platform != nil {
			p = d.Platform.String()
		}
		switch {
		case IsIndex(mt):
			if depth+1 > MaxIndexDepth {
				return fail(fmt.Errorf("%w: indexes nest more than %d deep", ErrGraph, MaxIndexDepth))
			}
			child, err := ParseIndex(raw, mt)
			if err != nil {
				return fail(err)
			}
			if ld.img.children == nil {
				ld.img.children = map[string]*Index{}
			}
			ld.img.children[d.Digest] = child
			if err := ld.index(ctx, child, depth+1, append(via[:len(via):len(via)], d.Digest), p); err != nil {
				return err
			}
		case mt == MediaOCIManifest || mt == MediaDockerManifest:
			m, err := ParseManifest(raw, mt)
			if err != nil {
				return fail(err)
			}
			if ld.layers += len(m.Layers); ld.layers > MaxImageLayers {
				return fail(fmt.Errorf("%w: more than %d layers", ErrGraph, MaxImageLayers))
			}
			if why := artifact(d, raw); why != "" && !hasEncrypted(m) {
				ld.passOver(d, mt, p, via, why)
				ld.img.skipped = append(ld.img.skipped, m)
				continue
			}
			ld.img.Manifests = append(ld.img.Manifests, &PlatformManifest{Platform: p, Digest: d.Digest, Via: via, M: m, entry: d})
		default:
			why := artifact(d, raw)
			if why == "" {
				return fail(fmt.Errorf("%w: neither an image manifest nor an index, nor an artifact a runtime never pulls", ErrGraph))
			}
			if encryptionMarks(raw) {
				return fail(fmt.Errorf("%w: an artifact that names encrypted content ocikp cannot rewrap", ErrGraph))
			}
			ld.passOver(d, mt, p, via, why)
		}
	}
	return nil
}

func (ld *loader) passOver(d *Descriptor, mt, platform string, via []string, why string) {
	if len(mt) > 255 { // RFC 6838 allows 127 characters per part
		mt = mt[:255] + "…"
	}
	ld.img.PassedOver = append(ld.img.PassedOver, &PassedOver{Digest: d.Digest, MediaType: mt, Platform: platform, Via: via, Reason: why})
}

// Attestation manifests (BuildKit's, in the index beside the image they
// describe) and referrers artifacts (signatures, SBOMs: an artifactType)
// are never pulled by a runtime.
const dockerReferenceType = "vnd.docker.reference.type"

// artifact says why an entry is an artifact a runtime never pulls, or "".
func artifact(d *Descriptor, raw []byte) string {
	if d.Annotations[dockerReferenceType] == "attestation-manifest" {
		return "attestation manifest"
	}
	if d.raw.str("artifactType") != "" {
		return "artifact (artifactType on its entry)"
	}
	if o, err := parseObject(raw); err == nil && o.str("artifactType") != "" {
		return "artifact (artifactType)"
	}
	return ""
}

func hasEncrypted(m *Manifest) bool {
	for _, l := range m.Layers {
		if Encrypted(l.MediaType) || len(Wrappings(l.Annotations)) > 0 {
			return true
		}
	}
	return false
}

// encryptionMarks reports whether a document ocikp cannot parse as a
// manifest still names encrypted content anywhere: a media type ending
// in +encrypted or an org.opencontainers.image.enc. annotation. It reads
// the decoded JSON, so escapes in the text hide nothing.
func encryptionMarks(raw []byte) bool {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return true // unreadable: assume the worst
	}
	var walk func(v any) bool
	walk = func(v any) bool {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if strings.HasPrefix(k, "org.opencontainers.image.enc.") {
					return true
				}
				if s, ok := e.(string); ok && k == "mediaType" && strings.HasSuffix(s, "+encrypted") {
					return true
				}
				if walk(e) {
					return true
				}
			}
		case []any:
			for _, e := range v {
				if walk(e) {
					return true
				}
			}
		}
		return false
	}
	return walk(v)
}

// sniffDeclared is the mediaType a document declares, or "".
func sniffDeclared(raw []byte) string {
	o, err := parseObject(raw)
	if err != nil {
		return ""
	}
	return o.str("mediaType")
}

func sniffMediaType(raw []byte) string {
	o, err := parseObject(raw)
	if err != nil {
		return ""
	}
	if mt := o.str("mediaType"); mt != "" {
		return mt
	}
	if _, ok := o["manifests"]; ok {
		return MediaOCIIndex
	}
	return MediaOCIManifest
}

// LayerReport is inspect's view of one layer.
type LayerReport struct {
	Index     int         `json:"index"`
	Digest    string      `json:"digest"`
	MediaType string      `json:"mediaType"`
	Size      int64       `json:"size"`
	Encrypted bool        `json:"encrypted"`
	Wrappings []*Wrapping `json:"wrappings,omitempty"`
	// Strength is the layer's, that of its weakest wrapping: "classical"
	// if any recipient (or JWE, PKCS#7, PGP wrapping) is, else "unknown"
	// if one cannot be told, else "post-quantum"; "" when not encrypted.
	Strength string `json:"strength,omitempty"`
	// Keys that could open the layer, decided from tags and key ids
	// without a private-key operation (inspect --keys).
	Keys []string `json:"keys,omitempty"`
}

// PlatformReport is inspect's view of one image manifest.
type PlatformReport struct {
	Platform string `json:"platform,omitempty"`
	Digest   string `json:"digest"`
	// Via are the nested indexes the manifest is reached through.
	Via    []string      `json:"via,omitempty"`
	Layers []LayerReport `json:"layers"`
}

// Report is what inspect prints.
type Report struct {
	Image     string           `json:"image"`
	Digest    string           `json:"digest"`
	MediaType string           `json:"mediaType"`
	Platforms []PlatformReport `json:"platforms"`
	// PassedOver are the artifacts the image's indexes list that ocikp
	// leaves as they are (docs/image-keys.md).
	PassedOver []*PassedOver `json:"passedOver,omitempty"`
}

// KeyFinder names the local keys that could open an envelope (inspect
// --keys): keyprovider.Provider.
type KeyFinder interface {
	Candidates(env *envelope.Envelope) []string
}

// Inspect describes every layer of img; with keys, also which local keys
// could open it.
func Inspect(img *Image, keys KeyFinder) *Report {
	r := &Report{Image: img.Name, Digest: img.Digest, MediaType: img.MediaType, PassedOver: img.PassedOver}
	for _, pm := range img.Manifests {
		pr := PlatformReport{Platform: pm.Platform, Digest: pm.Digest, Via: pm.Via}
		for i, l := range pm.M.Layers {
			lr := LayerReport{Index: i, Digest: l.Digest, MediaType: l.MediaType, Size: l.Size,
				Encrypted: Encrypted(l.MediaType), Wrappings: Wrappings(l.Annotations)}
			if lr.Encrypted {
				lr.Strength = layerStrength(lr.Wrappings)
			}
			if keys != nil {
				for _, w := range lr.Wrappings {
					for _, env := range w.envelopes {
						if env != nil {
							lr.Keys = append(lr.Keys, keys.Candidates(env)...)
						}
					}
				}
			}
			pr.Layers = append(pr.Layers, lr)
		}
		r.Platforms = append(r.Platforms, pr)
	}
	return r
}

// LayerError names the platform and layer an error is about.
type LayerError struct {
	Platform string
	Index    int
	Digest   string
	Err      error
}

func (e *LayerError) Error() string { return e.where() + ": " + e.Err.Error() }

func (e *LayerError) where() string {
	w := fmt.Sprintf("layer %d (%s)", e.Index, e.Digest)
	if e.Platform != "" {
		w = "platform " + e.Platform + ", " + w
	}
	return w
}

func (e *LayerError) Unwrap() error { return e.Err }

// RewrapOptions say what a rewrap changes.
type RewrapOptions struct {
	Provider    string // the NAME of provider:NAME (ocikp)
	Add, Remove []*Target
	DryRun      bool
	// Rotate gives every layer a new layer key and blob (--rotate-layer-keys),
	// with the remaining recipients found by Known, blobs moved through
	// Blobs, and temporary files in TmpDir.
	Rotate bool
	Known  StanzaRecipients
	Blobs  BlobStore
	TmpDir string
}

// Status of one image's rewrap.
const (
	StatusRewrapped = "rewrapped"
	StatusUpToDate  = "up to date"
	StatusPlanned   = "planned" // dry run
	StatusFailed    = "failed"
	StatusSkipped   = "skipped"
)

// PlatformPlan is the plan for one image manifest.
type PlatformPlan struct {
	Platform string       `json:"platform,omitempty"`
	Layers   []*LayerPlan `json:"layers"`
}

// Result is one image's rewrap.
type Result struct {
	Image     string          `json:"image"`
	Status    string          `json:"status"`
	Reason    string          `json:"reason,omitempty"`
	OldDigest string          `json:"oldDigest,omitempty"`
	NewDigest string          `json:"newDigest,omitempty"`
	Platforms []*PlatformPlan `json:"platforms,omitempty"`
	// Verified: what the read-back after the write checked (VerifyRemoved).
	Verified []string `json:"verified,omitempty"`
	err      error
}

// Err is why the image failed (StatusFailed).
func (r *Result) Err() error { return r.err }

// Fail marks the result failed with err.
func (r *Result) Fail(err error) *Result {
	r.Status, r.Reason, r.err = StatusFailed, err.Error(), err
	return r
}

// ErrNotEncrypted marks an image without an encrypted layer.
var ErrNotEncrypted = errors.New("no layer of the image is encrypted")

// Plan opens every encrypted layer's file key and computes the new
// annotations in memory; nothing is written. Every encrypted layer must
// have an ocikp envelope, open with a local identity, and end with the
// same recipient set, or Plan fails naming the layer.
func Plan(ctx context.Context, img *Image, op Opener, o RewrapOptions) ([]*PlatformPlan, bool, error) {
	var plans []*PlatformPlan
	changed, encrypted := false, 0
	var firstSet, firstWhere string
	for _, pm := range img.Manifests {
		pp := &PlatformPlan{Platform: pm.Platform}
		for i, l := range pm.M.Layers {
			if !Encrypted(l.MediaType) {
				continue
			}
			encrypted++
			var lp *LayerPlan
			var err error
			if o.Rotate {
				lp, err = RotateLayer(ctx, l, o.Provider, op, o.Known, o.Blobs, o.Add, o.Remove, o.TmpDir, o.DryRun)
			} else {
				lp, err = RewrapLayer(ctx, l, o.Provider, op, o.Add, o.Remove, o.DryRun)
			}
			if err != nil {
				return nil, false, &LayerError{Platform: pm.Platform, Index: i, Digest: l.Digest, Err: err}
			}
			pp.Layers = append(pp.Layers, lp)
			changed = changed || lp.Changed()
			set := RecipientSet(lp.After)
			where := (&LayerError{Platform: pm.Platform, Index: i, Digest: l.Digest}).where()
			if firstSet == "" {
				firstSet, firstWhere = set, where
			} else if set != firstSet {
				return nil, false, fmt.Errorf("the layers would end with different recipients (%s [%s], %s [%s]); nothing was written",
					firstWhere, firstSet, where, set)
			}
		}
		plans = append(plans, pp)
	}
	if encrypted == 0 {
		return nil, false, ErrNotEncrypted
	}
	return plans, changed, nil
}

// Write stores the manifests Plan changed: each image manifest by digest,
// then each nested index that lists it (a new child is a new digest in its
// parent), children before their parents as a registry requires, then the
// name's index, and last the tag, unless the tag no longer points at what
// was read (ErrMoved). dst is st itself or another name (--to), which must
// already hold the blobs. It returns the new digest of the name.
func Write(ctx context.Context, img *Image, st, dst Store) (string, error) {
	same := dst == st
	old := img.Digest
	if !same {
		old = ""
	}
	if img.Index == nil {
		pm := img.Manifests[0]
		raw, err := pm.M.Marshal()
		if err != nil {
			return "", err
		}
		return digestOf(raw), dst.Retag(ctx, raw, pm.M.MediaType, old)
	}
	w := &writer{img: img, st: st, dst: dst, same: same, pms: map[string]*PlatformManifest{}, done: map[string]*Descriptor{}}
	for _, pm := range img.Manifests {
		w.pms[pm.Digest] = pm
	}
	if err := w.index(ctx, img.Index); err != nil {
		return "", err
	}
	raw, err := img.Index.Marshal()
	if err != nil {
		return "", err
	}
	return digestOf(raw), dst.Retag(ctx, raw, img.Index.MediaType, old)
}

type writer struct {
	img     *Image
	st, dst Store
	same    bool
	pms     map[string]*PlatformManifest
	done    map[string]*Descriptor // by the digest read: what it became
}

// index writes what x lists and points x's entries at it.
func (w *writer) index(ctx context.Context, x *Index) error {
	for _, e := range x.Manifests {
		read := e.Digest
		if d := w.done[read]; d != nil {
			e.Digest, e.Size = d.Digest, d.Size
			continue
		}
		var raw []byte
		var mt string
		var err error
		if pm := w.pms[read]; pm != nil {
			raw, err = pm.M.Marshal()
			mt = pm.M.MediaType
		} else if child := w.img.children[read]; child != nil {
			if err := w.index(ctx, child); err != nil {
				return err
			}
			raw, err = child.Marshal()
			mt = child.MediaType
		} else {
			// Passed over: copied as it is to another name.
			if !w.same {
				if raw, mt, err = w.st.Fetch(ctx, read); err != nil {
					return err
				}
				if mt == "" {
					mt = e.MediaType
				}
				if _, err := w.dst.Put(ctx, raw, mt); err != nil {
					return err
				}
			}
			w.done[read] = &Descriptor{Digest: e.Digest, Size: e.Size}
			continue
		}
		if err != nil {
			return err
		}
		d, err := w.dst.Put(ctx, raw, mt)
		if err != nil {
			if pm := w.pms[read]; pm != nil && pm.Platform != "" {
				return fmt.Errorf("platform %s (%s): %w", safetext.Token(pm.Platform, 80), safetext.Token(read, 80), err)
			}
			return fmt.Errorf("%s: %w", safetext.Token(read, 80), err)
		}
		e.Digest, e.Size = d, int64(len(raw))
		w.done[read] = &Descriptor{Digest: d, Size: e.Size}
	}
	return nil
}

// Blobs lists the config and layer digests of every manifest the image
// reaches, passed-over ones included (what another repository must hold
// before its manifests are written).
func (img *Image) Blobs() []string {
	seen := map[string]bool{}
	var out []string
	ms := img.skipped
	for _, pm := range img.Manifests {
		ms = append(ms, pm.M)
	}
	for _, m := range ms {
		for _, d := range append([]*Descriptor{m.Config}, m.Layers...) {
			if !seen[d.Digest] {
				seen[d.Digest] = true
				out = append(out, d.Digest)
			}
		}
	}
	return out
}

// layerStrength is the strength of a layer's weakest wrapping: a layer is
// only as strong as its weakest recipient.
func layerStrength(ws []*Wrapping) string {
	weakest := backend.PostQuantum
	note := func(st backend.Strength) {
		if st == backend.Classical || weakest == backend.PostQuantum {
			weakest = st
		}
	}
	if len(ws) == 0 {
		return backend.Unknown.String()
	}
	for _, w := range ws {
		switch w.Scheme {
		case "jwe", "pkcs7", "pgp", "pkcs11":
			note(backend.Classical) // RSA or elliptic-curve keys
			continue
		}
		for _, b := range w.Blobs {
			switch b.Format {
			case FormatAppleSeed:
				note(backend.Classical)
			case FormatGCPSeed:
				note(backend.PostQuantum) // a symmetric GCP KMS key
			case FormatOcikp:
				for _, r := range b.Recipients {
					note(backend.StanzaStrength(r.Type))
				}
			default:
				note(backend.Unknown)
			}
		}
	}
	return weakest.String()
}
