package cli

import (
	"fmt"

	"github.com/ocikp/ocikp/internal/buildver"
)

func cmdVersion(e *env, args []string) error {
	if _, err := e.parse(e.flags("version"), args, 0, 0, ""); err != nil {
		return err
	}
	// Read here, not at start-up: the exec provider never needs it.
	fmt.Fprintln(e.stdout, versionString())
	return nil
}

// versionString is this binary's version (doctor compares it with the
// ocikp a config runs).
func versionString() string { return buildver.Current() }
