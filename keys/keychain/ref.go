package keychain

import (
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
	"github.com/ocikp/ocikp/pq"
)

// MaxTag bounds a tag's length (the seed's are short strings).
const MaxTag = 256

// maxRefSize bounds a reference file (a hybrid's holds a 2 KB recipient).
const maxRefSize = 8192

// Ref is a keystore's record of a Keychain key: enough to list it and to
// match stanzas to it without asking the Keychain.
type Ref struct {
	Name string `json:"name"`
	// Type is "" for a P-256 key, or "mlkem768p256" for a hybrid whose
	// P-256 half is the Keychain key and whose ML-KEM half is MLKEM.
	Type            string `json:"type,omitempty"`
	Tag             string `json:"tag"`
	SecureEnclave   bool   `json:"secure_enclave"`
	RequirePresence bool   `json:"require_presence"`
	// Recipient is the key's recipient; for a hybrid, the hybrid one.
	Recipient string `json:"recipient"`
	// Classical is a hybrid's P-256 half's recipient (the Keychain key).
	Classical string     `json:"classical,omitempty"`
	MLKEM     *MLKEMHalf `json:"mlkem,omitempty"`
	Created   time.Time  `json:"created"`

	compressed []byte // the Keychain key's public point
	hybridPub  []byte
}

// Compressed returns the key's compressed public point.
func (r *Ref) Compressed() []byte { return r.compressed }

// PublicKey returns the key's public key.
func (r *Ref) PublicKey() (*ecdh.PublicKey, error) { return p256.ParsePoint(r.compressed) }

// Kind names where the key lives, for listings.
func (r *Ref) Kind() string {
	if r.SecureEnclave {
		return "secure-enclave"
	}
	return "keychain"
}

