package imagekeys

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/containers/ocicrypt/blockcipher"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/kms"
)

// BlobStore reads and writes layer blobs, for --rotate-layer-keys.
type BlobStore interface {
	OpenBlob(ctx context.Context, digest string) (io.ReadCloser, error)
	// PutBlob stores the file's content; digest and size are its own.
	PutBlob(ctx context.Context, path, digest string, size int64, mediaType string) error
}

// StanzaRecipients finds the recipient a kept stanza was written for
// (keyprovider.Provider).
type StanzaRecipients interface {
	RecipientOfStanza(ctx context.Context, s *envelope.Stanza) (envelope.Recipient, error)
}

// RotateLayer gives one encrypted layer a fresh layer key: the blob is
// decrypted with the old key (checked by ocicrypt's HMAC), encrypted with a
// new one by ocicrypt's layer cipher into a new blob, and the new key is
// sealed for the remaining recipients the user confirmed (see confirm)
// plus add; KMS stanzas not named are dropped (plan.NewKey). Every other
// scheme's wrapped key is dropped: it opens the old blob only. With dryRun
// nothing is read or written beyond the file key.
func RotateLayer(ctx context.Context, l *Descriptor, provider string, op Opener, known StanzaRecipients, bs BlobStore, add, remove []*Target, tmpDir string, dryRun bool) (*LayerPlan, error) {
	// The descriptor's size is the only bound on the blob read below (the
	// digest is checked at its end): without one, an endless blob would be
	// decrypted into a temporary file without end.
	if !l.hasSize {
		return nil, manifestErr("the layer's descriptor has no size, so its blob cannot be read within a bound")
	}
	ol, err := openLayerKey(ctx, l, provider, op)
	if err != nil {
		return nil, err
	}
	key, plan := ol.annotation, ol.plan
	opts, err := ol.env.OpenPayload(ol.fileKey)
	if err != nil {
		return nil, err
	}
	kept, added := plan.partition(ol.env, add, remove)
	var recips []envelope.Recipient
	var confirmed []*envelope.Stanza
	for _, s := range kept {
		r, why, err := confirm(ctx, s, add, known)
		if err != nil {
			return nil, err
		}
		if r == nil {
			plan.NewKey = append(plan.NewKey, KeyChange{Status: KeyDropped, Recipient: s.Hint(), Reason: why})
			continue
		}
		plan.NewKey = append(plan.NewKey, KeyChange{Status: KeyKept, Recipient: s.Hint(), Reason: why})
		recips, confirmed = append(recips, r), append(confirmed, s)
	}
	for _, t := range added {
		recips = append(recips, t.R)
		plan.NewKey = append(plan.NewKey, KeyChange{Status: KeyAdded, Recipient: t.Display(), Reason: ReasonAdd})
	}
	for _, r := range plan.Removed {
		plan.NewKey = append(plan.NewKey, KeyChange{Status: KeyRemoved, Recipient: r.Hint, Reason: ReasonRemove})
	}
	if len(recips) == 0 {
		return nil, errNoneLeft
	}
	if err := op.CheckMix(recips); err != nil {
		return nil, err
	}
	for _, a := range sortedKeys(l.Annotations) {
		if a != key && strings.HasPrefix(a, KeysPrefix) {
			plan.Dropped = append(plan.Dropped, a)
		}
	}
	plan.Rotated = true
	if dryRun {
		for _, s := range confirmed {
			plan.After = append(plan.After, describeStanza(s))
		}
		for range plan.Added {
			plan.After = append(plan.After, RecipientInfo{Kind: "new"})
		}
		return plan, nil
	}

	var priv blockcipher.PrivateLayerBlockCipherOptions
	if err := json.Unmarshal(opts, &priv); err != nil {
		return nil, fmt.Errorf("the layer's options: %w", err)
	}
	var pub blockcipher.PublicLayerBlockCipherOptions
	if po, ok := l.Annotations[PubOpts]; ok {
		b, err := base64.StdEncoding.DecodeString(po)
		if err != nil || json.Unmarshal(b, &pub) != nil {
			return nil, fmt.Errorf("the layer's %s annotation is unreadable", PubOpts)
		}
	}
	// Two handlers: each holds one stateful cipher per type.
	hDec, err := blockcipher.NewLayerBlockCipherHandler()
	if err != nil {
		return nil, err
	}
	hEnc, err := blockcipher.NewLayerBlockCipherHandler()
	if err != nil {
		return nil, err
	}
	src, err := bs.OpenBlob(ctx, l.Digest)
	if err != nil {
		return nil, fmt.Errorf("reading the layer: %w", err)
	}
	src = SizedBlob(src, l)
	defer src.Close()
	plain, _, err := hDec.Decrypt(src, blockcipher.LayerBlockCipherOptions{Private: priv, Public: pub})
	if err != nil {
		return nil, err
	}
	enc, fin, err := hEnc.Encrypt(plain, blockcipher.AES256CTR)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(tmpDir, "layer-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, sum), enc)
	if err != nil {
		return nil, fmt.Errorf("re-encrypting the layer: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	newOpts, err := fin()
	if err != nil {
		return nil, err
	}
	newOpts.Private.Digest = priv.Digest
	privData, err := json.Marshal(newOpts.Private)
	if err != nil {
		return nil, err
	}
	pubData, err := json.Marshal(newOpts.Public)
	if err != nil {
		return nil, err
	}
	blob, err := envelope.Seal(privData, recips...)
	if err != nil {
		return nil, err
	}
	digest := hexDigest(sum)
	if err := bs.PutBlob(ctx, f.Name(), digest, n, l.MediaType); err != nil {
		return nil, fmt.Errorf("writing the new layer: %w", err)
	}
	newEnv, _ := envelope.Parse(blob)
	for _, s := range newEnv.Recipients {
		plan.After = append(plan.After, describeStanza(s))
	}
	for _, a := range plan.Dropped {
		delete(l.Annotations, a)
	}
	l.Annotations[key] = base64.StdEncoding.EncodeToString(blob)
	l.Annotations[PubOpts] = base64.StdEncoding.EncodeToString(pubData)
	plan.NewDigest = digest
	l.Digest, l.Size = digest, n
	return plan, nil
}

// confirm returns the recipient the new layer key is sealed for in place
// of kept stanza s, and why; nil (with why) when s is dropped. Only what
// the user confirmed gets the new key: a recipient named with --add or
// --keep, or a key of the local keystore (matched by its tag). A KMS
// stanza is only a URL the image carries, written by anyone who knew the
// old layer key, so it is dropped unless named; any other stanza whose
// recipient is unknown stops the rotation (it cannot be wrapped for).
func confirm(ctx context.Context, s *envelope.Stanza, add []*Target, known StanzaRecipients) (envelope.Recipient, string, error) {
	if i := slices.IndexFunc(add, func(t *Target) bool { return t.Matches(s) }); i >= 0 {
		if add[i].Keep {
			return add[i].R, ReasonKeep, nil
		}
		return add[i].R, ReasonAdd, nil
	}
	if kms.IsStanza(s.Type) {
		return nil, ReasonNotConfirm, nil
	}
	r, err := known.RecipientOfStanza(ctx, s)
	if err != nil {
		return nil, "", fmt.Errorf("rotating needs every remaining recipient: %w", err)
	}
	return r, ReasonLocalKey, nil
}

func hexDigest(h hash.Hash) string { return fmt.Sprintf("sha256:%x", h.Sum(nil)) }

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// fileLayer is a blob in a local file, as a layer ggcr can upload as is.
type fileLayer struct {
	path, digest string
	size         int64
	mt           string
}

func (f *fileLayer) Digest() (v1.Hash, error)           { return v1.NewHash(f.digest) }
func (f *fileLayer) Compressed() (io.ReadCloser, error) { return os.Open(f.path) }
func (f *fileLayer) Size() (int64, error)               { return f.size, nil }
func (f *fileLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(f.mt), nil
}

func (r *Registry) OpenBlob(ctx context.Context, digest string) (io.ReadCloser, error) {
	l, err := remote.Layer(r.Ref.Context().Digest(digest), r.Opts.remote(ctx)...)
	if err != nil {
		return nil, err
	}
	return l.Compressed()
}

func (r *Registry) PutBlob(ctx context.Context, path, digest string, size int64, mt string) error {
	l, err := partial.CompressedToLayer(&fileLayer{path: path, digest: digest, size: size, mt: mt})
	if err != nil {
		return err
	}
	return remote.WriteLayer(r.Ref.Context(), l, r.Opts.remote(ctx)...)
}

func (l *Layout) OpenBlob(_ context.Context, digest string) (io.ReadCloser, error) {
	p, err := l.blobPath(digest)
	if err != nil {
		return nil, err
	}
	f, err := openRegular(p)
	if err != nil {
		return nil, err
	}
	return newVerifiedReader(f, digest)
}

func (l *Layout) PutBlob(_ context.Context, path, digest string, _ int64, _ string) error {
	p, err := l.blobPath(digest)
	if err != nil {
		return err
	}
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(l.Dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	os.Chmod(tmp.Name(), 0o644)
	return os.Rename(tmp.Name(), p)
}

func (a *Archive) OpenBlob(context.Context, string) (io.ReadCloser, error) {
	return nil, fmt.Errorf("%w: oci-archive; extract it to an oci: layout first", ErrReadOnly)
}

func (a *Archive) PutBlob(context.Context, string, string, int64, string) error {
	return fmt.Errorf("%w: oci-archive; extract it to an oci: layout first", ErrReadOnly)
}
