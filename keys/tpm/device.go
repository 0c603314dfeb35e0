package tpm

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ocikp/ocikp/internal/hint"
)

// DefaultPath is the kernel's resource-managed TPM device.
const DefaultPath = "/dev/tpmrm0"

// EnvTPM names the environment variable that selects the TPM device.
const EnvTPM = "OCIKP_TPM"

// ErrNoDevice says that the TPM device cannot be opened.
var ErrNoDevice = errors.New("TPM device not available")

// Path resolves the device to use: flag, then $OCIKP_TPM, then the
// recorded path (a key's), then DefaultPath.
func Path(flag, recorded string) string {
	switch {
	case flag != "":
		return flag
	case os.Getenv(EnvTPM) != "":
		return os.Getenv(EnvTPM)
	case recorded != "":
		return recorded
	}
	return DefaultPath
}

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
		return &device{TPM: transport.FromReadWriter(f), path: path, close: f.Close, unlock: unlock}, nil
	case fi.Mode()&fs.ModeSocket != 0:
		c, err := net.Dial("unix", path)
		if err != nil {
			unlock()
			return nil, noDevice(path, err)
		}
		return &device{TPM: transport.FromReadWriter(c), path: path, close: c.Close, unlock: unlock}, nil
	}
	unlock()
	return nil, noDevice(path, errors.New("not a character device or a unix socket"))
}

func noDevice(path string, err error) error {
	return hint.Wrap(fmt.Errorf("%w: %s: %w", ErrNoDevice, path, unwrapPath(err)),
		"pass --tpm PATH or set "+EnvTPM+" to the TPM device (/dev/tpmrm0) or a swtpm socket; the user needs read-write access to it (group tss)")
}

// unwrapPath drops the path an *fs.PathError repeats.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
