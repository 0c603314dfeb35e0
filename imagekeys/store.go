package imagekeys

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ocikp/ocikp/imageref"
	"github.com/ocikp/ocikp/internal/safefile"
	"github.com/ocikp/ocikp/internal/safetext"
)

// Store reads and writes the manifests of one image name.
type Store interface {
	// Resolve returns what the name points at now.
	Resolve(ctx context.Context) (raw []byte, mediaType, digest string, err error)
	// Fetch returns a manifest by digest.
	Fetch(ctx context.Context, digest string) (raw []byte, mediaType string, err error)
	// Put stores a manifest by its digest, which it returns.
	Put(ctx context.Context, raw []byte, mediaType string) (string, error)
	// Retag points the name at raw, unless it no longer points at old
	// (ErrMoved).
	Retag(ctx context.Context, raw []byte, mediaType, old string) error
}

// ErrMoved marks a tag that changed while it was being rewritten.
var ErrMoved = errors.New("the tag moved while it was being rewritten")

// ErrReadOnly marks a store that cannot be written (an oci-archive).
var ErrReadOnly = errors.New("read-only image source")

func digestOf(raw []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(raw)) }

// ErrDigest marks content that does not match the digest it was read by.
var ErrDigest = errors.New("content does not match its digest")

// hasher returns the hash of a digest's own algorithm: content named
// sha512:… is checked with SHA-512, never taken on trust.
func hasher(digest string) (hash.Hash, error) {
	alg, _, _ := strings.Cut(digest, ":")
	switch alg {
	case "sha256":
		return sha256.New(), nil
	case "sha512":
		return sha512.New(), nil
	}
	return nil, manifestErr("digest algorithm %s is not supported (sha256, sha512)", safetext.Token(alg, 20))
}

// verifyDigest checks raw against digest, with digest's algorithm.
func verifyDigest(raw []byte, digest string) error {
	h, err := hasher(digest)
	if err != nil {
		return err
	}
	h.Write(raw)
	if got := hashDigest(digest, h); got != digest {
		return fmt.Errorf("%w: %s holds content of digest %s", ErrDigest, digest, got)
	}
	return nil
}

func hashDigest(digest string, h hash.Hash) string {
	alg, _, _ := strings.Cut(digest, ":")
	return fmt.Sprintf("%s:%x", alg, h.Sum(nil))
}

// verifiedReader reads r and fails at its end, instead of reporting
// io.EOF, if what it read does not match digest: a reader that stops at
// the first error never takes unverified content for a whole blob.
type verifiedReader struct {
	r      io.ReadCloser
	h      hash.Hash
	digest string
}

func newVerifiedReader(r io.ReadCloser, digest string) (io.ReadCloser, error) {
	h, err := hasher(digest)
	if err != nil {
		r.Close()
		return nil, err
	}
	return &verifiedReader{r: r, h: h, digest: digest}, nil
}

func (v *verifiedReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := hashDigest(v.digest, v.h); got != v.digest {
			return n, fmt.Errorf("%w: %s holds content of digest %s", ErrDigest, v.digest, got)
		}
	}
	return n, err
}

func (v *verifiedReader) Close() error { return v.r.Close() }

// sizedReader fails a blob that is not the size its descriptor says: one
// byte too many is an error then and there (no reading on to the end of a
// larger blob), one too few at the end.
type sizedReader struct {
	r      io.ReadCloser
	size   int64
	digest string
	n      int64
}

// SizedBlob checks r, a blob's content, against the descriptor's size
// (when it has one; the digest is checked by the store).
func SizedBlob(r io.ReadCloser, d *Descriptor) io.ReadCloser {
	if !d.hasSize {
		return r
	}
	return &sizedReader{r: r, size: d.Size, digest: d.Digest}
}

