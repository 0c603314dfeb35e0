package imagekeys

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ocikp/ocikp/envelope"
)

// ErrNotHeld marks a --remove (or --keep) recipient that no layer of the
// image holds: most likely the wrong recipient, so nothing is written.
var ErrNotHeld = errors.New("holds a stanza for it")

// ErrNotVerified marks an image that, read back after the write, still
// reaches a stanza of a removed recipient or is not what was written.
var ErrNotVerified = errors.New("the write did not verify")

// ErrLegacyHeld marks a layer holding a wrapped key in a seed provider's
// format (Apple keychain, GCP kmscrypt) under a provider annotation: ocikp
// opens it with a keystore key or a KMS key, and it names no recipient a
// removal could match, so a removed recipient may still open the layer.
var ErrLegacyHeld = errors.New("which names no recipient a removal can check")

// LegacyHeld returns an error naming the first encrypted layer of img
// that holds a seed provider's wrapped key under any provider name, or
// nil. Removal can be verified only where every such key is gone.
func LegacyHeld(img *Image) error {
	for _, pm := range img.Manifests {
		for i, l := range pm.M.Layers {
			if !Encrypted(l.MediaType) {
				continue
			}
			for _, w := range Wrappings(l.Annotations) {
				if w.Scheme != "provider" {
					continue
				}
				for _, b := range w.Blobs {
					if b.Format == FormatAppleSeed || b.Format == FormatGCPSeed {
						return &LayerError{Platform: pm.Platform, Index: i, Digest: l.Digest,
							Err: fmt.Errorf("%s holds a wrapped key of the %s, %w", shortAnnotation(w.Annotation), b.Format, ErrLegacyHeld)}
					}
				}
			}
		}
	}
	return nil
}

// HeldElsewhere returns an error naming the first layer of img that holds
// a stanza for one of targets under another provider name than provider:
// a rewrap changes only its own annotation, so that stanza would stay.
func HeldElsewhere(img *Image, provider string, targets []*Target) error {
	var err error
	eachStanza(img, func(p, platform string, index int, digest string, s *envelope.Stanza) {
		if err != nil || p == provider {
			return
		}
		for _, t := range targets {
			if t.Matches(s) {
				err = &LayerError{Platform: platform, Index: index, Digest: digest,
					Err: fmt.Errorf("%s also holds a stanza for %s, which rewrap leaves as it is", shortAnnotation(ProviderPrefix+p), t.Display())}
				return
			}
		}
	})
	return err
}

// Unheld returns the targets that match no stanza of the ocikp envelope
// under provider in any layer of img.
func Unheld(img *Image, provider string, targets []*Target) []*Target {
	held := make([]bool, len(targets))
	eachStanza(img, func(p string, _ string, _ int, _ string, s *envelope.Stanza) {
		if p != provider {
			return
		}
		for i, t := range targets {
			held[i] = held[i] || t.Matches(s)
		}
	})
	var out []*Target
	for i, t := range targets {
		if !held[i] {
			out = append(out, t)
		}
	}
	return out
}

// NotHeldError says which target the image does not hold.
func NotHeldError(flag, image string, t *Target) error {
	return fmt.Errorf("%s %s: no layer of %s %w; nothing was written", flag, t.Display(), image, ErrNotHeld)
}

// eachStanza calls fn for every stanza of every ocikp envelope, under any
// provider name, of every layer of every image manifest img reaches.
func eachStanza(img *Image, fn func(provider, platform string, index int, digest string, s *envelope.Stanza)) {
	for _, pm := range img.Manifests {
		for i, l := range pm.M.Layers {
			for k, v := range l.Annotations {
				p, ok := strings.CutPrefix(k, ProviderPrefix)
				if !ok {
					continue
				}
				w := &Wrapping{Annotation: k, Scheme: "provider", Provider: p}
				w.read(v)
				for _, env := range w.envelopes {
					if env == nil {
						continue
					}
					for _, s := range env.Recipients {
						fn(p, pm.Platform, i, l.Digest, s)
					}
				}
			}
		}
	}
}

// VerifyRemoved reads name back through st, as a puller would (a fresh
// Load, not the copy in memory), and checks that it points at digest, the
// one just written, and that no layer it reaches holds a stanza for any of
// removed, under any provider name. It returns a line per removed target
// for the summary.
func VerifyRemoved(ctx context.Context, name string, st Store, digest string, removed []*Target) ([]string, error) {
	img, err := Load(ctx, name, st)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s back: %w", ErrNotVerified, name, err)
	}
	moved := ""
	if img.Digest != digest {
		moved = fmt.Sprintf("points at %s, not at %s just written", img.Digest, digest)
	}
	if len(removed) > 0 {
		if err := LegacyHeld(img); err != nil {
			return nil, fmt.Errorf("%w: %s, read back: %w", ErrNotVerified, name, err)
		}
	}
	var found string
	eachStanza(img, func(_, platform string, index int, dg string, s *envelope.Stanza) {
		for _, t := range removed {
			if found == "" && t.Matches(s) {
				where := (&LayerError{Platform: platform, Index: index, Digest: dg}).where()
				found = fmt.Sprintf("still holds a stanza for %s in %s", t.Display(), where)
			}
		}
	})
	switch {
	case found != "" && moved != "":
		return nil, fmt.Errorf("%w: %s, read back, %s; it %s", ErrNotVerified, name, found, moved)
	case found != "":
		return nil, fmt.Errorf("%w: %s, read back, %s", ErrNotVerified, name, found)
	case moved != "":
		return nil, fmt.Errorf("%w: %s, read back, %s", ErrNotVerified, name, moved)
	}
	var lines []string
	for _, t := range removed {
		lines = append(lines, fmt.Sprintf("no layer reachable from %s holds a stanza for %s", name, t.Display()))
	}
	return lines, nil
}
