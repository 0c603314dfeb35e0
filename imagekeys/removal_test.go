package imagekeys

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/envelope"
)

// rmStore is one tagged manifest in memory. dropTag makes Retag answer
// success and keep the old tag, as a registry that loses the write.
type rmStore struct {
	blobs   map[string][]byte
	tag     string
	dropTag bool
}

func (s *rmStore) Resolve(context.Context) ([]byte, string, string, error) {
	return s.blobs[s.tag], MediaOCIManifest, s.tag, nil
}

func (s *rmStore) Fetch(_ context.Context, d string) ([]byte, string, error) {
	b, ok := s.blobs[d]
	if !ok {
		return nil, "", errors.New("no such manifest")
	}
	return b, MediaOCIManifest, nil
}

func (s *rmStore) Put(_ context.Context, raw []byte, _ string) (string, error) {
	d := digestOf(raw)
	s.blobs[d] = raw
	return d, nil
}

func (s *rmStore) Retag(ctx context.Context, raw []byte, mt, old string) error {
	if old != "" && old != s.tag {
		return ErrMoved
	}
	d, _ := s.Put(ctx, raw, mt)
	if !s.dropTag {
		s.tag = d
	}
	return nil
}

// rmImage stores a manifest whose one encrypted layer's envelope has a
// "test" stanza for each kid.
func rmImage(t *testing.T, kids ...string) *rmStore {
	var rs []envelope.Recipient
	for _, k := range kids {
		rs = append(rs, kidRecipient(k))
	}
	blob, err := envelope.Seal([]byte("optsdata"), rs...)
	if err != nil {
		t.Fatal(err)
	}
	m := manifestJSON(map[string]string{ProviderPrefix + "ocikp": base64.StdEncoding.EncodeToString(blob)})
	s := &rmStore{blobs: map[string][]byte{}}
	s.tag, _ = s.Put(context.Background(), m, MediaOCIManifest)
	return s
}

// Unheld names the targets no layer holds; VerifyRemoved passes on what
// was written and fails when the write was lost (the read-back still holds
// the removed recipient and is not what was written).
func TestUnheldAndVerifyRemoved(t *testing.T) {
	ctx := context.Background()
	for _, drop := range []bool{false, true} {
		st := rmImage(t, "kms://a", "kms://b")
		st.dropTag = drop
		img, err := Load(ctx, "img", st)
		if err != nil {
			t.Fatal(err)
		}
		a, c := target("kms://a"), target("kms://c")
		if un := Unheld(img, "ocikp", []*Target{a, c}); len(un) != 1 || un[0] != c {
			t.Fatalf("unheld: %v", un)
		}
		if un := Unheld(img, "other", []*Target{a}); len(un) != 1 {
			t.Fatalf("another provider name holds nothing: %v", un)
		}
		if _, _, err := Plan(ctx, img, &testOpener{}, RewrapOptions{Provider: "ocikp", Remove: []*Target{a}}); err != nil {
			t.Fatal(err)
		}
		d, err := Write(ctx, img, st, st)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := VerifyRemoved(ctx, "img", st, d, []*Target{a})
		switch {
		case !drop && (err != nil || len(lines) != 1 || lines[0] != "no layer reachable from img holds a stanza for kms://a"):
			t.Fatalf("verify: %q %v", lines, err)
		case drop && (!errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), "still holds a stanza for kms://a") || !strings.Contains(err.Error(), "not at "+d)):
			t.Fatalf("a lost write verified: %v", err)
		}
	}
	// The read-back checks every provider name's envelope, not only the
	// one rewrap changed.
	st := rmImage(t, "kms://a")
	raw := st.blobs[st.tag]
	blob, _ := envelope.Seal([]byte("x"), kidRecipient("kms://a"))
	m, _ := ParseManifest(raw, "")
	m.Layers[0].Annotations[ProviderPrefix+"other"] = base64.StdEncoding.EncodeToString(blob)
	delete(m.Layers[0].Annotations, ProviderPrefix+"ocikp")
	raw2, _ := m.Marshal()
	st.tag, _ = st.Put(ctx, raw2, MediaOCIManifest)
	if _, err := VerifyRemoved(ctx, "img", st, st.tag, []*Target{target("kms://a")}); !errors.Is(err, ErrNotVerified) {
		t.Fatalf("a stanza under another provider name: %v", err)
	}
}

func TestShorten(t *testing.T) {
	long := "ocikp1mlkem768x255191" + strings.Repeat("q", 2000) + "tail0123456789ab"
	got := Shorten(long)
	if !strings.HasPrefix(got, long[:40]) || !strings.HasSuffix(got, "…tail0123456789ab") || len(got) > 64 {
		t.Fatalf("Shorten(long) = %q", got)
	}
	if got := Shorten("kms://a"); got != "kms://a" {
		t.Fatal(got)
	}
	if got := Shorten("a\x1b[2Jb"); got != fmt.Sprintf("%q", "a\x1b[2Jb") {
		t.Fatalf("escapes: %q", got)
	}
}
