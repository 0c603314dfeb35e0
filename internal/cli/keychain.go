package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/keys/keychain"
	"github.com/ocikp/ocikp/keys/pkcs11"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/p256"
)

// keychainFlags are keygen's and import's options for --backend keychain.
type keychainFlags struct {
	backend         *string
	tag             *string
	secureEnclave   *bool
	requirePresence *bool
}

func (e *env) addKeychainFlags(fs interface {
	String(string, string, string) *string
	Bool(string, bool, string) *bool
}, withCreate bool) keychainFlags {
	k := keychainFlags{
		backend: fs.String("backend", "soft", "where the key lives: soft (keystore file), keychain (macOS Keychain), tpm (keygen: TPM 2.0) or pkcs11 (keygen: a PKCS#11 token)"),
		tag:     fs.String("tag", "", "keychain: the key's application tag (default ocikp.NAME; the Apple key provider's is "+keychain.DefaultTag+")"),
	}
	if withCreate {
		k.secureEnclave = fs.Bool("secure-enclave", false, "keychain: create the key in the Secure Enclave (needs a signed, entitled ocikp)")
		k.requirePresence = fs.Bool("require-presence", false, "keychain: require user presence (Touch ID, watch or password) for each use")
	}
	return k
}

// check validates the flag combination; it reports whether the keychain
// backend was asked for.
func (k keychainFlags) check(passphrase bool) (bool, error) {
	switch *k.backend {
	case "soft":
		if *k.tag != "" || k.secureEnclave != nil && (*k.secureEnclave || *k.requirePresence) {
			return false, usagef("--tag, --secure-enclave and --require-presence go with --backend keychain")
		}
		return false, nil
	case "keychain":
		if passphrase {
			return true, usagef("--passphrase and --passphrase-file are for --backend soft; the Keychain protects its own keys")
		}
		return true, nil
	}
	return false, usagef("--backend %.20q: want soft or keychain", *k.backend)
}

func (k keychainFlags) tagFor(name string) (string, error) {
	tag := *k.tag
	if tag == "" {
		tag = "ocikp." + name
	}
	if !keychain.ValidTag(tag) {
		return "", usagef("--tag: 1-%d printable characters", keychain.MaxTag)
	}
	return tag, nil
}

// nameFree checks that name is taken by neither a key file nor a reference.
func nameFree(st *soft.Store, refs *keychain.Refs, name string) error {
	if !soft.ValidName(name) {
		_, err := st.Get(name) // the store's own invalid-name error
		return err
	}
	if _, err := st.Get(name); !errors.Is(err, soft.ErrNotFound) || refs.Has(name) || tpm.RecordsIn(st.Dir).Has(name) || pkcs11.RecordsIn(st.Dir).Has(name) {
		return hint.Wrap(fmt.Errorf("key %q already exists in %s", name, st.Dir),
			"choose another name, or remove the old key with: ocikp delete "+name)
	}
	return nil
}

// keychainTarget checks that name is free and returns where its record
// goes and the key's tag.
func (e *env) keychainTarget(name string, k keychainFlags) (*keychain.Refs, string, error) {
	st, err := e.store()
	if err != nil {
		return nil, "", err
	}
	refs := keychain.RefsIn(st.Dir)
	if err := nameFree(st, refs, name); err != nil {
		return nil, "", err
	}
	tag, err := k.tagFor(name)
	return refs, tag, err
}

// keychainKeygen creates a Keychain or Secure Enclave key and records it.
func (e *env) keychainKeygen(name string, k keychainFlags) error {
	refs, tag, err := e.keychainTarget(name, k)
	if err != nil {
		return err
	}
	spec := keychain.Spec{Tag: tag, Label: "ocikp: " + name, SecureEnclave: *k.secureEnclave, RequirePresence: *k.requirePresence}
	key, err := e.keychain().Create(spec)
	if err != nil {
		return err
	}
	ref := &keychain.Ref{Name: name, Tag: tag, SecureEnclave: spec.SecureEnclave, RequirePresence: spec.RequirePresence,
		Recipient: p256.Format(key.Public), Created: time.Now().UTC().Truncate(time.Second)}
	if err := refs.Put(ref); err != nil {
		// Lose nothing, leave nothing: a key ocikp cannot record is removed.
		if derr := key.Delete(); derr != nil {
			return fmt.Errorf("%w (and removing the new Keychain key with tag %q failed: %v)", err, tag, derr)
		}
		return err
	}
	fmt.Fprintln(e.stdout, ref.RecipientString())
	fmt.Fprintf(e.stderr, "ocikp: created %s key %q (tag %q), recorded in %s\n", ref.Kind(), name, tag, refs.Dir)
	return nil
}

