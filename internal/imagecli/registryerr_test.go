package imagecli

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry errors read as plain words, naming what was asked for: not
// "MANIFEST_UNKNOWN: manifest unknown; map[Tag:nope]".
func TestRegistryErrorsPlain(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := name.ParseReference(host+"/app:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	// As distribution's registry (docker-registry) answers a missing tag.
	dist := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(404)
		fmt.Fprint(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}`)
	}))
	defer dist.Close()
	distHost := strings.TrimPrefix(dist.URL, "http://")

	for _, c := range []struct{ image, want string }{
		{"docker://" + host + "/app:nope", `no tag "nope" in ` + host + `/app`},
		{"docker://" + distHost + "/app:nope", `no tag "nope" in ` + distHost + `/app`},
		{"docker://" + host + "/app@sha256:" + strings.Repeat("ab", 32), "no manifest sha256:abab"},
		{"docker://" + host + "/nothere:1", `no repository ` + host + `/nothere`},
	} {
		for _, args := range [][]string{
			{"inspect", "--tls-verify=false", c.image},
			{"inspect", c.image}, // 127.0.0.1 answers on plain HTTP without --tls-verify=false
		} {
			_, stderr, code := runMain(args...)
			checkError(t, stderr, code, c.want)
			for _, raw := range []string{"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "map["} {
				if strings.Contains(stderr, raw) {
					t.Errorf("%v: the registry's code, not plain words:\n%s", args, stderr)
				}
			}
		}
	}
}
