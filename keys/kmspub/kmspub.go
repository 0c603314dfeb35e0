// Package kmspub caches the public keys of asymmetric KMS keys in the
// keystore (DIR/kms/) and wraps file keys for them offline, with RSA-OAEP
// and SHA-256: encrypting for such a key needs no KMS permission, no
// network and no plugin. Only unwrapping calls the KMS.
package kmspub

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/safefile"
)

// ErrNotCached is returned by Get for a URL without a cached key.
var ErrNotCached = errors.New("no cached public key")

const maxEntrySize = 64 << 10

// MinBits is the smallest RSA modulus accepted.
const MinBits = 2048

// Entry is one cached public key.
type Entry struct {
	URL        string    `json:"url"`
	StanzaType string    `json:"stanza_type"`
	KID        string    `json:"kid"`
	N          []byte    `json:"n"`
	E          int       `json:"e"`
	Prefix     string    `json:"prefix,omitempty"` // see plugin.PublicKey
	Fetched    time.Time `json:"fetched"`
}

// Cache is the directory of cached keys.
type Cache struct{ Dir string }

func (c *Cache) path(url string) string {
	h := sha256.Sum256([]byte(url))
	return filepath.Join(c.Dir, hex.EncodeToString(h[:16])+".json")
}

// Get returns the cached key for url.
func (c *Cache) Get(url string) (*Entry, error) {
	err := safefile.CheckDir(c.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotCached
	}
	if err != nil {
		return nil, err
	}
	data, err := safefile.Read(c.path(url), safefile.Record, maxEntrySize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotCached
	}
	if err != nil {
		return nil, err
	}
	e, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.path(url), err)
	}
	if e.URL != url {
		return nil, fmt.Errorf("%s: cached for another URL", c.path(url))
	}
	return e, nil
}

// Put stores e, replacing an older copy atomically.
func (c *Cache) Put(e *Entry) error {
	if _, err := e.publicKey(); err != nil {
		return err
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	return safefile.Replace(c.path(e.URL), append(data, '\n'), 0o644)
}

// List returns the cached keys by URL; unreadable files are skipped.
func (c *Cache) List() []*Entry {
	if safefile.CheckDir(c.Dir) != nil {
		return nil
	}
	des, _ := os.ReadDir(c.Dir)
	var out []*Entry
	for _, de := range des {
		if !strings.HasSuffix(de.Name(), ".json") {
			continue
		}
		data, err := safefile.Read(filepath.Join(c.Dir, de.Name()), safefile.Record, maxEntrySize)
		if err != nil {
			continue
		}
		if e, err := Parse(data); err == nil {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].URL < out[j].URL })
	return out
}

// Parse decodes a cache file strictly.
func Parse(data []byte) (*Entry, error) {
	if len(data) > maxEntrySize {
		return nil, errors.New("cached KMS public key: too large")
	}
	var e Entry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, errors.New("cached KMS public key: invalid JSON")
	}
	if e.URL == "" || e.StanzaType == "" || e.KID == "" {
		return nil, errors.New("cached KMS public key: missing url, stanza_type or kid")
	}
	if len(e.Prefix) > 64 || strings.ContainsFunc(e.Prefix, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return nil, errors.New("cached KMS public key: invalid prefix")
	}
	if _, err := e.publicKey(); err != nil {
		return nil, err
	}
	return &e, nil
}

func (e *Entry) publicKey() (*rsa.PublicKey, error) {
	n := new(big.Int).SetBytes(e.N)
	if n.BitLen() < MinBits || n.BitLen() > 8192 || n.Bit(0) == 0 || e.E < 3 || e.E > 1<<31-1 || e.E%2 == 0 {
		return nil, fmt.Errorf("cached KMS public key: not an RSA key of %d to 8192 bits", MinBits)
	}
	return &rsa.PublicKey{N: n, E: e.E}, nil
}

// Bits returns the modulus size.
func (e *Entry) Bits() int { return new(big.Int).SetBytes(e.N).BitLen() }

// Recipient wraps file keys for a cached public key, offline.
type Recipient struct {
	e   *Entry
	pub *rsa.PublicKey
}

// Recipient returns the offline recipient of e.
func (e *Entry) Recipient() (*Recipient, error) {
	pub, err := e.publicKey()
	if err != nil {
		return nil, err
	}
	return &Recipient{e: e, pub: pub}, nil
}

// Type is the stanza type the recipient writes.
func (r *Recipient) Type() string { return r.e.StanzaType }

// Wrap encrypts fileKey with RSA-OAEP (SHA-256, empty label).
func (r *Recipient) Wrap(fileKey []byte) (*envelope.Stanza, error) {
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, r.pub, fileKey, nil)
	if err != nil {
		return nil, err
	}
	if r.e.Prefix != "" {
		ct = []byte(r.e.Prefix + base64.StdEncoding.EncodeToString(ct))
	}
	return &envelope.Stanza{Type: r.e.StanzaType, KID: r.e.KID, Key: ct}, nil
}
