package imagekeys

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/envelope"
)

const d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
const d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"

func manifestJSON(annotations map[string]string) []byte {
	a, _ := json.Marshal(annotations)
	return []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"x/keep",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + d1 + `","size":10},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip+encrypted","digest":"` + d2 + `","size":20,"urls":["u"],"annotations":` + string(a) + `}],` +
		`"subject":{"mediaType":"m","digest":"` + d1 + `","size":1}}`)
}

// Fields the package does not know survive a rewrite, and the annotations
// of other schemes keep their bytes.
func TestManifestRoundTrip(t *testing.T) {
	jwe := "ZXlKaGJHY2lPaUpTVTBFdFQwRkZVQ0o5,b3RoZXI="
	m, err := ParseManifest(manifestJSON(map[string]string{KeysPrefix + "jwe": jwe, ProviderPrefix + "ocikp": "eA=="}), "")
	if err != nil {
		t.Fatal(err)
	}
	m.Layers[0].Annotations[ProviderPrefix+"ocikp"] = "eQ=="
	out, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		ArtifactType string `json:"artifactType"`
		Subject      struct{ Digest string }
		Layers       []struct {
			URLs        []string `json:"urls"`
			Annotations map[string]string
		}
	}
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if back.ArtifactType != "x/keep" || back.Subject.Digest != d1 || back.Layers[0].URLs[0] != "u" {
		t.Errorf("unknown fields lost: %s", out)
	}
	if back.Layers[0].Annotations[KeysPrefix+"jwe"] != jwe || back.Layers[0].Annotations[ProviderPrefix+"ocikp"] != "eQ==" {
		t.Errorf("annotations: %v", back.Layers[0].Annotations)
	}
}

func TestManifestBounds(t *testing.T) {
	for name, b := range map[string]string{
		"not json":        "{",
		"two objects":     `{"mediaType":"application/vnd.oci.image.manifest.v1+json"}{}`,
		"an index":        `{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`,
		"bad digest":      strings.Replace(string(manifestJSON(nil)), d2, "sha256:../../etc/passwd", 1),
		"no config":       `{"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`,
		"layers not list": `{"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"` + d1 + `"},"layers":{}}`,
		"too large":       strings.Repeat(" ", MaxManifestSize+1),
	} {
		if _, err := ParseManifest([]byte(b), ""); !errors.Is(err, ErrManifest) {
			t.Errorf("%s: %v, want ErrManifest", name, err)
		}
	}
	many := `{"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"` + d1 + `"},"layers":[` +
		strings.Repeat(`{"digest":"`+d2+`"},`, MaxLayers) + `{"digest":"` + d2 + `"}]}`
	if _, err := ParseManifest([]byte(many), ""); !errors.Is(err, ErrManifest) {
		t.Errorf("%d layers: %v", MaxLayers+1, err)
	}
}

func TestWrappings(t *testing.T) {
	env, _ := envelope.Parse(sealFor(t))
	blob, _ := env.Marshal()
	ws := Wrappings(map[string]string{
		ProviderPrefix + "ocikp": base64.StdEncoding.EncodeToString(blob),
		ProviderPrefix + "seed":  base64.StdEncoding.EncodeToString([]byte(`{"key_url":"gcpkms://x","wrapped_key":"AA=="}`)),
		KeysPrefix + "jwe":       "AAAA,BBBB",
		KeysPrefix + "pgp":       "!!",
		"org.example":            "ignored",
	})
	got := map[string]string{}
	for _, w := range ws {
		var formats []string
		for _, b := range w.Blobs {
			formats = append(formats, b.Format)
		}
		got[w.Scheme+"/"+w.Provider] = strings.Join(formats, ",")
	}
	want := map[string]string{
		"provider/ocikp": FormatOcikp,
		"provider/seed":  FormatGCPSeed,
		"jwe/":           FormatOpaque + "," + FormatOpaque,
		"pgp/":           FormatUnreadable,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("wrappings %v", got)
	}
}

type fixedRecipient struct{}

func (fixedRecipient) Wrap(fk []byte) (*envelope.Stanza, error) {
	return &envelope.Stanza{Type: "test", KID: "kms://k", Key: append([]byte(nil), fk...)}, nil
}

func sealFor(t *testing.T) []byte {
	b, err := envelope.Seal([]byte("secret"), fixedRecipient{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzParseManifest(f *testing.F) {
	f.Add(manifestJSON(map[string]string{ProviderPrefix + "ocikp": "eA=="}), "")
	f.Add([]byte(`{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"`+d1+`","platform":{"os":"linux","architecture":"amd64"}}]}`), MediaOCIIndex)
	f.Fuzz(func(t *testing.T, b []byte, mt string) {
		if m, err := ParseManifest(b, mt); err == nil {
			out, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			m2, err := ParseManifest(out, mt)
			if err != nil || len(m2.Layers) != len(m.Layers) {
				t.Fatalf("re-parse: %v", err)
			}
			for _, l := range m.Layers {
				Wrappings(l.Annotations)
			}
		} else if !errors.Is(err, ErrManifest) {
			t.Fatalf("error without ErrManifest: %v", err)
		}
		if x, err := ParseIndex(b, mt); err == nil {
			if _, err := x.Marshal(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzWrappings(f *testing.F) {
	f.Add(ProviderPrefix+"ocikp", base64.StdEncoding.EncodeToString([]byte(`{"v":1}`)))
	f.Add(KeysPrefix+"jwe", "AAAA,BBBB")
	f.Fuzz(func(t *testing.T, k, v string) {
		for _, w := range Wrappings(map[string]string{k: v}) {
			if len(w.Blobs) == 0 || len(w.Blobs) > maxBlobsPerScheme {
				t.Fatalf("%d blobs", len(w.Blobs))
			}
		}
	})
}
