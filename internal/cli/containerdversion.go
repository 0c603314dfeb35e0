package cli

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/ocikp/ocikp/internal/ctdversion"
	"github.com/ocikp/ocikp/internal/hint"
)

// containerdRelease is the node's containerd release and where it was read.
type containerdRelease struct {
	v      ctdversion.Version
	source string // "--containerd-version", or "containerd --version of PATH"
}

// How long and how much of "containerd --version" is read: it prints one
// short line; a binary that hangs or floods is not containerd.
var (
	ctdVersionTimeout = 5 * time.Second
	ctdVersionMax     = 4096
)

var errNoContainerd = errors.New("containerd is not in PATH")

const ctdVersionHint = "give the node's release: --containerd-version 2.2.2 (as \"containerd --version\" prints it on the node)"

// readContainerdRelease takes the release from the flag (a full release or
// the major alone) or else runs the containerd found in PATH.
func readContainerdRelease(flag string) (containerdRelease, error) {
	if flag != "" {
		v, err := ctdversion.Parse(flag)
		if err != nil || v.Major != 1 && v.Major != 2 {
			return containerdRelease{}, usagef("--containerd-version is 2 (containerd 2.x) or 1 (containerd 1.6 and 1.7), or a release such as 2.2.2 or v1.7.27, not %.20q", flag)
		}
		return containerdRelease{v, "--containerd-version"}, nil
	}
	path, err := exec.LookPath("containerd")
	if err != nil {
		return containerdRelease{}, hint.Wrap(errNoContainerd, ctdVersionHint)
	}
	out, err := runBounded(path, "--version")
	if err != nil {
		return containerdRelease{}, hint.Wrap(fmt.Errorf("%s --version: %w", path, err), ctdVersionHint)
	}
	v, err := ctdversion.FromOutput(out)
	if err != nil {
		return containerdRelease{}, hint.Wrap(fmt.Errorf("%s --version: %w", path, err), ctdVersionHint)
	}
	if strings.IndexFunc(path, unicode.IsControl) >= 0 {
		path = strconv.Quote(path) // it goes into a comment line of the drop-in
	}
	return containerdRelease{v, "containerd --version of " + path}, nil
}

// check refuses a release whose CRI cannot decrypt: why, and what to
// upgrade to. There is no override: no setting makes those releases'
// CRI decrypt, and the Transfer Service never does. A distribution build
// that carries the fix under an older number is written with the major
// alone (--containerd-version 2), which is not checked.
func (r containerdRelease) check() error {
	d := ctdversion.Check(r.v)
	switch {
	case d.Err == nil:
		return nil
	case errors.Is(d.Err, ctdversion.ErrNoDecrypt):
		return hint.Wrap(fmt.Errorf("containerd %s (%s): %w", r.v, r.source, ctdversion.ErrNoDecrypt),
			ctdversion.Why, "upgrade containerd to "+d.Upgrade+"; a build that carries the fix under this number: --containerd-version 2 (not checked)")
	case d.Upgrade != "":
		return hint.Wrap(fmt.Errorf("%s (%s)", d.Err, r.source), "upgrade containerd to "+d.Upgrade)
	}
	return fmt.Errorf("%w (%s)", d.Err, r.source)
}

// runBounded runs a program for at most ctdVersionTimeout and returns at
// most ctdVersionMax bytes of its standard output.
func runBounded(path string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ctdVersionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	w := &capped{max: ctdVersionMax}
	cmd.Stdout = w
	cmd.WaitDelay = time.Second // a child that keeps the pipe open
	err := cmd.Run()
	if ctx.Err() != nil {
		return "", fmt.Errorf("no answer in %v", ctdVersionTimeout)
	}
	if err != nil {
		return "", err
	}
	return string(w.b), nil
}

// capped keeps the first max bytes and discards the rest.
type capped struct {
	b   []byte
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// checkContainerd is doctor's check of the containerd in PATH: a release
// whose CRI cannot decrypt fails whatever its configuration. No containerd
// in PATH (a workstation running skopeo or podman): no line.
func (d *doctor) checkContainerd() {
	rel, err := readContainerdRelease("")
	if errors.Is(err, errNoContainerd) {
		return
	}
	if err != nil {
		d.warn("containerd", firstHint(err), "%v", err)
		return
	}
	if err := rel.check(); err != nil {
		h := hint.Of(err)
		detail := err.Error()
		if len(h) > 1 {
			detail += ": " + h[0]
		}
		fix := "upgrade containerd"
		if len(h) > 0 {
			fix = h[len(h)-1]
		}
		d.fail("containerd", fix, "%s", detail)
		return
	}
	d.ok("containerd", "containerd %s (%s) decrypts through the CRI (with the file ocikp config --containerd writes)", rel.v, rel.source)
}
