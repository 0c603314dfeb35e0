package buildver

import (
	"runtime/debug"
	"testing"
)

func TestFrom(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "95d7ebf0123456789abcdef0123456789abcdef0"
	for _, c := range []struct {
		version  string
		settings []debug.BuildSetting
		want     string
	}{
		// Built from a tag: the module version.
		{"v1.2.3", vcs(rev, "false"), "ocikp v1.2.3"},
		{"v1.2.3", nil, "ocikp v1.2.3"}, // go install …@v1.2.3
		{"v2.0.0-rc.1", nil, "ocikp v2.0.0-rc.1"},
		// Between tags (go 1.24+ stamps a pseudo-version): the commit.
		{"v0.0.0-20261205032840-95d7ebf01234", vcs(rev, "false"), "ocikp commit 95d7ebf01234 (development build)"},
		{"v0.0.0-20261205032840-95d7ebf01234+dirty", vcs(rev, "true"), "ocikp commit 95d7ebf01234 with uncommitted changes (development build)"},
		{"v1.2.4-0.20261205032840-95d7ebf01234", vcs(rev, "false"), "ocikp commit 95d7ebf01234 (development build)"},
		{"v1.3.0-rc.1.0.20261205032840-95d7ebf01234", nil, "ocikp commit 95d7ebf01234 (development build)"},
		{"v1.2.3+dirty", vcs(rev, "true"), "ocikp commit 95d7ebf01234 with uncommitted changes (development build)"},
		{"(devel)", vcs(rev, "true"), "ocikp commit 95d7ebf01234 with uncommitted changes (development build)"},
		// go install MOD@COMMIT: no VCS settings, the pseudo-version's commit.
		{"v0.0.0-20261205032840-95d7ebf01234", nil, "ocikp commit 95d7ebf01234 (development build)"},
		{"(devel)", nil, "ocikp (development build, commit unknown)"},
	} {
		bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/ocikp/ocikp", Version: c.version}, Settings: c.settings}
		if got := From(bi); got != c.want {
			t.Errorf("%s %v:\n got %q\nwant %q", c.version, c.settings, got, c.want)
		}
	}
	if got := From(nil); got != "ocikp (unknown version)" {
		t.Errorf("no build info: %q", got)
	}
}
