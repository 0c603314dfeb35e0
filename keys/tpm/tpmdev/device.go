package tpmdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ocikp/ocikp/keys/tpm"
)

// locks serialises this process's use of one device: swtpm's socket
// serves one connection at a time, and a TPM has few object slots.
var locks sync.Map // path -> *sync.Mutex

// device is an open TPM.
type device struct {
	transport.TPM
	path   string
	close  func() error
	unlock func()
}

func (d *device) Close() error {
	err := d.close()
	d.unlock()
	return err
}

// open opens the TPM at path: a character device is opened as a file, a
// unix socket is dialled; anything else is refused.
func open(path string) (*device, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, noDevice(path, err)
	}
	mu, _ := locks.LoadOrStore(path, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	unlock := mu.(*sync.Mutex).Unlock
	switch {
	case fi.Mode()&fs.ModeCharDevice != 0:
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			unlock()
			return nil, noDevice(path, err)
		}
		return &device{TPM: transport.FromReadWriter(marked{f}), path: path, close: f.Close, unlock: unlock}, nil
	case fi.Mode()&fs.ModeSocket != 0:
		c, err := net.Dial("unix", path)
		if err != nil {
			unlock()
			return nil, noDevice(path, err)
		}
		return &device{TPM: transport.FromReadWriter(marked{&framed{c: c}}), path: path, close: c.Close, unlock: unlock}, nil
	}
	unlock()
	return nil, noDevice(path, errors.New("not a character device or a unix socket"))
}

func noDevice(path string, err error) error {
	return fmt.Errorf("%w: %s: %w", tpm.ErrNoDevice, path, unwrapPath(err))
}

// unwrapPath drops the path an *fs.PathError repeats.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// commandTimeout bounds one command on a socket: a wedged simulator must
// not hold an unwrap (and its caller, which has no time-out) forever.
const commandTimeout = 30 * time.Second

// framed reads whole TPM responses from a stream socket: go-tpm reads a
// response with one Read, which a stream may split.
type framed struct {
	c    net.Conn
	rest []byte
}

func (f *framed) Write(p []byte) (int, error) {
	f.c.SetDeadline(time.Now().Add(commandTimeout)) //nolint:errcheck // unix sockets support deadlines
	return f.c.Write(p)
}

func (f *framed) Read(p []byte) (int, error) {
	if len(f.rest) == 0 {
		// tag (2 bytes), size (4 bytes, the whole response), …
		var hdr [6]byte
		if _, err := io.ReadFull(f.c, hdr[:]); err != nil {
			return 0, fmt.Errorf("reading the TPM's response: %w", err)
		}
		size := binary.BigEndian.Uint32(hdr[2:])
		if size < 10 || size > maxResponse {
			return 0, fmt.Errorf("the TPM's response claims %d bytes", size)
		}
		f.rest = make([]byte, size)
		copy(f.rest, hdr[:])
		if _, err := io.ReadFull(f.c, f.rest[6:]); err != nil {
			return 0, fmt.Errorf("reading the TPM's response: %w", err)
		}
	}
	n := copy(p, f.rest)
	f.rest = f.rest[n:]
	return n, nil
}

// maxResponse is go-tpm's response buffer (tpmutil's maxTPMResponse).
const maxResponse = 4096

// ioError is a failure to talk to the device (not the TPM's answer): the
// connection, and what was made through it, is no longer good.
type ioError struct{ err error }

func (e *ioError) Error() string { return e.err.Error() }
func (e *ioError) Unwrap() error { return e.err }

// marked marks the device's I/O errors as such.
type marked struct{ rw io.ReadWriter }

func (m marked) Read(p []byte) (int, error) {
	n, err := m.rw.Read(p)
	if err != nil {
		err = &ioError{err}
	}
	return n, err
}

func (m marked) Write(p []byte) (int, error) {
	n, err := m.rw.Write(p)
	if err != nil {
		err = &ioError{err}
	}
	return n, err
}
