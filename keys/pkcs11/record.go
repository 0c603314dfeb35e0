package pkcs11

import (
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/ocikp/ocikp/internal/safefile"
	"github.com/ocikp/ocikp/keys/hwhybrid"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/p256"
	"github.com/ocikp/ocikp/pq"
)

// maxRecordSize bounds a record file: room for a URI at its bound, a
// hybrid recipient (2,024 characters) and its sealed half.
const maxRecordSize = 12 << 10

// Record is the keystore's record of a token key (DIR/pkcs11/NAME.json):
// where the key is and its public half, never a PIN. A post-quantum
// hybrid (Type pq.MLKEMP256) also keeps its ML-KEM seed, sealed to the
// token key (Half): of no use without the token and its PIN.
type Record struct {
	Name      string         `json:"name"`
	Type      string         `json:"type,omitempty"` // "" for p256
	Recipient string         `json:"recipient"`
	URI       string         `json:"uri"`
	Half      *hwhybrid.Half `json:"half,omitempty"`
	Created   time.Time      `json:"created"`

	compressed []byte // the token key's public key
	uri        *URI
}

// NewRecord records a token key: u (its pin-value dropped) and pub.
func NewRecord(name string, u *URI, pub *ecdh.PublicKey) (*Record, error) {
	return newRecord(&Record{Name: name, Recipient: p256.Format(pub), URI: u.String()})
}

// NewHybridRecord records a new ML-KEM-768 + P-256 key whose P-256 half
// is the token key pub: a fresh ML-KEM key, its seed sealed to pub (the
// token is not used).
func NewHybridRecord(name string, u *URI, pub *ecdh.PublicKey) (*Record, error) {
	recipient, half, err := hwhybrid.New(pub)
	if err != nil {
		return nil, err
	}
	return newRecord(&Record{Name: name, Type: pq.MLKEMP256, Recipient: recipient, URI: u.String(), Half: half})
}

// newRecord reads r back as a reader would, so that no record is written
// that cannot be used.
func newRecord(r *Record) (*Record, error) {
	r.Created = time.Now().UTC().Truncate(time.Second)
	data, err := r.Marshal()
	if err != nil {
		return nil, err
	}
	return ParseRecord(data)
}

// ParseRecord reads a record file's contents, strictly.
func ParseRecord(data []byte) (*Record, error) {
	var w struct {
		V int `json:"v"`
		Record
	}
	if err := soft.DecodeRecord(data, maxRecordSize, "PKCS#11 key record", &w); err != nil {
		return nil, err
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
	switch r.Type {
	case "":
		if r.Half != nil {
			return nil, errors.New(`PKCS#11 key record: a "half" belongs to an mlkem768p256 key`)
		}
		if r.compressed, err = p256.ParseCompressed(r.Recipient); err != nil {
			return nil, fmt.Errorf("PKCS#11 key record: %w", err)
		}
	case pq.MLKEMP256:
		pub, err := hwhybrid.ClassicalKey(r.Recipient)
		if err != nil {
			return nil, fmt.Errorf("PKCS#11 key record: %w", err)
		}
		if err := r.Half.Check(); err != nil {
			return nil, fmt.Errorf("PKCS#11 key record: %w", err)
		}
		r.compressed = p256.Compress(pub)
	default:
		return nil, fmt.Errorf("PKCS#11 key record: type %.30q; this ocikp reads %s (and P-256 keys, which have no type)", r.Type, pq.MLKEMP256)
	}
	r.uri = u
	return &r, nil
}

// Hybrid reports a post-quantum hybrid whose P-256 half is the token key.
func (r *Record) Hybrid() bool { return r.Type == pq.MLKEMP256 }

// KeyType is the key's type for listings: "p256" or "mlkem768p256".
func (r *Record) KeyType() string {
	if r.Hybrid() {
		return r.Type
	}
	return "p256"
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

// PublicKey returns the token key's public key (a hybrid's P-256 half).
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
