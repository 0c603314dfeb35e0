package pkcs11

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/safefile"
)

// EnvModuleDirs lists further directories (colon-separated, absolute)
// whose PKCS#11 modules ocikp may load, beside DefaultModuleDirs.
const EnvModuleDirs = "OCIKP_PKCS11_MODULE_DIRS"

// DefaultModuleDirs are where distributions install PKCS#11 modules
// (SoftHSM, OpenSC, ykcs11, p11-kit, vendors' HSM clients): system library
// trees writable only by root. A module elsewhere needs its directory in
// $OCIKP_PKCS11_MODULE_DIRS.
var DefaultModuleDirs = []string{"/usr/lib", "/usr/lib64", "/usr/local/lib", "/lib", "/lib64", "/opt"}

// ErrModule says a module cannot be used: missing, not allowed, or not
// loadable.
var ErrModule = errors.New("PKCS#11 module unusable")

// ModuleDirs returns the allowed module directories.
func ModuleDirs() []string {
	dirs := append([]string(nil), DefaultModuleDirs...)
	for _, d := range strings.Split(os.Getenv(EnvModuleDirs), ":") {
		if filepath.IsAbs(d) {
			dirs = append(dirs, filepath.Clean(d))
		}
	}
	return dirs
}

// CheckModule resolves the module a URI names and checks that ocikp may
// load it: an absolute module-path, a regular file after symbolic links
// are followed, inside an allowed directory, writable by no one but its
// owner. It returns the resolved path, which is what is loaded.
func CheckModule(u *URI) (string, error) {
	if u.ModulePath == "" {
		return "", hint.Wrap(fmt.Errorf("%w: the URI has no module-path", ErrModule),
			"add ?module-path=/usr/lib/softhsm/libsofthsm2.so (your token's PKCS#11 library) to the URI")
	}
	real, err := filepath.EvalSymlinks(u.ModulePath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", hint.Wrap(fmt.Errorf("%w: %s: no such file", ErrModule, u.ModulePath),
				"install the token's PKCS#11 library or correct module-path (softhsm2: /usr/lib/softhsm/libsofthsm2.so)")
		}
		return "", fmt.Errorf("%w: %s: %v", ErrModule, u.ModulePath, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrModule, u.ModulePath, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%w: %s is not a regular file", ErrModule, u.ModulePath)
	}
	if !allowed(real, ModuleDirs()) {
		return "", hint.Wrap(fmt.Errorf("%w: %s is not in an allowed module directory", ErrModule, real),
			"allowed: "+strings.Join(ModuleDirs(), ", ")+"; add its directory to $"+EnvModuleDirs)
	}
	if err := safefile.Check(real, fi, safefile.Record); err != nil {
		return "", fmt.Errorf("%w: %v", ErrModule, err)
	}
	return real, nil
}

func allowed(path string, dirs []string) bool {
	for _, d := range dirs {
		if d == "/" {
			return true
		}
		if strings.HasPrefix(path, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

// maxPIN bounds a PIN file.
const maxPIN = 1024

// ReadPINSource reads a pin-source file (a file the keystore owner named):
// private to its owner, its content up to a final newline.
func ReadPINSource(path string) ([]byte, error) {
	b, err := safefile.Read(path, safefile.Private, maxPIN)
	if err != nil {
		return nil, fmt.Errorf("pin-source: %w", err)
	}
	if i := strings.IndexAny(string(b), "\r\n"); i >= 0 {
		b = b[:i]
	}
	return b, nil
}
