// Package imageref parses image names as skopeo spells them:
// docker://HOST/REPO[:TAG|@DIGEST], oci:DIR[:REF] and oci-archive:FILE[:REF].
// Names come from the command line and from lists on stdin; nothing here
// touches the network or the filesystem.
package imageref

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/google/go-containerregistry/pkg/name"
)

// Transports.
const (
	Docker     = "docker"
	OCI        = "oci"
	OCIArchive = "oci-archive"
)

// maxLen bounds a name: registries refuse far shorter ones.
const maxLen = 4096

// Ref is a parsed image name.
type Ref struct {
	Transport string
	// Docker: the registry reference (a tag or a digest).
	Registry name.Reference
	// OCI, OCIArchive: the layout directory or archive file, and the
	// image's org.opencontainers.image.ref.name ("" for the only image).
	Path, RefName string
}

// ErrSyntax marks a name that is not in skopeo's syntax.
var ErrSyntax = errors.New("not an image name")

// Parse reads s. insecure allows plain HTTP for docker:// names (the
// caller's --tls-verify=false).
func Parse(s string, insecure bool) (*Ref, error) {
	if len(s) > maxLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrSyntax, maxLen)
	}
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0 {
		return nil, fmt.Errorf("%w: it contains a space or a control character", ErrSyntax)
	}
	transport, rest, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("%w: want docker://HOST/REPO:TAG, oci:DIR[:REF] or oci-archive:FILE[:REF]", ErrSyntax)
	}
	switch transport {
	case Docker:
		rest, ok = strings.CutPrefix(rest, "//")
		if !ok || rest == "" {
			return nil, fmt.Errorf("%w: docker names start docker://", ErrSyntax)
		}
		var opts []name.Option
		if insecure {
			opts = append(opts, name.Insecure)
		}
		// StrictValidation: no implicit "latest" or Docker Hub, so the
		// registry written to is the one the user named.
		r, err := name.ParseReference(rest, append(opts, name.StrictValidation)...)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
		return &Ref{Transport: Docker, Registry: r}, nil
	case OCI, OCIArchive:
		path, ref, _ := strings.Cut(rest, ":")
		if path == "" {
			return nil, fmt.Errorf("%w: %s: needs a path", ErrSyntax, transport)
		}
		return &Ref{Transport: transport, Path: path, RefName: ref}, nil
	}
	return nil, fmt.Errorf("%w: unknown transport %.20q (docker, oci, oci-archive)", ErrSyntax, transport)
}

// String is the name in skopeo's syntax.
func (r *Ref) String() string {
	switch r.Transport {
	case Docker:
		return "docker://" + r.Registry.String()
	default:
		if r.RefName == "" {
			return r.Transport + ":" + r.Path
		}
		return r.Transport + ":" + r.Path + ":" + r.RefName
	}
}
