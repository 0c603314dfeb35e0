// Package buildver names the build a binary comes from, as "ocikp
// version" prints it. ocikp-unwrap prints the same for itself, so that
// "ocikp doctor" can tell an ocikp-unwrap from another build than the
// ocikp beside it (its answers must be that ocikp's).
package buildver

import (
	"runtime/debug"
	"strings"
)

// Current is From of the running binary's build.
func Current() string {
	bi, _ := debug.ReadBuildInfo()
	return From(bi)
}

// From is what "ocikp version" prints: the module version of a
// build from a release tag (go install …@v1.2.3, or go build in a clean
// checkout of the tag); otherwise the commit it was built from, since a
// pseudo-version (v0.0.0-20261205…-abcdef) or "(devel)" names no release.
func From(bi *debug.BuildInfo) string {
	if bi == nil {
		return "ocikp (unknown version)"
	}
	v := bi.Main.Version
	if isRelease(v) {
		return "ocikp " + v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		// go install MOD@COMMIT records no VCS settings, but its
		// pseudo-version ends with the commit.
		if i := strings.LastIndexByte(strings.TrimSuffix(v, "+dirty"), '-'); i > 0 && isPseudo(v) {
			rev = strings.TrimSuffix(v, "+dirty")[i+1:]
		}
	}
	if rev == "" {
		return "ocikp (development build, commit unknown)"
	}
	out := "ocikp commit " + rev[:min(len(rev), 12)]
	if modified == "true" || strings.HasSuffix(v, "+dirty") {
		out += " with uncommitted changes"
	}
	return out + " (development build)"
}

// isRelease reports a semantic version from a tag: not "(devel)", not a
// pseudo-version, not a build of a modified tree (+dirty).
func isRelease(v string) bool {
	return strings.HasPrefix(v, "v") && !isPseudo(v) && !strings.Contains(v, "+dirty") && v != "(devel)"
}

// isPseudo reports a Go pseudo-version: its last two dash-separated
// fields are a 14-digit UTC time and a 12-hex-digit commit
// (vX.0.0-yyyymmddhhmmss-abcdefabcdef, vX.Y.Z-pre.0.yyyymmddhhmmss-…,
// vX.Y.(Z+1)-0.yyyymmddhhmmss-…).
func isPseudo(v string) bool {
	v, _, _ = strings.Cut(v, "+")
	i := strings.LastIndexByte(v, '-')
	if i < 0 || len(v)-i-1 != 12 || !allIn(v[i+1:], "0123456789abcdef") {
		return false
	}
	rest := v[:i]
	if len(rest) < 14 {
		return false
	}
	ts := rest[len(rest)-14:]
	sep := byte(0)
	if len(rest) > 14 {
		sep = rest[len(rest)-15]
	}
	return allIn(ts, "0123456789") && (sep == '-' || sep == '.')
}

func allIn(s, set string) bool {
	for _, c := range s {
		if !strings.ContainsRune(set, c) {
			return false
		}
	}
	return s != ""
}
