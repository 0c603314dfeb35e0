package backend

import (
	"errors"
	"sort"
	"time"
)

// Passphrase returns the secret that opens a named key (a sealed file's
// passphrase, a hardware key's PIN), or nil.
type Passphrase = func(keyName string) ([]byte, error)

// StoredKey is one key a keystore records, or why it could not be read.
type StoredKey struct {
	Name string
	Key  Key
	Err  error
}

// Stored is a kind of key that a keystore records in files of its own
// (a hardware key's public half and handle, say) beside its key files:
// the provider lists and names them as it does key files, without knowing
// their format. A Key may offer Recipient() (envelope.Recipient, error).
type Stored struct {
	// List returns the keystore's keys of this kind, by name; none when
	// the keystore has none.
	List func(keystore string, pass Passphrase) []StoredKey
	// Get returns one key; an error wrapping ErrNoStoredKey when the
	// keystore has no key of this kind by that name.
	Get func(keystore, name string, pass Passphrase) (Key, error)
	// Stamp changes when keys of this kind are added or removed (a
	// directory's mtime), for caches; zero when there are none.
	Stamp func(keystore string) time.Time
}

// ErrNoStoredKey says that a keystore has no key of a stored kind by a
// name.
var ErrNoStoredKey = errors.New("no such key")

var stored = map[string]Stored{}

// RegisterStored adds a kind of stored key ("tpm", …).
func RegisterStored(kind string, s Stored) { stored[kind] = s }

// StoredKinds returns the registered kinds of stored keys, sorted.
func StoredKinds() []Stored {
	names := make([]string, 0, len(stored))
	for n := range stored {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]Stored, len(names))
	for i, n := range names {
		out[i] = stored[n]
	}
	return out
}
