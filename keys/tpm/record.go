package tpm

import (
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/internal/safefile"
	"github.com/ocikp/ocikp/keys/hwhybrid"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/p256"
	"github.com/ocikp/ocikp/pq"
)

// maxRecordSize bounds a record file: a P-256 key's blobs are ~300
// bytes, a hybrid's recipient 1,974 characters and its sealed half ~200.
const maxRecordSize = 12 << 10

// maxBlob bounds each TPM blob in a record (a TPM2B is at most 64 KiB;
// a P-256 key's are about 100 bytes).
const maxBlob = 1024

// Record is the keystore's record of a TPM key (DIR/tpm/NAME.json). A
// post-quantum hybrid (Type pq.MLKEMP256) also keeps its ML-KEM seed
// sealed to the TPM key (Half): of no use without this TPM.
type Record struct {
	Name      string `json:"name"`
	Type      string `json:"type,omitempty"` // "" for p256
	Recipient string `json:"recipient"`
	// Device is the TPM the key was made in, as given at keygen; --tpm
	// and OCIKP_TPM override it.
	Device string `json:"device"`
	// Public is the key's TPM2B_PUBLIC, Private its TPM2B_PRIVATE as the
	// TPM encrypted it under the SRK; SRK is the SRK's name.
	Public  string         `json:"public"`
	Private string         `json:"private"`
	SRK     string         `json:"srk"`
	PIN     bool           `json:"pin"`
	PCRs    []int          `json:"pcrs,omitempty"`
	Half    *hwhybrid.Half `json:"half,omitempty"`
	Created time.Time      `json:"created"`

	compressed []byte
	pub, priv  []byte // TPM2B_PUBLIC, TPM2B_PRIVATE: opaque here (package tpmdev reads them)
	srkName    []byte
}

// NewRecord records a key the TPM created.
func NewRecord(name, device string, c *Created, s Spec) (*Record, error) {
	return newRecord(&Record{Name: name, Recipient: p256.Format(c.Public)}, device, c, s)
}

// NewHybridRecord records a new ML-KEM-768 + P-256 key whose P-256 half
// is the key the TPM created: a fresh ML-KEM key, its seed sealed to that
// key (in software; the TPM opens it at unwrap).
func NewHybridRecord(name, device string, c *Created, s Spec) (*Record, error) {
	recipient, half, err := hwhybrid.New(c.Public)
	if err != nil {
		return nil, err
	}
	return newRecord(&Record{Name: name, Type: pq.MLKEMP256, Recipient: recipient, Half: half}, device, c, s)
}

// newRecord completes r and reads it back as a reader would, so that no
// record is written that cannot be used.
func newRecord(r *Record, device string, c *Created, s Spec) (*Record, error) {
	r.Device = device
	r.Public = base64.StdEncoding.EncodeToString(c.Pub)
	r.Private = base64.StdEncoding.EncodeToString(c.Priv)
	r.SRK = base64.StdEncoding.EncodeToString(c.SRKName)
	r.PIN = len(s.PIN) > 0
	r.PCRs = s.PCRs
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
	if err := soft.DecodeRecord(data, maxRecordSize, "TPM key record", &w); err != nil {
		return nil, err
	}
	r := w.Record
	switch {
	case w.V != 1:
		return nil, fmt.Errorf("TPM key record: version %d, this ocikp reads version 1", w.V)
	case !soft.ValidName(r.Name):
		return nil, errors.New("TPM key record: invalid key name")
	case r.Device != "" && (!filepath.IsAbs(r.Device) || len(r.Device) > 4096 || strings.ContainsRune(r.Device, 0)):
		return nil, errors.New("TPM key record: the device must be an absolute path")
	}
	if err := CheckPCRs(r.PCRs); err != nil {
		return nil, fmt.Errorf("TPM key record: %w", err)
	}
	var err error
	switch r.Type {
	case "":
		if r.Half != nil {
			return nil, errors.New(`TPM key record: a "half" belongs to an mlkem768p256 key`)
		}
		if r.compressed, err = p256.ParseCompressed(r.Recipient); err != nil {
			return nil, fmt.Errorf("TPM key record: %w", err)
		}
	case pq.MLKEMP256:
		pub, err := hwhybrid.ClassicalKey(r.Recipient)
		if err != nil {
			return nil, fmt.Errorf("TPM key record: %w", err)
		}
		if err := r.Half.Check(); err != nil {
			return nil, fmt.Errorf("TPM key record: %w", err)
		}
		r.compressed = p256.Compress(pub)
	default:
		return nil, fmt.Errorf("TPM key record: type %.30q; this ocikp reads %s (and P-256 keys, which have no type)", r.Type, pq.MLKEMP256)
	}
	// The blobs are sized TPM structures (TPM2Bs), kept opaque: the
	// companion checks their contents, and that the public area is the
	// recipient's key, when it uses them.
	blob := func(field string, s string) ([]byte, error) {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) == 0 || len(b) > maxBlob {
			return nil, fmt.Errorf("TPM key record: %s is not a TPM blob", field)
		}
		return b, nil
	}
	if r.pub, err = blob("public", r.Public); err != nil {
		return nil, err
	}
	if r.priv, err = blob("private", r.Private); err != nil {
		return nil, err
	}
	if r.srkName, err = blob("srk", r.SRK); err != nil {
		return nil, err
	}
	if !sized(r.pub) {
		return nil, errors.New("TPM key record: public is not a TPM2B_PUBLIC")
	}
	if !sized(r.priv) {
		return nil, errors.New("TPM key record: private is not a TPM2B_PRIVATE")
	}
	return &r, nil
}

