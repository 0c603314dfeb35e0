//go:build !unix

package safefile

import (
	"io/fs"
	"os"
)

// Elsewhere than Unix there is no O_NOFOLLOW and no owner in a FileInfo:
// links are refused by an Lstat first (racy, unlike the Unix open), and
// ownership is not checked.
func openNoFollow(path string) (*os.File, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return nil, errSymlink
	}
	return os.Open(path)
}

type symlinkError struct{}

func (symlinkError) Error() string { return "symbolic link" }

var errSymlink error = symlinkError{}

func isSymlinkErr(err error) bool { return err == errSymlink }

func owner(fs.FileInfo) (int, bool) { return 0, false }

func read(path string, kind Kind, max int64) ([]byte, error) { return readFile(path, kind, max) }
