package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// ocikp-unwrap exists to link less than ocikp: these are all of ocikp's
// own packages it may link. A new one is a start-up cost paid on every
// layer (docs/performance.md): measure it first.
var allowed = []string{
	"backend", "cmd/ocikp-unwrap", "envelope", "internal/buildver", "internal/bech32m", "internal/fastpath",
	"internal/hint", "internal/jsonwalk", "internal/safefile",
	"internal/safetext", "keys/soft", "p256", "pq", "protocol",
}

func TestLinksOnlyTheFastPath(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/ocikp/ocikp/cmd/ocikp-unwrap").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := 0
	for _, d := range strings.Fields(string(out)) {
		own, ok := strings.CutPrefix(d, "github.com/ocikp/ocikp/")
		if !ok {
			if d == "flag" || d == "log/slog" || strings.HasPrefix(d, "google.golang.org/") {
				t.Errorf("links %s", d)
			}
			continue
		}
		seen++
		if !slices.Contains(allowed, own) {
			t.Errorf("links %s", d)
		}
	}
	if seen < len(allowed)/2 {
		t.Fatalf("go list gave %d of ocikp's packages: not ocikp-unwrap's dependencies?", seen)
	}
}
