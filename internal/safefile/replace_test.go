package safefile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReplace(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := Replace(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Replace(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "two" {
		t.Fatalf("read %q, %v", b, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	// A directory that cannot be written: the old file stays, no temporary
	// file is left behind.
	if os.Getuid() != 0 {
		os.Chmod(dir, 0o500)
		defer os.Chmod(dir, 0o700)
		if err := Replace(p, []byte("three"), 0o644); err == nil {
			t.Fatal("replaced a file in a read-only directory")
		}
		if b, _ := os.ReadFile(p); string(b) != "two" {
			t.Fatalf("the old file changed: %q", b)
		}
	}
	// A missing directory fails cleanly.
	if err := Replace(filepath.Join(dir, "no", "f"), nil, 0o644); err == nil {
		t.Fatal("wrote into a missing directory")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want only f", len(ents))
	}
}
