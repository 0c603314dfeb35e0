package imagekeys

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// A registry's replies cost what their bounds say, not what the registry
// sends: a 64 MiB manifest reply is cut off after MaxManifestSize (the
// registry client would read 100 MiB), and a tag listing whose Link
// headers never end stops at MaxTagListBytes or MaxTagListPages.
func TestRegistryRepliesBounded(t *testing.T) {
	var pages atomic.Int64
	const lastPage = 3 * MaxTagListPages / 2
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
		case strings.HasSuffix(r.URL.Path, "/tags/list"):
			n := pages.Add(1)
			if n < lastPage {
				w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?last=%d>; rel="next"`, strings.Split(r.URL.Path, "/")[2], n))
			}
			w.Header().Set("Content-Type", "application/json")
			var tags []string
			if strings.HasPrefix(r.URL.Path, "/v2/big/") {
				for i := range 2000 {
					tags = append(tags, fmt.Sprintf(`"t%d-%d"`, n, i))
				}
			}
			fmt.Fprintf(w, `{"name":"x","tags":[%s]}`, strings.Join(tags, ","))
		case strings.Contains(r.URL.Path, "/manifests/"):
			w.Header().Set("Content-Type", MediaOCIManifest)
			chunk := []byte(strings.Repeat(" ", 1<<20))
			for range 64 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		default:
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	opts := RegistryOptions{Insecure: true}
	ctx := context.Background()

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ref, _ := name.ParseReference(host+"/app:v1", name.Insecure)
	_, _, _, err := (&Registry{Ref: ref, Opts: opts}).Resolve(ctx)
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("a 64 MiB manifest reply: %d MiB allocated; %v", allocated>>20, err)
	if allocated > 24<<20 {
		t.Errorf("reading a 64 MiB manifest reply allocated %d MiB", allocated>>20)
	}
	if !errors.Is(err, ErrReplyTooLarge) {
		t.Errorf("manifest: %v, want ErrReplyTooLarge", err)
	}

	for _, repo := range []string{"big", "empty"} {
		pages.Store(0)
		r, _ := name.NewRepository(host+"/"+repo, name.Insecure)
		tags, err := Tags(ctx, r, opts)
		t.Logf("%s tag pages: %d served, %d tags; %v", repo, pages.Load(), len(tags), err)
		if !errors.Is(err, ErrReplyTooLarge) || pages.Load() > MaxTagListPages {
			t.Errorf("%s tag pages without end: %d tags from %d pages, err %v", repo, len(tags), pages.Load(), err)
		}
	}
}
