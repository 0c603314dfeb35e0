package imagekeys

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/ocikp/ocikp/envelope"
)

// ForeignOpener recovers a layer's secret (ocicrypt's private options)
// from another scheme's wrapped key: the seed providers' blobs through the
// keystore and KMS plugins, JWE and PKCS#7 with the private keys given,
// through ocicrypt's own unwrapping code.
type ForeignOpener interface {
	// OpenForeign returns the secret, or an error wrapping ErrCannotOpen
	// when this opener has nothing for the scheme.
	OpenForeign(ctx context.Context, w *Wrapping, blob []byte) ([]byte, error)
}

// ErrCannotOpen marks a wrapped key the opener has no key for.
var ErrCannotOpen = errors.New("no key given for this scheme")

// MigratePlan is what a migrate does to one layer.
type MigratePlan struct {
	From     string          `json:"from,omitempty"` // the annotation the secret came from
	Format   string          `json:"format,omitempty"`
	Removed  []string        `json:"removed,omitempty"` // annotations dropped
	After    []RecipientInfo `json:"after"`
	UpToDate bool            `json:"upToDate,omitempty"`
}

// MigrateLayer gives a layer an ocikp envelope under provider for
// recipients, with the secret of another scheme's wrapped key: the seed
// providers' formats first, then JWE, PKCS#7 and the rest. Without
// keepOld, the annotations of the scheme the secret came from, and any
// other seed or ocicrypt scheme on the layer, are removed (readers must
// then use ocikp); with keepOld they stay for readers not yet moved. A
// layer that already has an ocikp envelope is left alone.
func MigrateLayer(ctx context.Context, l *Descriptor, provider string, op ForeignOpener, recipients []envelope.Recipient, keepOld, dryRun bool) (*MigratePlan, error) {
	ours := ProviderPrefix + provider
	ws := Wrappings(l.Annotations)
	for _, w := range ws {
		if w.Annotation == ours {
			for _, e := range w.envelopes {
				if e != nil {
					plan := &MigratePlan{UpToDate: true}
					for _, s := range e.Recipients {
						plan.After = append(plan.After, describeStanza(s))
					}
					return plan, nil
				}
			}
		}
	}
	// Seed formats first: they are what migrate is mostly for.
	sort.SliceStable(ws, func(i, j int) bool { return rank(ws[i]) < rank(ws[j]) })
	var secret []byte
	var from *Wrapping
	var fromFormat string
	var failures []string
	var errs []error
	for _, w := range ws {
		for i, b := range w.blobs {
			if b == nil {
				continue
			}
			s, err := op.OpenForeign(ctx, w, b)
			if err == nil {
				secret, from, fromFormat = s, w, w.Blobs[i].Format
				break
			}
			if !errors.Is(err, ErrCannotOpen) {
				failures = append(failures, fmt.Sprintf("%s: %v", shortAnnotation(w.Annotation), err))
				errs = append(errs, err)
			}
		}
		if secret != nil {
			break
		}
	}
	if secret == nil {
		if len(ws) == 0 {
			return nil, errors.New("the layer has no wrapped key")
		}
		var have []string
		for _, w := range ws {
			have = append(have, shortAnnotation(w.Annotation))
		}
		msg := "no given key opens any of the layer's wrapped keys (" + strings.Join(have, ", ") + ")"
		if len(failures) > 0 {
			msg += ": " + strings.Join(failures, "; ")
		}
		return nil, &openError{msg, errs}
	}
	blob, err := envelope.Seal(secret, recipients...)
	if err != nil {
		return nil, err
	}
	env, _ := envelope.Parse(blob)
	plan := &MigratePlan{From: from.Annotation, Format: fromFormat}
	for _, s := range env.Recipients {
		plan.After = append(plan.After, describeStanza(s))
	}
	if !keepOld {
		for _, w := range ws {
			if w.Annotation != ours {
				plan.Removed = append(plan.Removed, w.Annotation)
			}
		}
	}
	if dryRun {
		return plan, nil
	}
	enc := base64.StdEncoding.EncodeToString(blob)
	if old, ok := l.Annotations[ours]; ok && keepOld {
		// The same annotation held another provider's blob: keep it beside
		// ours (ocicrypt tries each).
		enc = old + "," + enc
	}
	l.Annotations[ours] = enc
	for _, a := range plan.Removed {
		delete(l.Annotations, a)
	}
	return plan, nil
}

// openError is a layer no given key opened: its message names every
// wrapped key tried, and it wraps why each failed.
type openError struct {
	msg  string
	errs []error
}

func (e *openError) Error() string   { return e.msg }
func (e *openError) Unwrap() []error { return e.errs }

// rank orders the schemes migrate takes a secret from.
func rank(w *Wrapping) int {
	for _, b := range w.Blobs {
		if b.Format == FormatAppleSeed || b.Format == FormatGCPSeed {
			return 0
		}
	}
	if w.Scheme == "provider" {
		return 1
	}
	return 2
}

func shortAnnotation(a string) string { return strings.TrimPrefix(a, KeysPrefix) }

// MigrateAll plans (and unless dryRun applies) the migration of every
// encrypted layer of img; any layer that cannot be migrated fails the
// whole image before anything is written.
func MigrateAll(ctx context.Context, img *Image, provider string, op ForeignOpener, recipients []envelope.Recipient, keepOld, dryRun bool) ([]*MigratePlan, bool, error) {
	var plans []*MigratePlan
	changed, encrypted := false, 0
	for _, pm := range img.Manifests {
		for i, l := range pm.M.Layers {
			if !Encrypted(l.MediaType) {
				continue
			}
			encrypted++
			p, err := MigrateLayer(ctx, l, provider, op, recipients, keepOld, dryRun)
			if err != nil {
				return nil, false, &LayerError{Platform: pm.Platform, Index: i, Digest: l.Digest, Err: err}
			}
			changed = changed || !p.UpToDate
			plans = append(plans, p)
		}
	}
	if encrypted == 0 {
		return nil, false, ErrNotEncrypted
	}
	return plans, changed, nil
}
