package imagekeys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Bounds on what a registry or layout hands us.
const (
	MaxManifestSize = 4 << 20 // as containerd
	MaxLayers       = 1024
	MaxManifests    = 1024 // children of an index
	MaxImageBytes   = 64 << 20
	MaxImageLayers  = 4096 // in all the manifests of an index
	// An image is the graph its name reaches: indexes nest at most
	// MaxIndexDepth deep (the name's own index is the first), and the
	// whole graph lists at most MaxGraphEntries entries, as one index may.
	MaxIndexDepth   = 4
	MaxGraphEntries = MaxManifests
)

// Media types.
const (
	MediaOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// IsIndex reports whether mediaType is an index or a manifest list.
func IsIndex(mediaType string) bool {
	return mediaType == MediaOCIIndex || mediaType == MediaDockerList
}

// ErrManifest marks a manifest or index that cannot be read.
var ErrManifest = errors.New("unreadable manifest")

func manifestErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrManifest, fmt.Sprintf(format, args...))
}

// object is a JSON object whose members are kept as they came.
type object map[string]json.RawMessage

func parseObject(b []byte) (object, error) {
	if len(b) > MaxManifestSize {
		return nil, manifestErr("larger than %d bytes", MaxManifestSize)
	}
	var o object
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&o); err != nil || o == nil {
		return nil, manifestErr("not a JSON object")
	}
	if d.More() {
		return nil, manifestErr("data after the JSON object")
	}
	return o, nil
}

func (o object) str(key string) string {
	var s string
	if raw, ok := o[key]; ok {
		json.Unmarshal(raw, &s)
	}
	return s
}

// Descriptor is a layer of a manifest or a manifest of an index.
type Descriptor struct {
	raw         object
	MediaType   string
	Digest      string
	Size        int64
	Annotations map[string]string
	Platform    *Platform // index entries only
	hasSize     bool
}

// checkSize reports content whose length is not the descriptor's size.
func (d *Descriptor) checkSize(raw []byte) error {
	if d.hasSize && d.Size != int64(len(raw)) {
		return fmt.Errorf("%w: %s is %d bytes, its descriptor says %d", ErrDigest, d.Digest, len(raw), d.Size)
	}
	return nil
}

// Platform is an index entry's platform.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

