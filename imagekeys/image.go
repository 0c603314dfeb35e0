package imagekeys

import (
	"context"
	"errors"
	"fmt"
	"github.com/ocikp/ocikp/backend"

	"github.com/ocikp/ocikp/envelope"
)

// Image is what a name points at: one manifest, or an index and the image
// manifests it lists (other entries are kept as they are).
type Image struct {
	Name      string
	Raw       []byte
	MediaType string
	Digest    string
	Index     *Index
	Manifests []*PlatformManifest
}

// PlatformManifest is one image manifest of an Image.
type PlatformManifest struct {
	Platform string // "" for a lone manifest
	Digest   string
	M        *Manifest
	entry    *Descriptor // its index entry
}

// Load resolves the name in st and reads its manifests.
func Load(ctx context.Context, name string, st Store) (*Image, error) {
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
	total, layers := len(raw), 0
	for _, d := range img.Index.Manifests {
		if d.MediaType != MediaOCIManifest && d.MediaType != MediaDockerManifest {
			continue
		}
		raw, mt, err := st.Fetch(ctx, d.Digest)
		if err != nil {
			return nil, fmt.Errorf("platform %s (%s): %w", d.Platform, d.Digest, err)
		}
		if mt == "" {
			mt = d.MediaType
		}
		m, err := ParseManifest(raw, mt)
		if err != nil {
			return nil, fmt.Errorf("platform %s (%s): %w", d.Platform, d.Digest, err)
		}
		// An index bounds each manifest; these bound the image.
		total += len(raw)
		layers += len(m.Layers)
		if total > MaxImageBytes || layers > MaxImageLayers {
			return nil, manifestErr("the index lists more than %d MiB of manifests or %d layers", MaxImageBytes>>20, MaxImageLayers)
		}
		img.Manifests = append(img.Manifests, &PlatformManifest{Platform: d.Platform.String(), Digest: d.Digest, M: m, entry: d})
	}
	return img, nil
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
	Platform string        `json:"platform,omitempty"`
	Digest   string        `json:"digest"`
	Layers   []LayerReport `json:"layers"`
}

// Report is what inspect prints.
type Report struct {
	Image     string           `json:"image"`
	Digest    string           `json:"digest"`
	MediaType string           `json:"mediaType"`
	Platforms []PlatformReport `json:"platforms"`
}

// KeyFinder names the local keys that could open an envelope (inspect
// --keys): keyprovider.Provider.
type KeyFinder interface {
	Candidates(env *envelope.Envelope) []string
}

// Inspect describes every layer of img; with keys, also which local keys
// could open it.
func Inspect(img *Image, keys KeyFinder) *Report {
	r := &Report{Image: img.Name, Digest: img.Digest, MediaType: img.MediaType}
	for _, pm := range img.Manifests {
		pr := PlatformReport{Platform: pm.Platform, Digest: pm.Digest}
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
// then the index, and last the tag, unless the tag no longer points at
// what was read (ErrMoved). dst is st itself or another name (--to), which
// must already hold the blobs. It returns the new digest of the name.
func Write(ctx context.Context, img *Image, st, dst Store) (string, error) {
	same := dst == st
	put := func(raw []byte, mt string) (string, error) { return dst.Put(ctx, raw, mt) }
	if img.Index == nil {
		pm := img.Manifests[0]
		raw, err := pm.M.Marshal()
		if err != nil {
			return "", err
		}
		old := img.Digest
		if !same {
			old = ""
		}
		return digestOf(raw), dst.Retag(ctx, raw, pm.M.MediaType, old)
	}
	byDigest := map[string]*PlatformManifest{}
	for _, pm := range img.Manifests {
		byDigest[pm.Digest] = pm
	}
	for _, e := range img.Index.Manifests {
		pm := byDigest[e.Digest]
		if pm == nil {
			// Not an image manifest: copied as it is to another name.
			if !same {
				raw, mt, err := st.Fetch(ctx, e.Digest)
				if err != nil {
					return "", err
				}
				if _, err := put(raw, mt); err != nil {
					return "", err
				}
			}
			continue
		}
		raw, err := pm.M.Marshal()
		if err != nil {
			return "", err
		}
		d, err := put(raw, pm.M.MediaType)
		if err != nil {
			return "", fmt.Errorf("platform %s: %w", pm.Platform, err)
		}
		e.Digest, e.Size = d, int64(len(raw))
	}
	raw, err := img.Index.Marshal()
	if err != nil {
		return "", err
	}
	old := img.Digest
	if !same {
		old = ""
	}
	return digestOf(raw), dst.Retag(ctx, raw, img.Index.MediaType, old)
}

// Blobs lists the config and layer digests of every image manifest (what
// another repository must hold before its manifests are written).
func (img *Image) Blobs() []string {
	seen := map[string]bool{}
	var out []string
	for _, pm := range img.Manifests {
		for _, d := range append([]*Descriptor{pm.M.Config}, pm.M.Layers...) {
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