// sized reports whether b is one TPM2B: a 2-byte big-endian size, then
// that many bytes.
func sized(b []byte) bool {
	return len(b) > 2 && int(b[0])<<8|int(b[1]) == len(b)-2
}

// Blobs returns the key's TPM2B_PUBLIC, TPM2B_PRIVATE and SRK name, for
// the device code.
func (r *Record) Blobs() (pub, priv, srkName []byte) { return r.pub, r.priv, r.srkName }

// Marshal encodes r as stored.
func (r *Record) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(struct {
		V int `json:"v"`
		*Record
	}{1, r}, "", "  ")
	return append(b, '\n'), err
}

// Hybrid reports a post-quantum hybrid whose P-256 half is the TPM key.
func (r *Record) Hybrid() bool { return r.Type == pq.MLKEMP256 }

// KeyType is the key's type for listings: "p256" or "mlkem768p256".
func (r *Record) KeyType() string {
	if r.Hybrid() {
		return r.Type
	}
	return "p256"
}

// Compressed returns the TPM key's compressed public point.
func (r *Record) Compressed() []byte { return r.compressed }

// PublicKey returns the key's public key.
func (r *Record) PublicKey() (*ecdh.PublicKey, error) { return p256.ParsePoint(r.compressed) }

// RecipientString is the key's recipient (a hybrid's, for a hybrid).
func (r *Record) RecipientString() string {
	if r.Hybrid() {
		return r.Recipient
	}
	return p256.FormatCompressed(r.compressed)
}

// Protection says what the key needs besides the TPM, for listings:
// "pin", "pcrs 7,11", "pin, pcrs 7", or "".
func (r *Record) Protection() string {
	var out []string
	if r.PIN {
		out = append(out, "pin")
	}
	if len(r.PCRs) > 0 {
		s := make([]string, len(r.PCRs))
		for i, p := range r.PCRs {
			s[i] = fmt.Sprint(p)
		}
		out = append(out, "pcrs "+strings.Join(s, ","))
	}
	return strings.Join(out, ", ")
}

// Records is a keystore's directory of TPM key records (DIR/tpm).
type Records struct{ Dir string }

// RecordsIn returns the TPM key records of the keystore at dir.
func RecordsIn(keystore string) *Records { return &Records{Dir: filepath.Join(keystore, "tpm")} }

func (rs *Records) path(name string) string { return soft.RecordDir(rs.Dir).Path(name) }

// Get reads one record; an error wrapping backend.ErrNoStoredKey if
// there is none of that name.
func (rs *Records) Get(name string) (*Record, error) {
	if !soft.ValidName(name) {
		return nil, fmt.Errorf("invalid key name %.70q", name)
	}
	if err := safefile.CheckDir(rs.Dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	// Private: the blob is useless without the TPM, but its file is kept
	// like a key file, and its PIN flag and PCRs are the owner's business.
	data, err := safefile.Read(rs.path(name), safefile.Private, maxRecordSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("key %q: no TPM key of that name: %w", name, backend.ErrNoStoredKey)
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

// Remove deletes a record (the key is gone with it: the TPM keeps no copy).
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
		return []Entry{{Name: filepath.Base(rs.Dir) + "/", Err: fmt.Errorf("reading TPM key records: %w", err)}}
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