func (s *sizedReader) Read(p []byte) (int, error) {
	if left := s.size + 1 - s.n; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	switch {
	case s.n > s.size:
		return n, fmt.Errorf("%w: %s is larger than its descriptor's %d bytes", ErrDigest, s.digest, s.size)
	case err == io.EOF && s.n < s.size:
		return n, fmt.Errorf("%w: %s is %d bytes, its descriptor says %d", ErrDigest, s.digest, s.n, s.size)
	}
	return n, err
}

func (s *sizedReader) Close() error { return s.r.Close() }

// RegistryOptions are the registry client's settings.
type RegistryOptions struct {
	Keychain  authn.Keychain // credentials; nil for the default chain
	Auth      authn.Authenticator
	Insecure  bool // plain HTTP or unverified TLS (--tls-verify=false)
	UserAgent string
}

func (o RegistryOptions) remote(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithUserAgent(o.UserAgent),
		remote.WithRetryBackoff(remote.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 4}),
		remote.WithRetryStatusCodes(429, 500, 502, 503, 504)}
	tr := remote.DefaultTransport
	if o.Insecure {
		// skopeo's --tls-verify=false: plain HTTP (name.Insecure) and
		// certificates not verified.
		t := remote.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		tr = t
	}
	opts = append(opts, remote.WithTransport(limitReplies(tr)))
	switch {
	case o.Auth != nil:
		opts = append(opts, remote.WithAuth(o.Auth))
	case o.Keychain != nil:
		opts = append(opts, remote.WithAuthFromKeychain(o.Keychain))
	default:
		opts = append(opts, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	}
	return opts
}

// Registry is a tag or digest in a registry repository.
type Registry struct {
	Ref  name.Reference
	Opts RegistryOptions
}

// get reads a manifest and checks it here, not only in the registry
// client: go-containerregistry takes a schema-1 manifest's digest from the
// registry's header, unchecked.
func (r *Registry) get(ctx context.Context, ref name.Reference) ([]byte, string, string, error) {
	d, err := remote.Get(ref, r.Opts.remote(ctx)...)
	if err != nil {
		return nil, "", "", err
	}
	if len(d.Manifest) > MaxManifestSize {
		return nil, "", "", manifestErr("larger than %d bytes", MaxManifestSize)
	}
	dg := digestOf(d.Manifest)
	if byDigest, ok := ref.(name.Digest); ok {
		dg = byDigest.DigestStr()
		if err := verifyDigest(d.Manifest, dg); err != nil {
			return nil, "", "", err
		}
	}
	return d.Manifest, string(d.MediaType), dg, nil
}

func (r *Registry) Resolve(ctx context.Context) ([]byte, string, string, error) {
	return r.get(ctx, r.Ref)
}

func (r *Registry) Fetch(ctx context.Context, digest string) ([]byte, string, error) {
	if !validDigest(digest) {
		return nil, "", manifestErr("digest %.80q", digest)
	}
	raw, mt, _, err := r.get(ctx, r.Ref.Context().Digest(digest))
	return raw, mt, err
}

type rawManifest struct {
	raw []byte
	mt  string
}

func (m rawManifest) RawManifest() ([]byte, error) { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) {
	return types.MediaType(m.mt), nil
}

func (r *Registry) Put(ctx context.Context, raw []byte, mediaType string) (string, error) {
	d := digestOf(raw)
	return d, remote.Put(r.Ref.Context().Digest(d), rawManifest{raw, mediaType}, r.Opts.remote(ctx)...)
}

func (r *Registry) Retag(ctx context.Context, raw []byte, mediaType, old string) error {
	if old != "" {
		d, err := remote.Head(r.Ref, r.Opts.remote(ctx)...)
		if err != nil {
			return fmt.Errorf("checking the tag before writing it: %w", err)
		}
		if d.Digest.String() != old {
			return fmt.Errorf("%w: it was %s, it is now %s", ErrMoved, old, d.Digest)
		}
	}
	return remote.Put(r.Ref, rawManifest{raw, mediaType}, r.Opts.remote(ctx)...)
}

