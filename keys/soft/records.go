package soft

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/safefile"
)

// DecodeRecord reads data, one record, into v strictly: at most limit
// bytes, no unknown fields, nothing after the object; what names the
// record in errors. Records are written by ocikp, so anything else is a
// damaged or foreign file.
func DecodeRecord(data []byte, limit int, what string, v any) error {
	if len(data) > limit {
		return fmt.Errorf("%s: %d bytes, at most %d", what, len(data), limit)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		return fmt.Errorf("%s: not a JSON object of the documented fields", what)
	}
	return nil
}

// RecordDir is a keystore directory of records of one kind (Keychain
// references, TPM and PKCS#11 keys): DIR/NAME.json, written once and
// never replaced, listed by name. Each kind parses its own records.
type RecordDir string

// Path is the file of a record.
func (d RecordDir) Path(name string) string { return filepath.Join(string(d), name+".json") }

// Has reports whether a record of that name exists.
func (d RecordDir) Has(name string) bool {
	if !ValidName(name) {
		return false
	}
	_, err := os.Stat(d.Path(name))
	return err == nil
}

// PutNew writes a new record (0600, atomic); it never replaces one.
func (d RecordDir) PutNew(name string, data []byte) error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return err
	}
	if err := safefile.CheckDir(string(d)); err != nil {
		return err
	}
	if err := WriteNew(d.Path(name), data); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return hint.Wrap(fmt.Errorf("key %q already exists in %s", name, string(d)), "choose another name")
		}
		return err
	}
	return nil
}

// Remove deletes a record.
func (d RecordDir) Remove(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("invalid key name %.70q", name)
	}
	return os.Remove(d.Path(name))
}

// Names lists the records' names, sorted; no directory means none.
func (d RecordDir) Names() ([]string, error) {
	if err := safefile.CheckDir(string(d)); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	des, err := os.ReadDir(string(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, de := range des {
		if name, ok := strings.CutSuffix(de.Name(), ".json"); ok && ValidName(name) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Stamp is the directory's modification time (zero if absent), for caches.
func (d RecordDir) Stamp() time.Time {
	if fi, err := os.Stat(string(d)); err == nil {
		return fi.ModTime()
	}
	return time.Time{}
}