// keychainImport records an existing Keychain key (one the Apple key
// provider's `starter` made, say) under name.
func (e *env) keychainImport(name string, k keychainFlags) error {
	if *k.tag == "" {
		return usagef("import --backend keychain needs --tag TAG (the Apple key provider's default is %s)", keychain.DefaultTag)
	}
	refs, tag, err := e.keychainTarget(name, k)
	if err != nil {
		return err
	}
	keys, err := e.keychain().Find(tag)
	if err != nil {
		return err
	}
	if len(keys) > 1 {
		return hint.Wrap(fmt.Errorf("%d Keychain keys have tag %q; ocikp records one", len(keys), tag),
			"remove the extra keys in Keychain Access, or decrypt with apple-se://se?mode=decrypt&tag=… which tries them all")
	}
	ref := &keychain.Ref{Name: name, Tag: tag, Recipient: p256.Format(keys[0].Public), Created: time.Now().UTC().Truncate(time.Second)}
	if err := refs.Put(ref); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, ref.RecipientString())
	fmt.Fprintf(e.stderr, "ocikp: recorded the Keychain key with tag %q as %q in %s\n", tag, name, refs.Dir)
	return nil
}

// keychainDelete deletes a recorded Keychain key and its record.
func (e *env) keychainDelete(refs *keychain.Refs, name string) error {
	ref, err := refs.Get(name)
	if err != nil {
		return err
	}
	pub, err := ref.PublicKey()
	if err != nil {
		return err
	}
	key, err := e.keychain().Select(ref.Tag, pub)
	switch {
	case errors.Is(err, keychain.ErrNotFound):
		fmt.Fprintf(e.stderr, "ocikp: the Keychain has no key with tag %q any more; removing the record\n", ref.Tag)
	case err != nil:
		return err
	default:
		if err := key.Delete(); err != nil {
			return err
		}
	}
	if err := refs.Remove(name); err != nil {
		return fmt.Errorf("removing the record: %w", err)
	}
	fmt.Fprintf(e.stderr, "ocikp: deleted %s key %q (tag %q); layers encrypted only to it can no longer be decrypted\n", ref.Kind(), name, ref.Tag)
	return nil
}

// keychainHybridKeygen creates a hardware-bound post-quantum key: its
// P-256 half a Keychain (or Secure Enclave) key, its ML-KEM half kept in
// the keystore's record, sealed under pass if one is given.
func (e *env) keychainHybridKeygen(name string, k keychainFlags, pass []byte) error {
	refs, tag, err := e.keychainTarget(name, k)
	if err != nil {
		return err
	}
	spec := keychain.Spec{Tag: tag, Label: "ocikp: " + name + " (P-256 half)", SecureEnclave: *k.secureEnclave, RequirePresence: *k.requirePresence}
	ref, key, err := e.keychain().CreateHybrid(name, spec, pass)
	if err != nil {
		return err
	}
	if err := refs.Put(ref); err != nil {
		// Lose nothing, leave nothing: a key ocikp cannot record is removed.
		if derr := key.Delete(); derr != nil {
			return fmt.Errorf("%w (and removing the new Keychain key with tag %q failed: %v)", err, tag, derr)
		}
		return err
	}
	note := ""
	if ref.Protected() {
		note = ", ML-KEM half passphrase-protected"
	}
	fmt.Fprintln(e.stdout, ref.RecipientString())
	fmt.Fprintf(e.stderr, "ocikp: created %s key %q: P-256 half in the %s (tag %q), ML-KEM half in %s%s\n",
		ref.Type, name, ref.Kind(), tag, refs.Dir, note)
	return nil
}
