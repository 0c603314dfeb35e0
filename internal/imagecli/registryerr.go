package imagecli

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ocikp/ocikp/internal/hint"
)

// plainRegistryError says in words what a registry's error code means for
// ref ("no tag \"nope\" in 127.0.0.1:5000/app"), instead of the client's
// "GET …: MANIFEST_UNKNOWN: manifest unknown; map[Tag:nope]". The names in
// it are the user's; the registry's own text is dropped for the codes
// mapped here and kept (escaped on output, see output.go) for the rest.
// Failures of the whole exchange (credentials, access, rate) lead with
// shown, the reference as the user typed it. The transport.Error stays in
// the chain for errors.As.
func plainRegistryError(ref name.Reference, shown string, err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return nil
	}
	repo := ref.Context().Name()
	code := func(c transport.ErrorCode) bool {
		for _, d := range te.Errors {
			if d.Code == c {
				return true
			}
		}
		return false
	}
	wrap := func(format string, args ...any) error {
		return &registryError{msg: fmt.Sprintf(format, args...), err: err}
	}
	switch {
	case code(transport.NameUnknownErrorCode):
		return hint.Wrap(wrap("no repository %s", repo), "check the name; list a registry's repositories with: skopeo list-tags docker://"+repo)
	case code(transport.ManifestUnknownErrorCode) || te.StatusCode == http.StatusNotFound && len(te.Errors) == 0:
		if t, ok := ref.(name.Tag); ok {
			return hint.Wrap(wrap("no tag %q in %s", t.TagStr(), repo), "list its tags with: skopeo list-tags docker://"+repo)
		}
		return wrap("no manifest %s in %s", ref.Identifier(), repo)
	case code(transport.UnauthorizedErrorCode) || te.StatusCode == http.StatusUnauthorized:
		return wrap("%s: the registry wants credentials (HTTP %d)", shown, te.StatusCode)
	case code(transport.DeniedErrorCode) || te.StatusCode == http.StatusForbidden:
		return wrap("%s: the registry denied access (HTTP %d)", shown, te.StatusCode)
	case code(transport.TooManyRequestsErrorCode) || te.StatusCode == http.StatusTooManyRequests:
		return hint.Wrap(wrap("%s: the registry refuses more requests for now (too many requests)", shown), "try again later")
	}
	return nil
}

// registryError is a registry failure in words; it unwraps to the
// client's error.
type registryError struct {
	msg string
	err error
}

func (e *registryError) Error() string { return e.msg }
func (e *registryError) Unwrap() error { return e.err }
