// Package ctdversion decides from containerd's release whether its CRI can
// decrypt image layers at all. containerd 2.0 commented out the CRI local
// pull's decryption options ("Temporarily removed for v2 upgrade");
// containerd PR #12705 (merged 2025-12-19, backported as #12712) restored
// them, first released in 2.1.7, 2.2.2 and 2.3.0. On the releases between,
// no configuration makes a Kubernetes pull decrypt, so writing one is a trap.
package ctdversion

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Version is a containerd release as "containerd --version" or a user
// names it. MajorOnly is "1" or "2" alone: the release line, not checked.
type Version struct {
	Major, Minor, Patch int
	Pre                 bool // a pre-release (rc, beta, alpha) of Major.Minor.Patch
	MajorOnly           bool
}

func (v Version) String() string {
	if v.MajorOnly {
		return strconv.Itoa(v.Major) + ".x"
	}
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Pre {
		s += " (pre-release)"
	}
	return s
}

// Sentinel errors, for callers' decisions.
var (
	ErrSyntax      = errors.New("not a containerd release")
	ErrUnsupported = errors.New("not a containerd release ocikp writes configuration for")
	ErrNoDecrypt   = errors.New("cannot decrypt through the CRI")
)

// maxLen bounds what is parsed: a release is short; anything longer is not one.
const maxLen = 64

// Parse reads "2", "1", "2.2.1", "v2.1.6", "1.7.27", and distribution or
// build suffixes: "2.2.1-1ubuntu1", "1.7.24~ds1-1", "2.4.2+unknown",
// "1.7.27-k3s1". "-rc.1", "~rc1", "-beta.0" and "-alpha" mark a
// pre-release. "2.1" is refused: its patch release decides.
func Parse(s string) (Version, error) {
	if len(s) > maxLen {
		return Version{}, fmt.Errorf("%w: longer than %d bytes", ErrSyntax, maxLen)
	}
	s = strings.TrimPrefix(s, "v")
	end := strings.IndexAny(s, "-~+")
	core, suffix := s, ""
	if end >= 0 {
		core, suffix = s[:end], s[end:]
	}
	parts := strings.Split(core, ".")
	nums := make([]int, len(parts))
	for i, p := range parts {
		n, ok := number(p)
		if !ok {
			return Version{}, ErrSyntax
		}
		nums[i] = n
	}
	switch {
	case len(nums) == 1 && suffix == "":
		return Version{Major: nums[0], MajorOnly: true}, nil
	case len(nums) != 3:
		return Version{}, fmt.Errorf("%w: give major.minor.patch", ErrSyntax)
	}
	for _, r := range suffix {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-~+_", r)) {
			return Version{}, ErrSyntax
		}
	}
	return Version{Major: nums[0], Minor: nums[1], Patch: nums[2], Pre: prerelease(suffix)}, nil
}

// number is a decimal of at most 4 digits without a sign or leading zero.
func number(p string) (int, bool) {
	if p == "" || len(p) > 4 || (len(p) > 1 && p[0] == '0') {
		return 0, false
	}
	for _, r := range p {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(p)
	return n, err == nil
}

// prerelease: SemVer's "-rc.1" and Debian's "~rc1" precede the release;
// "+build", "~ds1" (a repack) and "-1ubuntu1" (a package revision) follow it.
func prerelease(suffix string) bool {
	if suffix == "" || suffix[0] == '+' {
		return false
	}
	l := strings.ToLower(suffix[1:])
	return strings.HasPrefix(l, "rc") || strings.HasPrefix(l, "beta") || strings.HasPrefix(l, "alpha")
}

// FromOutput reads the release from "containerd --version" output, whose
// first line is "containerd PACKAGE VERSION REVISION":
//
//	containerd github.com/containerd/containerd/v2 v2.2.1 dea7da5…
//	containerd containerd.io 1.7.27 05044ec0…
//	containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1
func FromOutput(out string) (Version, error) {
	line, _, _ := strings.Cut(out, "\n")
	f := strings.Fields(line)
	if len(f) < 3 || f[0] != "containerd" {
		return Version{}, fmt.Errorf("%w: not containerd --version output", ErrSyntax)
	}
	v, err := Parse(f[2])
	if err == nil && v.MajorOnly {
		return Version{}, fmt.Errorf("%w: no minor and patch release", ErrSyntax)
	}
	return v, err
}

// Decision is what Check found: for a refused release, why and the release
// to upgrade to.
type Decision struct {
	Err     error  // nil: the CRI decrypts (or MajorOnly: not checked)
	Upgrade string // for ErrNoDecrypt: the first fixed release of the line
}

// Why is the upstream change, for a hint.
const Why = "containerd 2.0 removed the CRI's decryption call (local pull); PR #12705 restored it in 2.1.7, 2.2.2 and 2.3.0"

// Check decides whether v's CRI decrypts image layers.
func Check(v Version) Decision {
	switch v.Major {
	case 1:
		if !v.MajorOnly && v.Minor < 6 {
			return Decision{Err: fmt.Errorf("containerd %s: %w (1.6 and 1.7)", v, ErrUnsupported), Upgrade: "1.7 or 2.2.2"}
		}
		return Decision{}
	case 2:
	default:
		return Decision{Err: fmt.Errorf("containerd %s: %w (1.6, 1.7, 2.x)", v, ErrUnsupported)}
	}
	if v.MajorOnly {
		return Decision{}
	}
	// first is the first release of v's minor line with the fix ("" when
	// the line has none: 2.0 was never patched).
	var first Version
	switch v.Minor {
	case 0:
		return Decision{Err: fmt.Errorf("containerd %s: %w", v, ErrNoDecrypt), Upgrade: "2.1.7 or later"}
	case 1:
		first = Version{Major: 2, Minor: 1, Patch: 7}
	case 2:
		first = Version{Major: 2, Minor: 2, Patch: 2}
	default:
		first = Version{Major: 2, Minor: 3, Patch: 0}
		if v.Minor > 3 {
			return Decision{}
		}
	}
	if v.Patch > first.Patch || v.Patch == first.Patch && !v.Pre {
		return Decision{}
	}
	return Decision{Err: fmt.Errorf("containerd %s: %w", v, ErrNoDecrypt), Upgrade: fmt.Sprintf("%d.%d.%d", first.Major, first.Minor, first.Patch)}
}
