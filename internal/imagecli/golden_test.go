package imagecli

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/p256"
)

var update = flag.Bool("update", false, "rewrite testdata/inspect.golden.json and the layout it describes")

// The layout in testdata/layout is made once (go test -run TestInspectGolden
// -update) and kept: envelopes are random, the golden file must not be.
// One image, three layers: plain; an ocikp envelope for a P-256 key and a
// KMS key; JWE beside the GCP seed provider's blob.
func makeGoldenLayout(t *testing.T, dir string) {
	os.RemoveAll(dir)
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	r, _ := p256.NewRecipient(priv.PublicKey())
	blob, err := envelope.Seal([]byte(`{"symkey":"x"}`), r, kidRecipient("gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k"))
	if err != nil {
		t.Fatal(err)
	}
	seed := `{"key_url":"gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/old","wrapped_key":"AAAA","wrap_type":"AES"}`
	ann := map[string]string{
		"org.opencontainers.image.enc.keys.provider.ocikp": base64.StdEncoding.EncodeToString(blob),
		"org.opencontainers.image.enc.pubopts":             "e30=",
	}
	ann2 := map[string]string{
		"org.opencontainers.image.enc.keys.jwe":               "ZXlKaGJHY2lPaUpTVTBFdFQwRkZVQ0o5",
		"org.opencontainers.image.enc.keys.provider.kmscrypt": base64.StdEncoding.EncodeToString([]byte(seed)),
	}
	a1, _ := json.Marshal(ann)
	a2, _ := json.Marshal(ann2)
	put := layoutWriter(t, dir)
	cfg := put([]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":1},"layers":[`+
		`{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":5},`+
		`{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip+encrypted","digest":%q,"size":6,"annotations":%s},`+
		`{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip+encrypted","digest":%q,"size":7,"annotations":%s}]}`,
		cfg, put([]byte("plain")), put([]byte("cipher")), a1, put([]byte("cipher2")), a2)
	md := put([]byte(m))
	os.WriteFile(filepath.Join(dir, "index.json"), fmt.Appendf(nil, `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"annotations":{"org.opencontainers.image.ref.name":"img"}}]}`, md, len(m)), 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	addNestedGolden(t, dir)
}

// addNestedGolden names "nested" an index whose image manifest (img's) sits
// under a nested index, beside an attestation manifest that inspect lists
// as passed over.
func addNestedGolden(t *testing.T, dir string) {
	put := layoutWriter(t, dir)
	var idx struct {
		Manifests []struct {
			Digest string
			Size   int
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil || json.Unmarshal(b, &idx) != nil {
		t.Fatalf("index.json: %v", err)
	}
	img := idx.Manifests[0]
	cfg := put([]byte(`{"architecture":"unknown","os":"unknown","rootfs":{"type":"layers","diff_ids":[]}}`))
	att := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":1},"layers":[`+
		`{"mediaType":"application/vnd.in-toto+json","digest":%q,"size":2,"annotations":{"in-toto.io/predicate-type":"https://spdx.dev/Document"}}]}`, cfg, put([]byte("{}")))
	nested := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`+
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"platform":{"architecture":"amd64","os":"linux"}}]}`, img.Digest, img.Size)
	top := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`+
		`{"mediaType":"application/vnd.oci.image.index.v1+json","digest":%q,"size":%d},`+
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"annotations":{"vnd.docker.reference.digest":%q,"vnd.docker.reference.type":"attestation-manifest"},"platform":{"architecture":"unknown","os":"unknown"}}]}`,
		put(nested), len(nested), put(att), len(att), img.Digest)
	b = fmt.Appendf(nil, `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"annotations":{"org.opencontainers.image.ref.name":"img"}},`+
		`{"mediaType":"application/vnd.oci.image.index.v1+json","digest":%q,"size":%d,"annotations":{"org.opencontainers.image.ref.name":"nested"}}]}`, img.Digest, img.Size, put(top), len(top))
	if err := os.WriteFile(filepath.Join(dir, "index.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestInspectGolden(t *testing.T) {
	dir := filepath.Join("testdata", "layout")
	golden := filepath.Join("testdata", "inspect.golden.json")
	if *update {
		makeGoldenLayout(t, dir)
	}
	out, stderr, code := runMain("inspect", "--json", "oci:"+dir+":img", "oci:"+dir+":nested")
	if code != 0 {
		t.Fatalf("inspect: %d %s", code, stderr)
	}
	if *update {
		os.WriteFile(golden, []byte(out), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Fatalf("inspect --json differs from %s (go test -run TestInspectGolden -update after a deliberate change):\n%s", golden, out)
	}
}
