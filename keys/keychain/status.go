package keychain

import (
	"errors"
	"fmt"

	"github.com/ocikp/ocikp/internal/hint"
)

// ErrUnavailable is every call's error where there is no Keychain.
var ErrUnavailable = errors.New("the keychain backend is only available on macOS")

// ErrNotFound is returned when no Keychain key has the tag asked for.
var ErrNotFound = errors.New("no Keychain key with that tag")

// Status is a failed Security.framework call as the darwin layer reports
// it: the function, its OSStatus (or CFError code, which for these
// functions is an OSStatus), and the system's description.
type Status struct {
	Func string
	Code int32
	Desc string
}

func (s *Status) Error() string {
	if s.Desc != "" {
		return fmt.Sprintf("%s: %s (OSStatus %d)", s.Func, s.Desc, s.Code)
	}
	return fmt.Sprintf("%s: OSStatus %d", s.Func, s.Code)
}

// OSStatus values (SecBase.h, MacErrors.h) that call for their own advice.
const (
	errSecUserCanceled          = -128
	errSecParam                 = -50
	errSecNotAvailable          = -25291
	errSecAuthFailed            = -25293
	errSecDuplicateItem         = -25299
	errSecItemNotFound          = -25300
	errSecInteractionNotAllowed = -25308
	errSecMissingEntitlement    = -34018
	errSecNotSigned             = -67050 // code signing: no signature
)

// explain turns a Security failure into what the user should know. what
// says what ocikp was doing ("creating a Secure Enclave key").
func explain(what string, err error) error {
	var st *Status
	if !errors.As(err, &st) {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch st.Code {
	case errSecMissingEntitlement, errSecNotSigned:
		return hint.Wrap(fmt.Errorf("%s: macOS refused: this ocikp binary is not code-signed with the entitlements that Secure Enclave and access-controlled keys need (%s)", what, st),
			"sign ocikp with a Developer ID and a keychain-access-groups entitlement (docs/macos.md shows how)",
			"or use a plain Keychain key, which needs no signing: ocikp keygen --backend keychain NAME")
	case errSecItemNotFound:
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	case errSecDuplicateItem:
		return hint.Wrap(fmt.Errorf("%s: a Keychain item with these attributes already exists (%s)", what, st),
			"choose another --tag, or adopt the existing key: ocikp import --backend keychain --tag TAG NAME")
	case errSecUserCanceled, errSecAuthFailed:
		return hint.Wrap(fmt.Errorf("%s: the key's owner did not approve its use (%s)", what, st),
			"approve the prompt (Touch ID, watch or password) when ocikp asks, or run it where a user can see the prompt")
	case errSecInteractionNotAllowed:
		return hint.Wrap(fmt.Errorf("%s: the key needs user approval, and macOS cannot show a prompt here (%s)", what, st),
			"unlock the keychain first (security unlock-keychain), or use a key made without --require-presence for unattended decryption")
	case errSecNotAvailable:
		return hint.Wrap(fmt.Errorf("%s: no keychain is available (%s)", what, st),
			"run ocikp in a logged-in user session, or create a login keychain")
	case errSecParam:
		return fmt.Errorf("%s: macOS rejected the request's parameters; is this a P-256 key? (%s)", what, st)
	}
	return fmt.Errorf("%s: %w", what, st)
}
