//go:build unix

package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

const openFlags = os.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_CLOEXEC

func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, openFlags, 0)
}

// read is Read on a bare descriptor: with O_NONBLOCK, an *os.File would
// register each file with the runtime's poller (which the first file
// starts), and io.ReadAll would read a 4 KB key file in seven steps; an
// exec provider reads every key file of its keystore once per layer. The
// checks and errors are readFile's.
func read(path string, kind Kind, limit int64) ([]byte, error) {
	var fd int
	var err error
	for {
		if fd, err = syscall.Open(path, openFlags, 0); err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		if isSymlinkErr(err) {
			return nil, errLink(path)
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	for {
		if err = syscall.Fstat(fd, &st); err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if typ := uint32(st.Mode) & syscall.S_IFMT; typ != syscall.S_IFREG {
		return nil, notRegular(path, fileType(typ))
	}
	if err := checkUID(path, int(st.Uid)); err != nil {
		return nil, err
	}
	if err := checkPerm(path, fs.FileMode(st.Mode&0o777), kind); err != nil {
		return nil, err
	}
	if st.Size > limit {
		return nil, tooLarge(path, st.Size, limit)
	}
	// Room for the size fstat gave and one byte more, to see the end in
	// two reads; a file that grew since is read to limit+1 bytes at most,
	// and refused.
	data := make([]byte, 0, min(max(st.Size+1, 512), limit+1))
	for {
		if len(data) == cap(data) {
			if int64(len(data)) > limit {
				return nil, fmt.Errorf("%s: too large (at most %d bytes)", path, limit)
			}
			data = append(make([]byte, 0, min(2*int64(cap(data)), limit+1)), data...)
		}
		n, err := syscall.Read(fd, data[len(data):cap(data)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, &fs.PathError{Op: "read", Path: path, Err: err})
		}
		if n == 0 {
			return data, nil
		}
		data = data[:len(data)+n]
	}
}

// fileType is the fs.FileMode type of a stat(2) file type, for errors.
func fileType(typ uint32) fs.FileMode {
	switch typ {
	case syscall.S_IFDIR:
		return fs.ModeDir
	case syscall.S_IFIFO:
		return fs.ModeNamedPipe
	case syscall.S_IFSOCK:
		return fs.ModeSocket
	case syscall.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFBLK:
		return fs.ModeDevice
	}
	return fs.ModeIrregular
}

// isSymlinkErr: open(2) with O_NOFOLLOW fails with ELOOP on a link (and,
// on some BSDs, EMLINK).
func isSymlinkErr(err error) bool {
	return errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.EMLINK)
}

func owner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
