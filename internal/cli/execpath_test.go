package cli

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// ocikp config runs the ocikp-unwrap installed beside ocikp, and only an
// executable file of that name.
func TestExecPath(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ocikp-unwrap answers nothing itself outside Linux: config runs ocikp")
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "ocikp")
	fast := filepath.Join(dir, "ocikp-unwrap")
	if got := execPath(exe); got != exe {
		t.Errorf("no ocikp-unwrap: %s", got)
	}
	os.WriteFile(fast, []byte("#!/bin/sh\n"), 0o644)
	if got := execPath(exe); got != exe {
		t.Errorf("a non-executable ocikp-unwrap: %s", got)
	}
	os.Chmod(fast, 0o755)
	if got := execPath(exe); got != fast {
		t.Errorf("ocikp-unwrap beside ocikp: %s", got)
	}
	os.Remove(fast)
	os.Mkdir(fast, 0o755)
	if got := execPath(exe); got != exe {
		t.Errorf("a directory named ocikp-unwrap: %s", got)
	}
}
