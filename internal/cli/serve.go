package cli

import (
	"os"
	"syscall"

	"github.com/ocikp/ocikp/plugin"
)

// cmdServe replaces this process with ocikp-serve (found like a plugin: in
// $OCIKP_PLUGIN_DIR, beside ocikp, or on PATH), so that the exec provider
// does not link grpc-go. Signals then reach the service directly.
func cmdServe(e *env, args []string) error {
	c := &plugin.Client{Name: "ocikp-serve"}
	path, err := c.Find()
	if err != nil {
		return err
	}
	if e.keystore != "" {
		args = append([]string{"--keystore", e.keystore}, args...)
	}
	return syscall.Exec(path, append([]string{"ocikp serve"}, args...), os.Environ())
}
