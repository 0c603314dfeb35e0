package ctdversion

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Version
	}{
		{"2", Version{Major: 2, MajorOnly: true}},
		{"1", Version{Major: 1, MajorOnly: true}},
		{"v2", Version{Major: 2, MajorOnly: true}},
		{"2.2.1", Version{Major: 2, Minor: 2, Patch: 1}},
		{"v2.1.6", Version{Major: 2, Minor: 1, Patch: 6}},
		{"1.7.27", Version{Major: 1, Minor: 7, Patch: 27}},
		{"2.2.1-1ubuntu1", Version{Major: 2, Minor: 2, Patch: 1}},
		{"1.7.24~ds1-1", Version{Major: 1, Minor: 7, Patch: 24}},
		{"1.6.20~ds1", Version{Major: 1, Minor: 6, Patch: 20}},
		{"2.4.2+unknown", Version{Major: 2, Minor: 4, Patch: 2}},
		{"v1.7.27-k3s1", Version{Major: 1, Minor: 7, Patch: 27}},
		{"2.1.7-rc.1", Version{Major: 2, Minor: 1, Patch: 7, Pre: true}},
		{"2.3.0-beta.0", Version{Major: 2, Minor: 3, Patch: 0, Pre: true}},
		{"1.7.0~rc1", Version{Major: 1, Minor: 7, Patch: 0, Pre: true}},
	} {
		got, err := Parse(c.in)
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "3.", "2.1", "2.1.", ".2.1", "2.1.6.1", "x", "two", "2.x", "-2.1.6",
		"02.1.6", "2.1.06", "99999.1.1", "2.1.6 ", "2.1.6-a b", "2.1.6-\x1b[31m", "2-rc1", "2.1.6\n2.2.2",
		"2.2.2-" + string(make([]byte, 70))} {
		if v, err := Parse(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %+v, %v; want ErrSyntax", bad, v, err)
		}
	}
}

func TestFromOutput(t *testing.T) {
	for _, c := range []struct {
		out  string
		want Version
	}{
		{"containerd github.com/containerd/containerd/v2 v2.2.1 dea7da592f5d1d2b7755e3a161be07f43fad8f75\n", Version{Major: 2, Minor: 2, Patch: 1}},
		{"containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da\n", Version{Major: 1, Minor: 7, Patch: 27}},
		{"containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1\n", Version{Major: 1, Minor: 6, Patch: 20}},
		{"containerd github.com/containerd/containerd/v2 2.4.2+unknown \n", Version{Major: 2, Minor: 4, Patch: 2}},
	} {
		got, err := FromOutput(c.out)
		if err != nil || got != c.want {
			t.Errorf("FromOutput(%q) = %+v, %v; want %+v", c.out, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "containerd", "containerd x", "docker version 2.2.2 x", "containerd x 2 y", "containerd x 2.1 y",
		"time=… level=fatal msg=\"containerd: 2.2.2\"", "\ncontainerd x 2.2.2 y"} {
		if v, err := FromOutput(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("FromOutput(%q) = %+v, %v; want ErrSyntax", bad, v, err)
		}
	}
}

// The decision table at every boundary of the fixed ranges.
func TestCheck(t *testing.T) {
	for _, c := range []struct {
		in      string
		err     error
		upgrade string
	}{
		{"2.0.0", ErrNoDecrypt, "2.1.7 or later"},
		{"2.0.7", ErrNoDecrypt, "2.1.7 or later"},
		{"v2.0.99", ErrNoDecrypt, "2.1.7 or later"},
		{"2.1.0", ErrNoDecrypt, "2.1.7"},
		{"2.1.6", ErrNoDecrypt, "2.1.7"},
		{"2.1.6-1ubuntu1", ErrNoDecrypt, "2.1.7"},
		{"2.1.7-rc.1", ErrNoDecrypt, "2.1.7"},
		{"2.1.7", nil, ""},
		{"2.1.8", nil, ""},
		{"2.2.0", ErrNoDecrypt, "2.2.2"},
		{"2.2.1", ErrNoDecrypt, "2.2.2"},
		{"2.2.1-1ubuntu1", ErrNoDecrypt, "2.2.2"},
		{"2.2.2", nil, ""},
		{"2.2.2+unknown", nil, ""},
		{"2.2.3-rc.0", nil, ""},
		{"2.3.0-beta.0", ErrNoDecrypt, "2.3.0"},
		{"2.3.0", nil, ""},
		{"2.4.2", nil, ""},
		{"2.4.2+unknown", nil, ""},
		{"2.10.0", nil, ""},
		{"2", nil, ""},
		{"1", nil, ""},
		{"1.6.0", nil, ""},
		{"1.6.20~ds1", nil, ""},
		{"1.7.27", nil, ""},
		{"1.7.24~ds1-1", nil, ""},
		{"1.5.18", ErrUnsupported, "1.7 or 2.2.2"},
		{"0.2.3", ErrUnsupported, ""},
		{"3", ErrUnsupported, ""},
		{"3.0.0", ErrUnsupported, ""},
	} {
		v, err := Parse(c.in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.in, err)
		}
		d := Check(v)
		if !errors.Is(d.Err, c.err) || (c.err == nil) != (d.Err == nil) || d.Upgrade != c.upgrade {
			t.Errorf("Check(%s) = %v, upgrade %q; want %v, %q", c.in, d.Err, d.Upgrade, c.err, c.upgrade)
		}
	}
}

// FuzzParse: no input panics, a parsed release prints back to one that
// parses the same, and Check always decides.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"2", "2.2.1", "v2.1.6", "1.7.24~ds1-1", "2.2.1-1ubuntu1", "2.4.2+unknown", "2.1.7-rc.1", "x", "2.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Parse(s)
		// The same release inside "containerd --version" output reads the same.
		if w, err2 := FromOutput("containerd github.com/containerd/containerd/v2 " + s + " 0123abc\n"); err == nil && !v.MajorOnly && (err2 != nil || w != v) {
			t.Fatalf("FromOutput of %q = %+v, %v; Parse gave %+v", s, w, err2, v)
		}
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q): %v is not ErrSyntax", s, err)
			}
			return
		}
		if v.Major < 0 || v.Minor < 0 || v.Patch < 0 || v.Major > 9999 || v.Minor > 9999 || v.Patch > 9999 {
			t.Fatalf("Parse(%q) = %+v: out of range", s, v)
		}
		d := Check(v)
		if d.Err != nil && !errors.Is(d.Err, ErrNoDecrypt) && !errors.Is(d.Err, ErrUnsupported) {
			t.Fatalf("Check(%+v): %v", v, d.Err)
		}
		if errors.Is(d.Err, ErrNoDecrypt) && d.Upgrade == "" {
			t.Fatalf("Check(%+v): refused with no release to upgrade to", v)
		}
		if !v.MajorOnly && !v.Pre {
			w, err := Parse(v.String())
			if err != nil || w != v {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v", v.String(), w, err, v)
			}
		}
	})
}
