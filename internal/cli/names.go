package cli

import (
	"errors"
	"fmt"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/suggest"
	"github.com/ocikp/ocikp/keys/keychain"
	"github.com/ocikp/ocikp/keys/soft"
)

// noKey is the error for a key name the keystore does not hold: it repeats
// the name and suggests the closest one it does hold.
func noKey(st *soft.Store, name string) error {
	err := fmt.Errorf("no key %.70q in keystore %s: %w", name, st.Dir, soft.ErrNotFound)
	hints := []string{"list keys with: ocikp list"}
	if h := suggest.Hint(name, storeNames(st)); h != "" {
		hints = []string{h, hints[0]}
	}
	return hint.Wrap(err, hints...)
}

// lookupErr turns the keystore's "no such key" into noKey's error, unless
// the name is a Keychain record.
func lookupErr(st *soft.Store, name string, err error) error {
	if errors.Is(err, soft.ErrNotFound) && !keychain.RefsIn(st.Dir).Has(name) {
		return noKey(st, name)
	}
	return err
}

// storeNames are the names of the keystore's keys and Keychain records.
func storeNames(st *soft.Store) []string {
	var names []string
	if entries, err := st.List(); err == nil {
		for _, en := range entries {
			names = append(names, en.Name)
		}
	}
	for _, en := range keychain.RefsIn(st.Dir).List() {
		if en.Err == nil {
			names = append(names, en.Name)
		}
	}
	return names
}
