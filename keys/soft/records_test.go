package soft

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRecordDir(t *testing.T) {
	d := RecordDir(filepath.Join(t.TempDir(), "tpm"))
	if names, err := d.Names(); err != nil || names != nil {
		t.Fatalf("missing directory: %v, %v", names, err)
	}
	for _, n := range []string{"bob", "alice"} {
		if err := d.PutNew(n, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.PutNew("bob", []byte(`{"x":1}`)); err == nil || !strings.Contains(err.Error(), `key "bob" already exists`) {
		t.Fatalf("second write of bob: %v", err)
	}
	if b, _ := os.ReadFile(d.Path("bob")); string(b) != "{}" {
		t.Fatalf("bob was replaced: %s", b)
	}
	os.WriteFile(filepath.Join(string(d), "not a name!.json"), nil, 0o600)
	os.WriteFile(filepath.Join(string(d), "carol.txt"), nil, 0o600)
	if names, err := d.Names(); err != nil || !slices.Equal(names, []string{"alice", "bob"}) {
		t.Fatalf("names: %v, %v", names, err)
	}
	if !d.Has("alice") || d.Has("carol") || d.Has("../x") {
		t.Fatal("Has")
	}
	if err := d.Remove("alice"); err != nil || d.Has("alice") {
		t.Fatalf("remove: %v", err)
	}
	if err := d.Remove("../x"); err == nil {
		t.Fatal("removed an invalid name")
	}
	if fi, err := os.Stat(string(d)); err != nil || fi.Mode().Perm() != 0o700 || d.Stamp().IsZero() {
		t.Fatalf("directory: %v %v", fi, err)
	}
}
