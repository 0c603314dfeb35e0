package imagekeys

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// memStore is an image name in memory: manifests by digest and the
// digest the name points at.
type memStore struct {
	blobs map[string][]byte
	tag   string
}

func newMemStore() *memStore { return &memStore{blobs: map[string][]byte{}} }

func (s *memStore) add(raw string) string {
	d := digestOf([]byte(raw))
	s.blobs[d] = []byte(raw)
	return d
}

func (s *memStore) Resolve(context.Context) ([]byte, string, string, error) {
	raw, ok := s.blobs[s.tag]
	if !ok {
		return nil, "", "", errors.New("no tag")
	}
	return raw, "", s.tag, nil
}

func (s *memStore) Fetch(_ context.Context, digest string) ([]byte, string, error) {
	raw, ok := s.blobs[digest]
	if !ok {
		return nil, "", fmt.Errorf("no manifest %s", digest)
	}
	return raw, "", nil
}

func (s *memStore) Put(_ context.Context, raw []byte, _ string) (string, error) {
	return s.add(string(raw)), nil
}

func (s *memStore) Retag(_ context.Context, raw []byte, _, old string) error {
	if old != "" && old != s.tag {
		return ErrMoved
	}
	s.tag = s.add(string(raw))
	return nil
}

const cfgDigest = "sha256:3333333333333333333333333333333333333333333333333333333333333333"

func imageManifest(layerDigest string, encrypted bool, extra string) string {
	mt, ann := "application/vnd.oci.image.layer.v1.tar+gzip", ""
	if encrypted {
		mt += "+encrypted"
		ann = `,"annotations":{"org.opencontainers.image.enc.keys.provider.ocikp":"eA=="}`
	}
	return `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"` + extra +
		`,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + cfgDigest + `","size":1},` +
		`"layers":[{"mediaType":"` + mt + `","digest":"` + layerDigest + `","size":5` + ann + `}]}`
}

// entry is an index entry for raw, stored in s.
func (s *memStore) entry(raw, extra string) string {
	var probe struct{ MediaType string }
	json.Unmarshal([]byte(raw), &probe)
	mt, _ := json.Marshal(probe.MediaType)
	return fmt.Sprintf(`{"mediaType":%s,"digest":%q,"size":%d%s}`, mt, s.add(raw), len(raw), extra)
}

