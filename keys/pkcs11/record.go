package pkcs11

import (
	"bytes"
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/ocikp/ocikp/internal/safefile"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/p256"
)

// maxRecordSize bounds a record file.
const maxRecordSize = 8192

// Record is the keystore's record of a token key (DIR/pkcs11/NAME.json):
// where the key is and its public half, never a PIN.
type Record struct {
	Name      string    `json:"name"`
	Recipient string    `json:"recipient"`
	URI       string    `json:"uri"`
	Created   time.Time `json:"created"`

	compressed []byte
	uri        *URI
}

// NewRecord records a token key: u (its pin-value dropped) and pub.
func NewRecord(name string, u *URI, pub *ecdh.PublicKey) (*Record, error) {
	r := &Record{Name: name, Recipient: p256.Format(pub), URI: u.String(), Created: time.Now().UTC().Truncate(time.Second)}
	data, err := r.Marshal()
	if err != nil {
		return nil, err
	}
	return ParseRecord(data)
}

// ParseRecord reads a record file's contents, strictly.
func ParseRecord(data []byte) (*Record, error) {
	if len(data) > maxRecordSize {
		return nil, fmt.Errorf("PKCS#11 key record: %d bytes, at most %d", len(data), maxRecordSize)
	}
	var w struct {
		V int `json:"v"`
		Record
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil || dec.More() {
		return nil, errors.New("PKCS#11 key record: not a JSON object of the documented fields")
	}
	r := w.Record
	switch {
	case w.V != 1:
		return nil, fmt.Errorf("PKCS#11 key record: version %d, this ocikp reads version 1", w.V)
	case !soft.ValidName(r.Name):
		return nil, errors.New("PKCS#11 key record: invalid key name")
	}
	u, err := Parse(r.URI)
	if err != nil {
		return nil, fmt.Errorf("PKCS#11 key record: %w", err)
	}
	switch {
	case u.PINValue != "":
		return nil, errors.New("PKCS#11 key record: the URI holds a pin-value; ocikp never stores PINs")
	case u.ModulePath == "":
		return nil, errors.New("PKCS#11 key record: the URI has no module-path")
	case u.Object == "" && len(u.ID) == 0:
		return nil, errors.New("PKCS#11 key record: the URI names no key (object= or id=)")
	}
	c, err := p256.ParseCompressed(r.Recipient)
	if err != nil {
		return nil, fmt.Errorf("PKCS#11 key record: %w", err)
	}
	r.compressed, r.uri = c, u
	return &r, nil
}

// Marshal encodes r as stored.
func (r *Record) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(struct {
		V int `json:"v"`
		*Record
	}{1, r}, "", "  ")
	return append(b, '\n'), err
}

// Location is the key's URI (no PIN), for listings.
func (r *Record) Location() string { return r.URI }

// PublicKey returns the key's public key.
func (r *Record) PublicKey() (*ecdh.PublicKey, error) { return p256.ParsePoint(r.compressed) }

// Records is a keystore's directory of PKCS#11 key records (DIR/pkcs11).
type Records struct{ Dir string }

// RecordsIn returns the PKCS#11 key records of the keystore at dir.
func RecordsIn(keystore string) *Records {
	return &Records{Dir: filepath.Join(keystore, "pkcs11")}
}

func (rs *Records) path(name string) string { return soft.RecordDir(rs.Dir).Path(name) }

// Get reads one record; an error wrapping backend.ErrNoStoredKey if there
// is none of that name.
func (rs *Records) Get(name string) (*Record, error) {
	if !soft.ValidName(name) {
		return nil, fmt.Errorf("invalid key name %.70q", name)
	}
	if err := safefile.CheckDir(rs.Dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	// The URI names the module ocikp loads: a record others could write
	// would choose the code ocikp runs, hence Record's owner-only writes.
	data, err := safefile.Read(rs.path(name), safefile.Record, maxRecordSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("key %q: %w", name, errNoKey)
	}
	if err != nil {
		return nil, err
	}
	r, err := ParseRecord(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rs.path(name), err)
	}
	if r.Name != name {
		return nil, fmt.Errorf("%s: names key %q", rs.path(name), r.Name)
	}
	return r, nil
}

// Has reports whether a record of that name exists.
func (rs *Records) Has(name string) bool { return soft.RecordDir(rs.Dir).Has(name) }

// Put records a new key; it never replaces one.
func (rs *Records) Put(r *Record) error {
	data, err := r.Marshal()
	if err != nil {
		return err
	}
	return soft.RecordDir(rs.Dir).PutNew(r.Name, data)
}

// Remove deletes a record; the key stays on the token.
func (rs *Records) Remove(name string) error { return soft.RecordDir(rs.Dir).Remove(name) }

// Entry is one listed record, or why it could not be read.
type Entry struct {
	Name   string
	Record *Record
	Err    error
}

// List returns every record, by name. No directory means none.
func (rs *Records) List() []Entry {
	names, err := soft.RecordDir(rs.Dir).Names()
	if err != nil {
		// Reported like an unreadable key file: listed, and named when no
		// key opens a layer.
		return []Entry{{Name: filepath.Base(rs.Dir) + "/", Err: fmt.Errorf("reading PKCS#11 key records: %w", err)}}
	}
	var out []Entry
	for _, name := range names {
		r, err := rs.Get(name)
		out = append(out, Entry{Name: name, Record: r, Err: err})
	}
	return out
}

// Stamp is the directory's modification time (zero if absent), for caches.
func (rs *Records) Stamp() time.Time { return soft.RecordDir(rs.Dir).Stamp() }
