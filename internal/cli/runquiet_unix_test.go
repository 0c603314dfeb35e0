//go:build unix

package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Doctor runs whatever a config names: one that leaves a child holding
// its output open, or that prints without end, costs doctor a bounded
// wait and a bounded buffer.
func TestRunQuietBounded(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	start := time.Now()
	out, err := runQuiet(script("lingers", "echo ocikp v9.9.9\nsleep 20 &"), "version")
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("waited %v for a child that holds the output", took)
	}
	if !strings.HasPrefix(out, "ocikp v9.9.9") {
		t.Errorf("output %q, %v", out, err)
	}
	out, _ = runQuiet(script("floods", "head -c 1000000 /dev/zero | tr '\\0' x"), "version")
	if len(out) != 64<<10 {
		t.Errorf("kept %d bytes of 1,000,000", len(out))
	}
}
