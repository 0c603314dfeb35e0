package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/ocikp/ocikp/internal/hint"
)

// ErrUntrusted marks a file or directory refused for its owner, mode or
// type (a link).
var ErrUntrusted = errors.New("untrusted file")

type untrusted struct{ msg string }

func (e *untrusted) Error() string { return e.msg }
func (e *untrusted) Unwrap() error { return ErrUntrusted }

func untrustedf(format string, args ...any) error {
	return &untrusted{fmt.Sprintf(format, args...)}
}

// Kind says what a file holds, which decides the modes allowed.
type Kind int

const (
	// Private is a file with a private key: no access for group or others.
	Private Kind = iota
	// Record is a public record (a Keychain reference, a cached KMS public
	// key): readable by anyone, writable by its owner only.
	Record
)

// Read opens path as Open does, checks it for kind, and returns at most
// max bytes (a larger file is an error).
func Read(path string, kind Kind, max int64) ([]byte, error) {
	if max < 0 || max > maxLimit {
		return nil, fmt.Errorf("%s: read limit %d out of range", path, max)
	}
	return read(path, kind, max)
}

// maxLimit bounds the limit a caller may give (key files and records are
// kilobytes): max+1 bytes must fit in an int anywhere.
const maxLimit = 1 << 30

// readFile is Read through an *os.File.
func readFile(path string, kind Kind, max int64) ([]byte, error) {
	f, fi, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := Check(path, fi, kind); err != nil {
		return nil, err
	}
	if fi.Size() > max {
		return nil, tooLarge(path, fi.Size(), max)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: too large (at most %d bytes)", path, max)
	}
	return data, nil
}

// Open opens a regular file for reading without following a symbolic link
// in its last component and without blocking, and returns the descriptor's
// own fstat.
func Open(path string) (*os.File, fs.FileInfo, error) {
	f, err := openNoFollow(path)
	if err != nil {
		if isSymlinkErr(err) {
			return nil, nil, errLink(path)
		}
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, notRegular(path, fi.Mode())
	}
	return f, fi, nil
}

func errLink(path string) error {
	return hint.Wrap(untrustedf("%s: a symbolic link, which ocikp does not follow to key material", path),
		"put the file itself there (cp --dereference, or ocikp import) instead of a link")
}

func notRegular(path string, m fs.FileMode) error {
	return fmt.Errorf("%s: not a regular file (%s)", path, describe(m))
}

func tooLarge(path string, size, max int64) error {
	return fmt.Errorf("%s: too large (%d bytes, at most %d)", path, size, max)
}

func describe(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}

// Check decides whether a file ocikp is about to read keys from can be
// trusted: owned by this user or root, and not writable (Private: not
// accessible at all) by group or others.
func Check(path string, fi fs.FileInfo, kind Kind) error {
	if err := checkOwner(path, fi); err != nil {
		return err
	}
	return checkPerm(path, fi.Mode().Perm(), kind)
}

func checkPerm(path string, perm fs.FileMode, kind Kind) error {
	switch {
	case kind == Private && perm&0o077 != 0:
		return hint.Wrap(untrustedf("%s: private key file is accessible to group or others (mode %04o); refusing to use it", path, perm),
			"restrict it with: chmod 600 "+path)
	case perm&0o022 != 0:
		return hint.Wrap(untrustedf("%s: writable by group or others (mode %04o); refusing to use it", path, perm),
			"restrict it with: chmod go-w "+path)
	}
	return nil
}

// CheckDir decides whether a keystore directory (or its kms/ and keychain/
// record directories) can be trusted: a directory, owned by this user or
// root, not writable by group or others. A missing directory is reported
// as fs.ErrNotExist.
func CheckDir(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory", path)
	}
	if err := checkOwner(path, fi); err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return hint.Wrap(untrustedf("%s: directory writable by group or others (mode %04o), who could plant keys in it; refusing to use it", path, perm),
			"restrict it with: chmod 700 "+path)
	}
	return nil
}

func checkOwner(path string, fi fs.FileInfo) error {
	uid, ok := owner(fi)
	if !ok {
		return nil
	}
	return checkUID(path, uid)
}

// euid is read once: ocikp never changes its user, and each geteuid is a
// system call in a process that may read a dozen files per layer. (A
// sync.Once, not sync.OnceValue: a package-level call runs at every
// process start.)
var (
	euidOnce sync.Once
	euidVal  int
)

func euid() int {
	euidOnce.Do(func() { euidVal = os.Geteuid() })
	return euidVal
}

func checkUID(path string, uid int) error {
	if me := euid(); uid != me && uid != 0 {
		return hint.Wrap(untrustedf("%s: owned by user %d, not by this user (%d) or root; refusing to use it", path, uid, me),
			fmt.Sprintf("if it is yours, take it with: chown %d %s", me, path))
	}
	return nil
}