// Mount makes blobs of the repository src available in r's repository
// (same registry) by cross-repository mount: no layer content moves.
func (r *Registry) Mount(ctx context.Context, src name.Repository, digests []string) error {
	for _, d := range digests {
		l, err := remote.Layer(src.Digest(d), r.Opts.remote(ctx)...)
		if err != nil {
			return err
		}
		if err := remote.WriteLayer(r.Ref.Context(), l, r.Opts.remote(ctx)...); err != nil {
			return fmt.Errorf("mounting blob %s from %s: %w", d, src, err)
		}
	}
	return nil
}

// Layout is an image in an OCI layout directory, by its ref name.
type Layout struct {
	Dir, RefName string
}

const refNameAnnotation = "org.opencontainers.image.ref.name"

func (l *Layout) readIndex() (*Index, error) {
	b, err := readBounded(filepath.Join(l.Dir, "index.json"))
	if err != nil {
		return nil, err
	}
	return ParseIndex(b, MediaOCIIndex)
}

func readBounded(path string) ([]byte, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxManifestSize {
		return nil, manifestErr("%s is larger than %d bytes", path, MaxManifestSize)
	}
	return b, nil
}

// openRegular opens a file of a layout, which is the image's: without
// blocking (a FIFO would hang open(2) forever, a terminal wait for input),
// and only if it is a regular file, as fstat on the open file says.
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = manifestErr("%s is not a regular file", filepath.Base(path))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// entry finds the index entry of the ref name.
func (l *Layout) entry(x *Index) (int, error) {
	found := -1
	for i, d := range x.Manifests {
		if l.RefName == "" || d.Annotations[refNameAnnotation] == l.RefName {
			if found >= 0 {
				if l.RefName == "" {
					return 0, fmt.Errorf("the layout holds several images: name one as oci:%s:REF", l.Dir)
				}
				return 0, fmt.Errorf("the layout holds several images named %q", l.RefName)
			}
			found = i
		}
	}
	if found < 0 {
		return 0, fmt.Errorf("the layout has no image named %q", l.RefName)
	}
	return found, nil
}

func (l *Layout) blobPath(digest string) (string, error) {
	if !validDigest(digest) {
		return "", manifestErr("digest %.80q", digest)
	}
	alg, hex, _ := strings.Cut(digest, ":")
	return filepath.Join(l.Dir, "blobs", alg, hex), nil
}

func (l *Layout) Resolve(ctx context.Context) ([]byte, string, string, error) {
	x, err := l.readIndex()
	if err != nil {
		return nil, "", "", err
	}
	i, err := l.entry(x)
	if err != nil {
		return nil, "", "", err
	}
	d := x.Manifests[i]
	raw, _, err := l.Fetch(ctx, d.Digest)
	if err == nil {
		err = d.checkSize(raw)
	}
	return raw, d.MediaType, d.Digest, err
}

func (l *Layout) Fetch(_ context.Context, digest string) ([]byte, string, error) {
	p, err := l.blobPath(digest)
	if err != nil {
		return nil, "", err
	}
	raw, err := readBounded(p)
	if err != nil {
		return nil, "", err
	}
	if err := verifyDigest(raw, digest); err != nil {
		return nil, "", err
	}
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	json.Unmarshal(raw, &probe)
	return raw, probe.MediaType, nil
}

func (l *Layout) Put(_ context.Context, raw []byte, _ string) (string, error) {
	d := digestOf(raw)
	p, _ := l.blobPath(d)
	// A layout of sha512 blobs only has no blobs/sha256 yet.
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	return d, safefile.Replace(p, raw, 0o644)
}

