package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocikp/ocikp/internal/ctdversion"
	"github.com/ocikp/ocikp/internal/hint"
)

// fakeContainerd puts a containerd script first in an otherwise empty PATH.
func fakeContainerd(t *testing.T, script string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "containerd"), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":/bin:/usr/bin")
}

func TestContainerdReleaseNotInPath(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := readContainerdRelease("")
	if !errors.Is(err, errNoContainerd) || len(hint.Of(err)) != 1 || !strings.Contains(hint.Of(err)[0], "--containerd-version") {
		t.Fatalf("no containerd in PATH: %v %q", err, hint.Of(err))
	}
	// The flag needs no containerd at all.
	rel, err := readContainerdRelease("2.2.2")
	if err != nil || rel.check() != nil || rel.source != "--containerd-version" {
		t.Fatalf("--containerd-version 2.2.2: %+v %v", rel, err)
	}
}

// A containerd that hangs, or prints without end, costs a bounded time and
// memory and yields no guess.
func TestContainerdReleaseBounded(t *testing.T) {
	defer func(d time.Duration) { ctdVersionTimeout = d }(ctdVersionTimeout)
	ctdVersionTimeout = 300 * time.Millisecond
	fakeContainerd(t, "exec sleep 30")
	start := time.Now()
	_, err := readContainerdRelease("")
	if err == nil || !strings.Contains(err.Error(), "no answer in") || time.Since(start) > 10*time.Second {
		t.Fatalf("hanging containerd: %v after %v", err, time.Since(start))
	}

	fakeContainerd(t, "echo 'containerd x 2.4.2 y'; exec yes")
	out, err := runBounded("containerd", "--version")
	if err == nil || len(out) > ctdVersionMax {
		t.Fatalf("flooding containerd: %d bytes, %v", len(out), err)
	}
	fakeContainerd(t, "echo 'containerd x 2.4.2 y'; head -c 1000000 /dev/zero")
	out, err = runBounded("containerd", "--version")
	if err != nil || len(out) != ctdVersionMax || !strings.HasPrefix(out, "containerd x 2.4.2 y\n") {
		t.Fatalf("containerd printing 1 MB: %d bytes, %v", len(out), err)
	}
}

// The refusal is one error line and two hints: why, and what to upgrade to.
func TestContainerdReleaseRefused(t *testing.T) {
	fakeContainerd(t, "echo 'containerd github.com/containerd/containerd/v2 v2.1.6 0123456789abcdef'")
	rel, err := readContainerdRelease("")
	if err != nil {
		t.Fatal(err)
	}
	err = rel.check()
	h := hint.Of(err)
	if !errors.Is(err, ctdversion.ErrNoDecrypt) || len(h) != 2 || h[0] != ctdversion.Why || !strings.HasPrefix(h[1], "upgrade containerd to 2.1.7;") {
		t.Fatalf("2.1.6: %v %q", err, h)
	}
	if !strings.HasPrefix(err.Error(), "containerd 2.1.6 (containerd --version of ") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("2.1.6: %q", err)
	}
}

// The real containerd 2.4.2 the suite builds (scripts/install-tools.sh) is
// read and accepted.
func TestContainerdReleaseReal(t *testing.T) {
	dir := os.Getenv("OCIKP_TOOLS_BIN")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "ocikp", "tools", "bin")
	}
	bin := filepath.Join(dir, "containerd2")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("OCIKP_E2E") == "1" {
			t.Fatalf("OCIKP_E2E=1 but %s is missing: run scripts/install-tools.sh", bin)
		}
		t.Skipf("%s is not built (scripts/install-tools.sh)", bin)
	}
	link := filepath.Join(t.TempDir(), "containerd")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", filepath.Dir(link))
	rel, err := readContainerdRelease("")
	if err != nil {
		t.Fatal(err)
	}
	want := ctdversion.Version{Major: 2, Minor: 4, Patch: 2}
	if rel.v != want || rel.check() != nil {
		t.Fatalf("%s: %+v, check %v; want %+v accepted", bin, rel.v, rel.check(), want)
	}
	t.Logf("%s: containerd %s", bin, rel.v)
}
