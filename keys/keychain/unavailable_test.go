//go:build !darwin

package keychain_test

import (
	"errors"
	"testing"

	"github.com/ocikp/ocikp/keys/keychain"
)

func TestUnavailableElsewhere(t *testing.T) {
	kc := keychain.System()
	if _, err := kc.Create(keychain.Spec{Tag: "x"}); !errors.Is(err, keychain.ErrUnavailable) || err.Error() != "creating a Keychain key: the keychain backend is only available on macOS" {
		t.Fatalf("create: %v", err)
	}
	if _, err := kc.Find(keychain.DefaultTag); !errors.Is(err, keychain.ErrUnavailable) {
		t.Fatalf("find: %v", err)
	}
}