func (p *Platform) String() string {
	if p == nil {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func parseDescriptor(raw json.RawMessage) (*Descriptor, error) {
	o, err := parseObject(raw)
	if err != nil {
		return nil, err
	}
	d := &Descriptor{raw: o, MediaType: o.str("mediaType"), Digest: o.str("digest")}
	if !validDigest(d.Digest) {
		if alg, _, ok := strings.Cut(d.Digest, ":"); ok && alg != "sha256" && alg != "sha512" {
			return nil, manifestErr("descriptor with digest %.80q: only sha256 and sha512 digests are verified, so no other is read", d.Digest)
		}
		return nil, manifestErr("descriptor with digest %.80q", d.Digest)
	}
	if s, ok := o["size"]; ok {
		if err := json.Unmarshal(s, &d.Size); err != nil || d.Size < 0 {
			return nil, manifestErr("descriptor %s: bad size", d.Digest)
		}
		d.hasSize = true
	}
	if a, ok := o["annotations"]; ok {
		if err := json.Unmarshal(a, &d.Annotations); err != nil {
			return nil, manifestErr("descriptor %s: annotations are not strings", d.Digest)
		}
	}
	if p, ok := o["platform"]; ok {
		d.Platform = &Platform{}
		if err := json.Unmarshal(p, d.Platform); err != nil {
			return nil, manifestErr("descriptor %s: bad platform", d.Digest)
		}
	}
	return d, nil
}

func validDigest(d string) bool {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || !(alg == "sha256" && len(hex) == 64 || alg == "sha512" && len(hex) == 128) {
		return false
	}
	for _, c := range hex {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (d *Descriptor) marshal() (json.RawMessage, error) {
	if len(d.Annotations) == 0 {
		delete(d.raw, "annotations")
	} else {
		b, err := json.Marshal(d.Annotations)
		if err != nil {
			return nil, err
		}
		d.raw["annotations"] = b
	}
	dg, _ := json.Marshal(d.Digest)
	d.raw["digest"] = dg
	sz, _ := json.Marshal(d.Size)
	d.raw["size"] = sz
	return json.Marshal(d.raw)
}

// Manifest is an image manifest.
type Manifest struct {
	raw       object
	MediaType string
	Config    *Descriptor
	Layers    []*Descriptor
}

// ParseManifest reads an image manifest of the given media type (from the
// registry's Content-Type or the referring descriptor; the document's own
// mediaType wins when present).
func ParseManifest(b []byte, mediaType string) (*Manifest, error) {
	o, err := parseObject(b)
	if err != nil {
		return nil, err
	}
	m := &Manifest{raw: o, MediaType: mediaType}
	if mt := o.str("mediaType"); mt != "" {
		m.MediaType = mt
	}
	if m.MediaType != MediaOCIManifest && m.MediaType != MediaDockerManifest {
		return nil, manifestErr("media type %.100q is not an image manifest", m.MediaType)
	}
	if c, ok := o["config"]; ok {
		if m.Config, err = parseDescriptor(c); err != nil {
			return nil, err
		}
	} else {
		return nil, manifestErr("no config")
	}
	var layers []json.RawMessage
	if err := json.Unmarshal(o["layers"], &layers); err != nil {
		return nil, manifestErr("layers are not a list")
	}
	if len(layers) > MaxLayers {
		return nil, manifestErr("%d layers, at most %d", len(layers), MaxLayers)
	}
	for _, l := range layers {
		d, err := parseDescriptor(l)
		if err != nil {
			return nil, err
		}
		m.Layers = append(m.Layers, d)
	}
	return m, nil
}

// Marshal returns the manifest with its layers' current annotations.
func (m *Manifest) Marshal() ([]byte, error) {
	layers := make([]json.RawMessage, len(m.Layers))
	for i, l := range m.Layers {
		b, err := l.marshal()
		if err != nil {
			return nil, err
		}
		layers[i] = b
	}
	b, err := json.Marshal(layers)
	if err != nil {
		return nil, err
	}
	m.raw["layers"] = b
	return json.Marshal(m.raw)
}

// Index is an image index or manifest list.
type Index struct {
	raw       object
	MediaType string
	Manifests []*Descriptor
}

// ParseIndex reads an index.
func ParseIndex(b []byte, mediaType string) (*Index, error) {
	o, err := parseObject(b)
	if err != nil {
		return nil, err
	}
	x := &Index{raw: o, MediaType: mediaType}
	if mt := o.str("mediaType"); mt != "" {
		x.MediaType = mt
	}
	if !IsIndex(x.MediaType) {
		return nil, manifestErr("media type %.100q is not an index", x.MediaType)
	}
	var ms []json.RawMessage
	if err := json.Unmarshal(o["manifests"], &ms); err != nil {
		return nil, manifestErr("manifests are not a list")
	}
	if len(ms) > MaxManifests {
		return nil, manifestErr("%d manifests, at most %d", len(ms), MaxManifests)
	}
	for _, raw := range ms {
		d, err := parseDescriptor(raw)
		if err != nil {
			return nil, err
		}
		x.Manifests = append(x.Manifests, d)
	}
	return x, nil
}

// Marshal returns the index with its entries' current digests and sizes.
func (x *Index) Marshal() ([]byte, error) {
	ms := make([]json.RawMessage, len(x.Manifests))
	for i, d := range x.Manifests {
		b, err := d.marshal()
		if err != nil {
			return nil, err
		}
		ms[i] = b
	}
	b, err := json.Marshal(ms)
	if err != nil {
		return nil, err
	}
	x.raw["manifests"] = b
	return json.Marshal(x.raw)
}
