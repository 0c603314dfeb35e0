package soft

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/safefile"
)

// EnvKeystore names the environment variable that overrides the keystore directory.
const EnvKeystore = "OCIKP_KEYSTORE"

const keyExt = ".key"

// ErrNotFound is returned for a key name that the store does not hold.
var ErrNotFound = errors.New("no such key")

// ErrExists is returned when creating a key whose name is taken.
var ErrExists = errors.New("a key with that name already exists")

// DefaultDir resolves the keystore directory: flag, then $OCIKP_KEYSTORE,
// then $XDG_DATA_HOME/ocikp/keys, then ~/.local/share/ocikp/keys.
func DefaultDir(flag string) (string, error) {
	if flag != "" {
		return filepath.Abs(flag)
	}
	if d := os.Getenv(EnvKeystore); d != "" {
		return filepath.Abs(d)
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "ocikp", "keys"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", hint.Wrap(errors.New("cannot find a keystore: no home directory"),
			"set OCIKP_KEYSTORE or pass --keystore DIR")
	}
	return filepath.Join(home, ".local", "share", "ocikp", "keys"), nil
}

// Store is a keystore directory.
type Store struct {
	Dir string
}

// ValidName reports whether name can name a key: 1 to 64 characters of
// letters, digits, '.', '_' and '-', not starting with '.' or '-'.
func ValidName(name string) bool {
	if name == "" || len(name) > 64 || name[0] == '.' || name[0] == '-' {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// NameRule says what ValidName accepts, for messages.
const NameRule = "key names are 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"

func errName(name string) error {
	return hint.Wrap(fmt.Errorf("invalid key name %.70q", name),
		NameRule)
}

func (s *Store) path(name string) string { return filepath.Join(s.Dir, name+keyExt) }

// Create stores a new key; it never overwrites an existing one.
func (s *Store) Create(name string, priv *ecdh.PrivateKey, passphrase []byte) (*KeyFile, error) {
	if !ValidName(name) {
		return nil, errName(name)
	}
	k, err := NewKeyFile(name, priv, passphrase)
	if err != nil {
		return nil, err
	}
	data, err := k.Marshal()
	if err != nil {
		return nil, err
	}
	if err := s.write(name, data); err != nil {
		return nil, err
	}
	return k, nil
}

// Put stores an existing key file under name (its own protection kept);
// like Create, it never overwrites a key.
func (s *Store) Put(name string, k *KeyFile) error {
	if !ValidName(name) {
		return errName(name)
	}
	c := *k
	c.Name = name
	data, err := c.Marshal()
	if err != nil {
		return err
	}
	return s.write(name, data)
}

// write stores a new key file's bytes, creating the keystore if needed.
func (s *Store) write(name string, data []byte) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("creating keystore: %w", err)
	}
	if err := s.CheckDir(); err != nil {
		return err
	}
	if err := WriteNew(s.path(name), data); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return hint.Wrap(fmt.Errorf("key %q: %w in %s", name, ErrExists, s.Dir),
				"choose another name, or remove the old key with: ocikp delete "+name)
		}
		return err
	}
	return nil
}

// WriteNew writes data to path atomically and without replacing an existing
// file: a temporary file is written and synced, then hard-linked to path (so
// that of two concurrent creates exactly one wins).
func WriteNew(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("writing key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) && errors.Is(le.Err, fs.ErrExist) {
			return fs.ErrExist
		}
		// A filesystem without hard links: rename after checking, which
		// is atomic for readers but not against a concurrent create.
		if _, serr := os.Lstat(path); serr == nil {
			return fs.ErrExist
		}
		if rerr := os.Rename(tmp.Name(), path); rerr != nil {
			return fmt.Errorf("writing key: %w", rerr)
		}
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Get reads one key.
func (s *Store) Get(name string) (*KeyFile, error) {
	if !ValidName(name) {
		return nil, errName(name)
	}
	if err := s.CheckDir(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	k, err := ReadKeyFile(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, hint.Wrap(fmt.Errorf("key %q: %w in keystore %s", name, ErrNotFound, s.Dir),
			"list keys with: ocikp list")
	}
	return k, err
}

// ReadKeyFile reads a key file, refusing one that others can read or write.
func ReadKeyFile(path string) (*KeyFile, error) {
	data, err := readPrivate(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// readPrivate reads a file that holds a private key (see safefile: no
// links, no FIFOs or devices, owner and mode checked, size bounded).
func readPrivate(path string) ([]byte, error) {
	return safefile.Read(path, safefile.Private, MaxKeyFileSize)
}

// CheckDir refuses a keystore directory that is not this user's or root's,
// or that others can write; a missing one is fs.ErrNotExist.
func (s *Store) CheckDir() error { return safefile.CheckDir(s.Dir) }

// ReadKey reads a private key given by path: an ocikp key file (of any
// type), or a PEM P-256 key (PKCS#8 or SEC1), held in memory as an
// unprotected key file named after the file.
func ReadKey(path string) (*KeyFile, error) {
	data, err := readPrivate(path)
	if err != nil {
		return nil, err
	}
	if strings.Contains(string(data), "-----BEGIN") {
		priv, err := ParsePEMPrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return NewKeyFile(strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), priv, nil)
	}
	k, err := ParseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// Entry is one listed key, or the error that kept it from being read.
type Entry struct {
	Name string
	Key  *KeyFile
	Err  error
}

// List returns every key in the store, by name. A missing store is empty.
func (s *Store) List() ([]Entry, error) {
	out, _, err := s.ListOthers()
	return out, err
}

// ListOthers is List that also counts the directory's other entries (the
// records of other key kinds, caches, anything else), from the same read
// of the directory.
func (s *Store) ListOthers() (keys []Entry, others int, err error) {
	if err := s.CheckDir(); errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	} else if err != nil {
		return nil, 0, err
	}
	des, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading keystore: %w", err)
	}
	var out []Entry
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), keyExt)
		if !ok || !ValidName(name) {
			others++
			continue
		}
		k, err := ReadKeyFile(s.path(name))
		if err == nil && k.Name != name {
			err = fmt.Errorf("%s: names key %q", s.path(name), k.Name)
		}
		out = append(out, Entry{Name: name, Key: k, Err: err})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, others, nil
}

// Delete removes a key.
func (s *Store) Delete(name string) error {
	if !ValidName(name) {
		return errName(name)
	}
	// A key that cannot be read (bad mode, corrupt) can still be deleted.
	if _, err := s.Get(name); errors.Is(err, ErrNotFound) {
		return err
	}
	if err := os.Remove(s.path(name)); err != nil {
		return fmt.Errorf("deleting key: %w", err)
	}
	return nil
}