func index(entries ...string) string {
	return `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + strings.Join(entries, ",") + `]}`
}

const amd64 = `,"platform":{"os":"linux","architecture":"amd64"}`

// A manifest under a nested index is part of the image: Load reads it,
// and Write rewrites every level up to the tag.
func TestNestedIndex(t *testing.T) {
	ctx := context.Background()
	s := newMemStore()
	top := s.entry(imageManifest(d1, true, ""), amd64)
	nested := s.entry(index(s.entry(imageManifest(d2, true, ""), `,"platform":{"os":"linux","architecture":"arm64"}`)), "")
	s.tag = s.add(index(top, nested))
	img, err := Load(ctx, "x", s)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Manifests) != 2 {
		t.Fatalf("%d manifests, want the nested one too", len(img.Manifests))
	}
	pm := img.Manifests[1]
	if pm.Platform != "linux/arm64" || len(pm.Via) != 1 || pm.M.Layers[0].Digest != d2 {
		t.Fatalf("nested manifest: %+v", pm)
	}
	r := Inspect(img, nil)
	if len(r.Platforms) != 2 || len(r.Platforms[1].Via) != 1 || !r.Platforms[1].Layers[0].Encrypted {
		t.Fatalf("inspect: %+v", r.Platforms)
	}
	// A change under the nested index reaches the tag.
	pm.M.Layers[0].Annotations[ProviderPrefix+"ocikp"] = "changed"
	old := s.tag
	if _, err := Write(ctx, img, s, s); err != nil {
		t.Fatal(err)
	}
	if s.tag == old {
		t.Fatal("the tag still points at the old index")
	}
	img2, err := Load(ctx, "x", s)
	if err != nil {
		t.Fatal(err)
	}
	if got := img2.Manifests[1].M.Layers[0].Annotations[ProviderPrefix+"ocikp"]; got != "changed" {
		t.Fatalf("after Write, the nested layer has %q", got)
	}
}

// The bounds of the whole graph: depth and entries.
func TestGraphBounds(t *testing.T) {
	s := newMemStore()
	x := index(s.entry(imageManifest(d1, true, ""), ""))
	for range MaxIndexDepth - 1 {
		x = index(s.entry(x, ""))
	}
	s.tag = s.add(x)
	if _, err := Load(context.Background(), "x", s); err != nil {
		t.Fatalf("%d levels: %v", MaxIndexDepth, err)
	}
	s.tag = s.add(index(s.entry(x, "")))
	_, err := Load(context.Background(), "x", s)
	if !errors.Is(err, ErrGraph) || !strings.Contains(err.Error(), fmt.Sprintf("nest more than %d deep", MaxIndexDepth)) {
		t.Fatalf("%d levels: %v", MaxIndexDepth+1, err)
	}

	// Two indexes, each within MaxManifests, together beyond the graph's.
	var a, b []string
	for i := range MaxGraphEntries/2 + 1 {
		a = append(a, s.entry(imageManifest(d1, false, fmt.Sprintf(`,"n":%d`, i)), ""))
		b = append(b, s.entry(imageManifest(d2, false, fmt.Sprintf(`,"n":%d`, i)), ""))
	}
	s.tag = s.add(index(s.entry(index(a...), ""), s.entry(index(b...), "")))
	_, err = Load(context.Background(), "x", s)
	if !errors.Is(err, ErrGraph) || !strings.Contains(err.Error(), "entries in all") {
		t.Fatalf("%d entries: %v", MaxGraphEntries+2, err)
	}
}

// What is passed over, and what never is.
func TestPassedOver(t *testing.T) {
	ctx := context.Background()
	att := `,"annotations":{"vnd.docker.reference.type":"attestation-manifest","vnd.docker.reference.digest":"` + d1 + `"},"platform":{"os":"unknown","architecture":"unknown"}`
	s := newMemStore()
	img := s.entry(imageManifest(d1, true, ""), amd64)
	attestation := s.entry(imageManifest(d2, false, ""), att)
	sig := s.entry(`{"mediaType":"application/vnd.example.sig+json","artifactType":"x/sig","blobs":[]}`, `,"artifactType":"x/sig"`)
	s.tag = s.add(index(img, attestation, sig))
	im, err := Load(ctx, "x", s)
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || len(im.PassedOver) != 2 || im.PassedOver[0].Reason != "attestation manifest" {
		t.Fatalf("manifests %d, passed over %+v", len(im.Manifests), im.PassedOver)
	}
	if r := Inspect(im, nil); len(r.PassedOver) != 2 {
		t.Fatalf("inspect lists %d passed over", len(r.PassedOver))
	}
	if bl := im.Blobs(); len(bl) != 3 {
		t.Fatalf("blobs %v: the attestation's are needed by --to", bl)
	}

	// An attestation that holds an encrypted layer is read as an image.
	encAtt := s.entry(imageManifest(d2, true, ""), att)
	s.tag = s.add(index(img, encAtt))
	if im, err = Load(ctx, "x", s); err != nil || len(im.Manifests) != 2 || len(im.PassedOver) != 0 {
		t.Fatalf("encrypted attestation: %v %+v", err, im)
	}

	for name, e := range map[string]string{
		// Not an artifact: cannot be handled, so the image is refused.
		"unknown": s.entry(`{"mediaType":"application/vnd.example\u001b[2J+json","x":1}`, ""),
		// An artifact naming encrypted content, even through escapes.
		"encrypted artifact": s.entry(`{"mediaType":"application/vnd.example+json","artifactType":"x/y","blobs":[{"mediaType":"a+encrypted","annotations":{"org.opencontainers.image.enc\u002ekeys.x":"y"}}]}`, ""),
	} {
		s.tag = s.add(index(img, e))
		_, err := Load(ctx, "x", s)
		var ee *EntryError
		if !errors.Is(err, ErrGraph) || !errors.As(err, &ee) || !strings.Contains(err.Error(), "index entry sha256:") {
			t.Errorf("%s: %v", name, err)
		}
		if strings.ContainsRune(fmt.Sprint(err), 0x1b) {
			t.Errorf("%s: the media type is printed raw: %q", name, err)
		}
	}
}

// writeLayout writes a layout whose image "img" is the manifest m, stored
// under name (sha512 or sha256) with content stored (m, or a forgery).
func writeLayout(t *testing.T, alg string, m, stored []byte) (dir, digest string) {
	dir = t.TempDir()
	switch alg {
	case "sha512":
		digest = fmt.Sprintf("sha512:%x", sha512.Sum512(m))
	default:
		digest = digestOf(m)
	}
	_, hex, _ := strings.Cut(digest, ":")
	os.MkdirAll(filepath.Join(dir, "blobs", alg), 0o755)
	os.WriteFile(filepath.Join(dir, "blobs", alg, hex), stored, 0o644)
	os.WriteFile(filepath.Join(dir, "index.json"), fmt.Appendf(nil, `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"annotations":{"org.opencontainers.image.ref.name":"img"}}]}`, digest, len(m)), 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	return dir, digest
}

func tarDir(t *testing.T, dir string) string {
	path := filepath.Join(t.TempDir(), "img.tar")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, _ := os.ReadFile(p)
		tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
		return nil
	})
	tw.Close()
	os.WriteFile(path, buf.Bytes(), 0o644)
	return path
}

// A blob named sha512:… is checked with SHA-512, in a layout and in an
// archive: a forgery of the same length is refused, the real one read.
func TestSHA512Blobs(t *testing.T) {
	ctx := context.Background()
	m := []byte(imageManifest(d1, true, ""))
	forged := []byte(imageManifest(d2, true, ""))
	for _, alg := range []string{"sha512", "sha256"} {
		dir, _ := writeLayout(t, alg, m, forged)
		arch, err := OpenArchive(tarDir(t, dir), "img")
		if err != nil {
			t.Fatal(err)
		}
		for name, st := range map[string]Store{"layout": &Layout{Dir: dir, RefName: "img"}, "archive": arch} {
			if _, err := Load(ctx, "x", st); !errors.Is(err, ErrDigest) {
				t.Errorf("%s %s, forged: %v", alg, name, err)
			}
		}
		dir, _ = writeLayout(t, alg, m, m)
		arch, _ = OpenArchive(tarDir(t, dir), "img")
		for name, st := range map[string]Store{"layout": &Layout{Dir: dir, RefName: "img"}, "archive": arch} {
			img, err := Load(ctx, "x", st)
			if err != nil || img.Manifests[0].M.Layers[0].Digest != d1 {
				t.Errorf("%s %s: %v", alg, name, err)
			}
		}
		// Written back as sha256, even where the layout had no such blob.
		l := &Layout{Dir: dir, RefName: "img"}
		img, _ := Load(ctx, "x", l)
		img.Manifests[0].M.Layers[0].Annotations[ProviderPrefix+"ocikp"] = "changed"
		if _, err := Write(ctx, img, l, l); err != nil {
			t.Fatalf("%s: writing back: %v", alg, err)
		}
		if img, err := Load(ctx, "x", l); err != nil || !strings.HasPrefix(img.Digest, "sha256:") ||
			img.Manifests[0].M.Layers[0].Annotations[ProviderPrefix+"ocikp"] != "changed" {
			t.Fatalf("%s: read back: %v", alg, err)
		}
	}
}

// A digest of another algorithm is refused unread, saying why.
func TestOtherDigestAlgorithm(t *testing.T) {
	m := []byte(imageManifest(d1, true, ""))
	dir, _ := writeLayout(t, "sha384", m, m)
	b, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	os.WriteFile(filepath.Join(dir, "index.json"), bytes.Replace(b, []byte(`"sha256:`), []byte(`"sha384:`), 1), 0o644)
	_, err := Load(context.Background(), "x", &Layout{Dir: dir, RefName: "img"})
	if !errors.Is(err, ErrManifest) || !strings.Contains(err.Error(), "only sha256 and sha512") {
		t.Fatalf("sha384: %v", err)
	}
}

// A layer blob read for --rotate-layer-keys is checked by its digest: the
// reader fails at the end, never reports a forgery as a whole blob.
func TestLayoutOpenBlobVerified(t *testing.T) {
	dir := t.TempDir()
	l := &Layout{Dir: dir}
	content := bytes.Repeat([]byte("layer "), 10000)
	for _, alg := range []string{"sha256", "sha512"} {
		var digest string
		if alg == "sha512" {
			digest = fmt.Sprintf("sha512:%x", sha512.Sum512(content))
		} else {
			digest = digestOf(content)
		}
		p, _ := l.blobPath(digest)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, content, 0o644)
		read := func() error {
			rc, err := l.OpenBlob(context.Background(), digest)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(io.Discard, rc)
			return err
		}
		if err := read(); err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		forged := bytes.Clone(content)
		forged[len(forged)/2] ^= 1
		os.WriteFile(p, forged, 0o644)
		if err := read(); !errors.Is(err, ErrDigest) {
			t.Errorf("%s, forged layer: %v", alg, err)
		}
	}
}

// The size in the descriptor must be the content's.
func TestEntrySize(t *testing.T) {
	s := newMemStore()
	m := imageManifest(d1, true, "")
	s.tag = s.add(index(fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d}`, s.add(m), len(m)+1)))
	if _, err := Load(context.Background(), "x", s); !errors.Is(err, ErrDigest) {
		t.Fatalf("wrong size: %v", err)
	}
}
