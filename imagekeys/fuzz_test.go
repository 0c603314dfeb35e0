package imagekeys

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// fuzzStore builds a store from fuzz bytes: documents separated by "\n;\n",
// the first is what the name points at, and "@N" in document i stands for
// the digest of document N > i (so the graph is acyclic, as content
// addressing makes it, yet the fuzzer can shape it freely).
func fuzzStore(data []byte) *memStore {
	docs := bytes.Split(data, []byte("\n;\n"))
	if len(docs) > 10 {
		docs = docs[:10]
	}
	digests := make([]string, len(docs))
	s := newMemStore()
	for i := len(docs) - 1; i >= 0; i-- {
		d := string(docs[i])
		for j := len(docs) - 1; j > i; j-- {
			d = strings.ReplaceAll(d, "@"+string(rune('0'+j)), digests[j])
		}
		digests[i] = s.add(d)
	}
	s.tag = digests[0]
	return s
}

const fuzzEnc = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + cfgDigest + `","size":1},` +
	`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip+encrypted","digest":"` + d1 + `","size":5,"annotations":{"org.opencontainers.image.enc.keys.provider.ocikp":"eA=="}}]}`

func fuzzIndex(entries ...string) string {
	return `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + strings.Join(entries, ",") + `]}`
}

func fuzzEntry(mt string, n int, extra string) string {
	return `{"mediaType":"` + mt + `","digest":"@` + string(rune('0'+n)) + `"` + extra + `}`
}

// FuzzLoad: whatever a registry or layout hands over, Load never panics,
// keeps to the graph's bounds, and what it loads can be written back and
// read again whole.
func FuzzLoad(f *testing.F) {
	join := func(docs ...string) []byte { return []byte(strings.Join(docs, "\n;\n")) }
	f.Add(join(fuzzEnc))
	// An image beside a nested index, an attestation and a signature.
	f.Add(join(
		fuzzIndex(fuzzEntry(MediaOCIManifest, 1, amd64), fuzzEntry(MediaOCIIndex, 2, ""),
			fuzzEntry(MediaOCIManifest, 3, `,"annotations":{"vnd.docker.reference.type":"attestation-manifest"}`),
			fuzzEntry("application/vnd.example+json", 4, `,"artifactType":"x/sig"`)),
		fuzzEnc,
		fuzzIndex(fuzzEntry(MediaOCIManifest, 1, ""), fuzzEntry(MediaDockerManifest, 5, "")),
		imageManifest(d2, false, ""),
		`{"mediaType":"application/vnd.example+json","blobs":[]}`,
		strings.Replace(fuzzEnc, MediaOCIManifest, MediaDockerManifest, 1),
	))
	// A chain of indexes one deeper than the bound.
	f.Add(join(
		fuzzIndex(fuzzEntry(MediaOCIIndex, 1, "")), fuzzIndex(fuzzEntry(MediaOCIIndex, 2, "")),
		fuzzIndex(fuzzEntry(MediaOCIIndex, 3, "")), fuzzIndex(fuzzEntry(MediaOCIIndex, 4, "")),
		fuzzIndex(fuzzEntry(MediaOCIManifest, 5, "")), fuzzEnc))
	// The same manifest reached twice; an entry without a media type.
	f.Add(join(
		fuzzIndex(fuzzEntry(MediaOCIManifest, 1, ""), fuzzEntry(MediaOCIIndex, 2, ""), fuzzEntry("", 1, "")),
		fuzzEnc, fuzzIndex(fuzzEntry(MediaOCIManifest, 1, ""))))
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		s := fuzzStore(data)
		img, err := Load(ctx, "fuzz", s)
		if err != nil {
			return
		}
		layers := 0
		for _, pm := range img.Manifests {
			if len(pm.Via) >= MaxIndexDepth {
				t.Fatalf("a manifest %d indexes deep", len(pm.Via)+1)
			}
			layers += len(pm.M.Layers)
		}
		if n := len(img.Manifests) + len(img.PassedOver) + len(img.children); n > MaxGraphEntries {
			t.Fatalf("%d entries read", n)
		}
		if layers > MaxImageLayers {
			t.Fatalf("%d layers", layers)
		}
		for _, p := range img.PassedOver {
			if p.Reason == "" {
				t.Fatal("passed over without a reason")
			}
		}
		Inspect(img, nil)
		img.Blobs()
		if _, err := Write(ctx, img, s, s); err != nil {
			t.Fatalf("Write: %v", err)
		}
		again, err := Load(ctx, "fuzz", s)
		if err != nil {
			t.Fatalf("what Write wrote does not load: %v", err)
		}
		if len(again.Manifests) != len(img.Manifests) || len(again.PassedOver) != len(img.PassedOver) {
			t.Fatalf("after Write: %d manifests, %d passed over; before: %d, %d",
				len(again.Manifests), len(again.PassedOver), len(img.Manifests), len(img.PassedOver))
		}
	})
}
