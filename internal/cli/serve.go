package cli

import (
	"fmt"
	"os"
	"syscall"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/plugin"
)

// cmdServe replaces this process with ocikp-serve (found like a plugin: in
// $OCIKP_PLUGIN_DIR, beside ocikp, or on PATH), so that the exec provider
// does not link grpc-go. Signals then reach the service directly.
func cmdServe(e *env, args []string) error {
	if e.keystore != "" {
		args = append([]string{"--keystore", e.keystore}, args...)
	}
	return execServe("ocikp serve", args)
}

// cmdHealth runs ocikp-serve's health probe, which needs a gRPC client.
func cmdHealth(e *env, args []string) error {
	return execServe("ocikp health", append([]string{"health"}, args...))
}

func execServe(argv0 string, args []string) error {
	path, err := (&plugin.Client{Name: "ocikp-serve"}).Find()
	if err != nil {
		return err
	}
	err = syscall.Exec(path, append([]string{argv0}, args...), os.Environ())
	return hint.Wrap(fmt.Errorf("running %s: %w", path, err), "ocikp-serve is installed with ocikp (go install ./cmd/...); it is looked for in $"+plugin.EnvDir+", next to ocikp and on PATH")
}

// cmdImage runs an ocikp-image command (inspect, rewrap): they link a
// registry client, which the exec provider must not.
func cmdImage(name string) func(e *env, args []string) error {
	return func(e *env, args []string) error {
		if e.keystore != "" {
			args = append([]string{"--keystore", e.keystore}, args...)
		}
		path, err := (&plugin.Client{Name: "ocikp-image"}).Find()
		if err != nil {
			return err
		}
		err = syscall.Exec(path, append([]string{"ocikp-image", name}, args...), os.Environ())
		return hint.Wrap(fmt.Errorf("running %s: %w", path, err), "ocikp-image is installed with ocikp (go install ./cmd/...); it is looked for in $"+plugin.EnvDir+", next to ocikp and on PATH")
	}
}
