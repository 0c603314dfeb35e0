package imageref

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"docker://127.0.0.1:5000/app:1", "docker://127.0.0.1:5000/app:1"},
		{"docker://reg.example/team/app@sha256:" + strings.Repeat("a", 64), "docker://reg.example/team/app@sha256:" + strings.Repeat("a", 64)},
		{"oci:/tmp/layout:v1", "oci:/tmp/layout:v1"},
		{"oci:/tmp/layout", "oci:/tmp/layout"},
		{"oci-archive:img.tar:v1", "oci-archive:img.tar:v1"},
	} {
		r, err := Parse(tc.in, true)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if r.String() != tc.want {
			t.Errorf("Parse(%q) = %s", tc.in, r)
		}
	}
	for _, bad := range []string{"", "app:1", "docker:app", "docker://app", "docker://reg.example/app", "oci:", "dir:/x", "docker://reg.example/a b:1", "docker://reg.example/app:1\n"} {
		if _, err := Parse(bad, false); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v, want ErrSyntax", bad, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"docker://127.0.0.1:5000/app:1", "oci:/x:y", "oci-archive:f", "docker://h/r@sha256:00", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s, false)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error without ErrSyntax: %v", err)
			}
			return
		}
		// What parses round-trips through its own spelling.
		r2, err := Parse(r.String(), false)
		if err != nil || r2.String() != r.String() {
			t.Fatalf("%q -> %q -> %v %v", s, r, r2, err)
		}
	})
}