// ValidTag reports whether tag is usable: non-empty, bounded, printable.
func ValidTag(tag string) bool {
	if tag == "" || len(tag) > MaxTag {
		return false
	}
	for _, c := range tag {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// ParseRef reads a reference file's contents, strictly.
func ParseRef(data []byte) (*Ref, error) {
	var w struct {
		V int `json:"v"`
		Ref
	}
	if err := soft.DecodeRecord(data, maxRefSize, "keychain reference", &w); err != nil {
		return nil, err
	}
	r := w.Ref
	switch {
	case w.V != 1:
		return nil, fmt.Errorf("keychain reference: version %d, this ocikp reads version 1", w.V)
	case !soft.ValidName(r.Name):
		return nil, errors.New("keychain reference: invalid key name")
	case !ValidTag(r.Tag):
		return nil, errors.New("keychain reference: invalid tag")
	}
	switch r.Type {
	case "":
		if r.Classical != "" || r.MLKEM != nil {
			return nil, errors.New("keychain reference: a P-256 key has no classical or mlkem field")
		}
		c, err := p256.ParseCompressed(r.Recipient)
		if err != nil {
			return nil, fmt.Errorf("keychain reference: %w", err)
		}
		r.compressed = c
	case pq.MLKEMP256:
		c, err := p256.ParseCompressed(r.Classical)
		if err != nil {
			return nil, fmt.Errorf("keychain reference: classical half: %w", err)
		}
		kind, pub, err := pq.ParsePublic(r.Recipient)
		if err != nil || kind.Type != r.Type {
			return nil, errors.New("keychain reference: not an mlkem768p256 recipient")
		}
		// The hybrid public key ends with the P-256 half's uncompressed
		// point: it must be the Keychain key's.
		cpub, err := p256.ParsePoint(c)
		if err != nil || string(pub[len(pub)-65:]) != string(cpub.Bytes()) {
			return nil, errors.New("keychain reference: the recipient's P-256 half is not the Keychain key's")
		}
		if r.MLKEM == nil {
			return nil, errors.New("keychain reference: a hybrid key needs its mlkem half")
		}
		if err := r.MLKEM.check(); err != nil {
			return nil, fmt.Errorf("keychain reference: %w", err)
		}
		r.compressed, r.hybridPub = c, pub
	default:
		return nil, errors.New("keychain reference: unsupported key type")
	}
	return &r, nil
}

// RecipientString is the key's recipient in the checksummed form, whatever
// form the record was written in.
func (r *Ref) RecipientString() string {
	if r.Hybrid() {
		return pq.KindOf(r.Type).Format(r.hybridPub)
	}
	return p256.FormatCompressed(r.Compressed())
}

// Marshal encodes r as stored.
func (r *Ref) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(struct {
		V int `json:"v"`
		*Ref
	}{1, r}, "", "  ")
	return append(b, '\n'), err
}

// Refs is the keystore's directory of Keychain references (DIR/keychain).
type Refs struct{ Dir string }

// RefsIn returns the references of the keystore at dir.
func RefsIn(keystore string) *Refs { return &Refs{Dir: filepath.Join(keystore, "keychain")} }

func (rs *Refs) path(name string) string { return soft.RecordDir(rs.Dir).Path(name) }

// Get reads one reference; ErrNotFound if there is none of that name.
func (rs *Refs) Get(name string) (*Ref, error) {
	if !soft.ValidName(name) {
		return nil, fmt.Errorf("invalid key name %.70q", name)
	}
	data, err := readBounded(rs.Dir, rs.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("key %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	r, err := ParseRef(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rs.path(name), err)
	}
	if r.Name != name {
		return nil, fmt.Errorf("%s: names key %q", rs.path(name), r.Name)
	}
	return r, nil
}

// readBounded reads a record from a trusted directory (see safefile).
func readBounded(dir, path string) ([]byte, error) {
	if err := safefile.CheckDir(dir); err != nil {
		return nil, err
	}
	return safefile.Read(path, safefile.Record, maxRefSize)
}

// Has reports whether a record of that name exists.
func (rs *Refs) Has(name string) bool { return soft.RecordDir(rs.Dir).Has(name) }

// Put records a new reference; it never replaces one.
func (rs *Refs) Put(r *Ref) error {
	data, err := r.Marshal()
	if err != nil {
		return err
	}
	return soft.RecordDir(rs.Dir).PutNew(r.Name, data)
}

// Remove deletes a reference.
func (rs *Refs) Remove(name string) error { return soft.RecordDir(rs.Dir).Remove(name) }

// Entry is one listed reference, or why it could not be read.
type Entry struct {
	Name string
	Ref  *Ref
	Err  error
}

// List returns every reference, by name. No directory means none.
func (rs *Refs) List() []Entry {
	names, err := soft.RecordDir(rs.Dir).Names()
	if err != nil {
		// Reported like an unreadable key file: listed, and named when no
		// key opens a layer.
		return []Entry{{Name: filepath.Base(rs.Dir) + "/", Err: fmt.Errorf("reading Keychain records: %w", err)}}
	}
	var out []Entry
	for _, name := range names {
		r, err := rs.Get(name)
		out = append(out, Entry{Name: name, Ref: r, Err: err})
	}
	return out
}

// Stamp is the directory's modification time (zero if absent), for caches.
func (rs *Refs) Stamp() time.Time { return soft.RecordDir(rs.Dir).Stamp() }

// IsDecryptURL reports whether s is the Apple key provider's decryption
// key, apple-se://se?mode=decrypt[&tag=TAG].
func IsDecryptURL(s string) bool {
	_, err := ParseDecryptURL(s)
	return err == nil
}

// ParseDecryptURL returns the tag an apple-se decryption URL names
// (DefaultTag when it names none).
func ParseDecryptURL(s string) (string, error) {
	bad := errors.New("apple-se decryption key: want apple-se://se?mode=decrypt[&tag=TAG]")
	q, err := p256.AppleSEQuery(s)
	if err != nil || q["mode"] != "decrypt" {
		return "", bad
	}
	for k := range q {
		if k != "mode" && k != "tag" {
			return "", bad
		}
	}
	tag, ok := q["tag"]
	if !ok {
		tag = DefaultTag
	}
	if !ValidTag(tag) {
		return "", errors.New("apple-se decryption key: the tag must be 1-256 printable characters")
	}
	return tag, nil
}