func (l *Layout) Retag(_ context.Context, raw []byte, mediaType, old string) error {
	d, err := l.Put(context.Background(), raw, mediaType)
	if err != nil {
		return err
	}
	x, err := l.readIndex()
	if err != nil {
		return err
	}
	i, err := l.entry(x)
	if err != nil {
		return err
	}
	if old != "" && x.Manifests[i].Digest != old {
		return fmt.Errorf("%w: it was %s, it is now %s", ErrMoved, old, x.Manifests[i].Digest)
	}
	e := x.Manifests[i]
	e.Digest, e.Size, e.MediaType = d, int64(len(raw)), mediaType
	mt, _ := json.Marshal(mediaType)
	e.raw["mediaType"] = mt
	b, err := x.Marshal()
	if err != nil {
		return err
	}
	return safefile.Replace(filepath.Join(l.Dir, "index.json"), b, 0o644)
}

// Archive is an image in an oci-archive (a tar of a layout), read-only.
type Archive struct {
	Layout
	blobs map[string][]byte // index.json and the small blobs
}

// OpenArchive reads the JSON-sized entries of an oci-archive.
func OpenArchive(path, refName string) (*Archive, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	a := &Archive{Layout: Layout{Dir: path, RefName: refName}, blobs: map[string][]byte{}}
	tr := tar.NewReader(f)
	total := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if h.Typeflag != tar.TypeReg || h.Size > MaxManifestSize {
			continue
		}
		name := strings.TrimPrefix(filepath.ToSlash(filepath.Clean(h.Name)), "./")
		if name != "index.json" && !strings.HasPrefix(name, "blobs/") {
			continue
		}
		if total += int(h.Size); total > 16*MaxManifestSize {
			return nil, fmt.Errorf("reading %s: more small files than an image has", path)
		}
		b, err := io.ReadAll(io.LimitReader(tr, MaxManifestSize))
		if err != nil {
			return nil, err
		}
		a.blobs[name] = b
	}
	if a.blobs["index.json"] == nil {
		return nil, fmt.Errorf("%s is not an oci-archive: no index.json", path)
	}
	return a, nil
}

func (a *Archive) Resolve(ctx context.Context) ([]byte, string, string, error) {
	x, err := ParseIndex(a.blobs["index.json"], MediaOCIIndex)
	if err != nil {
		return nil, "", "", err
	}
	i, err := a.entry(x)
	if err != nil {
		return nil, "", "", err
	}
	d := x.Manifests[i]
	raw, _, err := a.Fetch(ctx, d.Digest)
	if err == nil {
		err = d.checkSize(raw)
	}
	return raw, d.MediaType, d.Digest, err
}

func (a *Archive) Fetch(_ context.Context, digest string) ([]byte, string, error) {
	if !validDigest(digest) {
		return nil, "", manifestErr("digest %.80q", digest)
	}
	alg, hex, _ := strings.Cut(digest, ":")
	raw, ok := a.blobs["blobs/"+alg+"/"+hex]
	if !ok {
		return nil, "", fmt.Errorf("the archive has no manifest %s", digest)
	}
	if err := verifyDigest(raw, digest); err != nil {
		return nil, "", err
	}
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	json.Unmarshal(raw, &probe)
	return raw, probe.MediaType, nil
}

func (a *Archive) Put(context.Context, []byte, string) (string, error) {
	return "", fmt.Errorf("%w: oci-archive; extract it to an oci: layout first", ErrReadOnly)
}

func (a *Archive) Retag(context.Context, []byte, string, string) error {
	return fmt.Errorf("%w: oci-archive; extract it to an oci: layout first", ErrReadOnly)
}

// Open returns the store for an image name.
func Open(r *imageref.Ref, opts RegistryOptions) (Store, error) {
	switch r.Transport {
	case imageref.Docker:
		return &Registry{Ref: r.Registry, Opts: opts}, nil
	case imageref.OCI:
		return &Layout{Dir: r.Path, RefName: r.RefName}, nil
	case imageref.OCIArchive:
		return OpenArchive(r.Path, r.RefName)
	}
	return nil, fmt.Errorf("unknown transport %q", r.Transport)
}

// Tags lists a repository's tags.
func Tags(ctx context.Context, repo name.Repository, opts RegistryOptions) ([]string, error) {
	return remote.List(repo, opts.remote(ctx)...)
}
