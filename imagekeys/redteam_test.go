package imagekeys

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// A registry that answers a manifest or blob request and then stops
// sending (or sends a byte now and then) held inspect, rewrap and migrate
// forever: nothing bounded a reply's time. A manifest or tag list reply
// must come whole within ReplyTimeout, and a blob reply must not stall
// for StallTimeout.
func TestRegistryStallBounded(t *testing.T) {
	setReplyTimeouts(t, time.Second, time.Second)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			return
		case strings.Contains(r.URL.Path, "/manifests/"):
			w.Header().Set("Content-Type", MediaOCIManifest)
		case strings.Contains(r.URL.Path, "/blobs/"):
			w.Header().Set("Content-Length", "100000")
		default:
			w.WriteHeader(404)
			return
		}
		// A byte every half second: never a stall, never an end.
		for {
			w.Write([]byte(" "))
			w.(http.Flusher).Flush()
			select {
			case <-release:
				return
			case <-r.Context().Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			if strings.Contains(r.URL.Path, "/blobs/") {
				// Blobs: one byte, then silence.
				select {
				case <-release:
				case <-r.Context().Done():
				}
				return
			}
		}
	}))
	defer srv.Close()
	defer close(release) // before Close, which waits for the handlers
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, _ := name.ParseReference(host+"/app:v1", name.Insecure)
	reg := &Registry{Ref: ref, Opts: RegistryOptions{Insecure: true}}

	within := func(what string, f func() error) {
		t.Helper()
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- f() }()
		select {
		case err := <-done:
			if err == nil || !errors.Is(err, ErrRegistryStalled) {
				t.Fatalf("%s: %v, want %v", what, err, ErrRegistryStalled)
			}
			t.Logf("%s: failed after %v: %v", what, time.Since(start).Round(time.Millisecond), err)
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: still waiting for the registry after 20 s", what)
		}
	}
	within("manifest", func() error { _, _, _, err := reg.Resolve(context.Background()); return err })
	within("blob", func() error {
		r, err := reg.OpenBlob(context.Background(), "sha256:"+strings.Repeat("a", 64))
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = io.Copy(io.Discard, r)
		return err
	})
}

// setReplyTimeouts lowers ReplyTimeout and StallTimeout for one test.
func setReplyTimeouts(t *testing.T, reply, stall time.Duration) {
	r0, s0 := ReplyTimeout, StallTimeout
	ReplyTimeout, StallTimeout = reply, stall
	t.Cleanup(func() { ReplyTimeout, StallTimeout = r0, s0 })
}

// A key annotation of commas only (4 MiB fits in a manifest) was split
// into four million strings (64 MiB) before the count of wrapped keys was
// checked, on every read of the layer (inspect, Unheld, VerifyRemoved).
// The count is checked first.
func TestWrappingsCountBeforeSplit(t *testing.T) {
	ann := map[string]string{ProviderPrefix + "ocikp": strings.Repeat(",", MaxManifestSize-1024)}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ws := Wrappings(ann)
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d-byte annotation of commas: %d KiB allocated", MaxManifestSize-1024, alloc>>10)
	if len(ws) != 1 || ws[0].Blobs[0].Format != FormatUnreadable {
		t.Fatalf("wrappings: %+v", ws)
	}
	if alloc > 1<<20 {
		t.Fatalf("reading an annotation of %d bytes allocated %d MiB", MaxManifestSize-1024, alloc>>20)
	}
}

// Each reply within ReplyTimeout is not enough: an index of 1,024 entries
// whose manifests each come just inside it held a load for 1,024 times
// the bound (34 hours at 2 minutes). The whole graph is read within
// LoadTimeout.
func TestLoadTimeBounded(t *testing.T) {
	setReplyTimeouts(t, 5*time.Second, 5*time.Second)
	l0 := LoadTimeout
	LoadTimeout = 2 * time.Second
	t.Cleanup(func() { LoadTimeout = l0 })
	docs := map[string][]byte{}
	var entries []string
	for i := range 40 {
		m := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":1},"layers":[],"annotations":{"i":"%d"}}`,
			MediaOCIManifest, strings.Repeat("a", 64), i)
		d := digestOf(m)
		docs[d] = m
		entries = append(entries, fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"amd%d"}}`, MediaOCIManifest, d, len(m), i))
	}
	top := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"manifests":[%s]}`, MediaOCIIndex, strings.Join(entries, ","))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ref, ok := strings.CutPrefix(r.URL.Path, "/v2/app/manifests/")
		if !ok {
			return
		}
		b, mt := top, MediaOCIIndex
		if ref != "v1" {
			if b, mt = docs[ref], MediaOCIManifest; b == nil {
				w.WriteHeader(404)
				return
			}
			select { // slow, within every per-reply bound
			case <-time.After(250 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", mt)
		w.Header().Set("Docker-Content-Digest", digestOf(b))
		w.Write(b)
	}))
	defer srv.Close()
	ref, _ := name.ParseReference(strings.TrimPrefix(srv.URL, "http://")+"/app:v1", name.Insecure)
	start := time.Now()
	img, err := Load(context.Background(), "app", &Registry{Ref: ref, Opts: RegistryOptions{Insecure: true}})
	took := time.Since(start)
	t.Logf("40 manifests at 250 ms each, LoadTimeout %v: %v after %v", LoadTimeout, err, took.Round(time.Millisecond))
	if err == nil || !errors.Is(err, ErrRegistryStalled) || took > 5*time.Second {
		n := 0
		if img != nil {
			n = len(img.Manifests)
		}
		t.Fatalf("load of a slow graph: %v (%d manifests) after %v, want %v within about %v", err, n, took, ErrRegistryStalled, LoadTimeout)
	}
}
