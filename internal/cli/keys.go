// Key commands: keygen, import, recipient, delete, and the keystore
// checks they share.

package cli

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/keys/keychain"
	"github.com/ocikp/ocikp/keys/pkcs11"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/pq"
)

func cmdKeygen(e *env, args []string) error {
	fs := e.flags("keygen")
	prompt := fs.Bool("passphrase", false, "protect the key with a passphrase typed at the terminal")
	passFile := fs.String("passphrase-file", "", "protect the key with the passphrase in this file")
	typ := fs.String("type", soft.TypeP256, "key `TYPE`: p256, or post-quantum mlkem768x25519 (X-Wing) or mlkem768p256")
	ifAbsent := fs.Bool("if-absent", false, "if the keystore holds NAME already, print its recipient and change nothing (an init step run on every start)")
	kf := e.addKeychainFlags(fs, true)
	tf := addTPMFlags(fs)
	pf := addPKCS11Flags(fs)
	pos, err := e.parse(fs, args, 1, 1, "[--if-absent] [--type p256|mlkem768x25519|mlkem768p256] [--passphrase | --passphrase-file FILE] [--backend keychain [--secure-enclave] [--tag TAG] [--require-presence]] [--backend tpm [--type p256|mlkem768p256] [--tpm PATH] [--pin | --pin-file FILE] [--pcrs LIST]] [--backend pkcs11 [--type p256|mlkem768p256] --uri URI [--existing] [--pin | --pin-file FILE]] NAME")
	if err != nil {
		return err
	}
	if err := checkName(pos[0]); err != nil {
		return err
	}
	if *ifAbsent {
		if kept, err := e.keepIfAbsent(pos[0], *kf.backend, *typ, tf); kept || err != nil {
			return err
		}
	}
	kind := pq.KindOf(*typ)
	if kind == nil && *typ != soft.TypeP256 {
		return usagef("--type %.30q: want one of %s", *typ, strings.Join(soft.Types(), ", "))
	}
	if hw := *kf.backend; (hw == "pkcs11" || hw == "tpm") && kind != nil && kind.Type != pq.MLKEMP256 {
		return hint.Wrap(usagef("--type %s has no hardware half: X25519 is not a TPM or PKCS#11 curve", kind.Type),
			"use --type "+pq.MLKEMP256+" (ML-KEM-768 + P-256), whose P-256 half is the "+hw+" key")
	}
	if *kf.backend == "pkcs11" {
		if *kf.tag != "" || *kf.secureEnclave || *kf.requirePresence || *prompt || *passFile != "" {
			return usagef("--backend pkcs11 makes p256 or mlkem768p256 keys and takes --uri, --existing, --pin and --pin-file")
		}
		return e.pkcs11Keygen(pos[0], pf, tf, kind)
	} else if pf.used() {
		return usagef("--uri and --existing go with --backend pkcs11")
	}
	if *kf.backend == "tpm" {
		if *kf.tag != "" || *kf.secureEnclave || *kf.requirePresence {
			return usagef("--backend tpm makes p256 or mlkem768p256 keys and takes --tpm, --pin, --pin-file and --pcrs")
		}
		if kind != nil {
			return e.tpmHybridKeygen(pos[0], tf, *prompt || *passFile != "")
		}
		return e.tpmKeygen(pos[0], tf, *prompt || *passFile != "")
	} else if tf.used() {
		return usagef("--tpm, --pin, --pin-file and --pcrs go with --backend tpm")
	}
	hybridKeychain := *kf.backend == "keychain" && kind != nil
	if kc, err := kf.check(!hybridKeychain && (*prompt || *passFile != "")); err != nil {
		return err
	} else if kc {
		switch {
		case kind == nil:
			return e.keychainKeygen(pos[0], kf)
		case kind.Type != pq.MLKEMP256:
			return usagef("--backend keychain holds P-256 keys: use --type mlkem768p256 for a post-quantum key whose P-256 half is in the Keychain")
		}
		pass, err := e.newPassphrase(*prompt, *passFile)
		if err != nil {
			return err
		}
		return e.keychainHybridKeygen(pos[0], kf, pass)
	}
	if kind != nil {
		seed, _, err := kind.GenerateKey()
		if err != nil {
			return err
		}
		return e.storeHybridKey(pos[0], kind, seed, *prompt, *passFile)
	}
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	return e.storeKey(pos[0], priv, *prompt, *passFile, "created")
}

// storeHybridKey stores a new post-quantum key, as storeKey does a P-256 one.
func (e *env) storeHybridKey(name string, kind *pq.Kind, seed []byte, prompt bool, passFile string) error {
	return e.newKeyFile(name, prompt, passFile, "created", func(pass []byte) (*soft.KeyFile, error) {
		return soft.NewHybridKeyFile(name, kind, seed, pass)
	})
}

// storeKey stores a new P-256 key.
func (e *env) storeKey(name string, priv *ecdh.PrivateKey, prompt bool, passFile, verb string) error {
	return e.newKeyFile(name, prompt, passFile, verb, func(pass []byte) (*soft.KeyFile, error) {
		return soft.NewKeyFile(name, priv, pass)
	})
}

// newKeyFile stores the key file build returns, sealed if a passphrase is
// asked for, unless the keystore holds the key already; it prints the
// recipient on stdout and a note on stderr.
func (e *env) newKeyFile(name string, prompt bool, passFile, verb string, build func(pass []byte) (*soft.KeyFile, error)) error {
	pass, err := e.newPassphrase(prompt, passFile)
	if err != nil {
		return err
	}
	st, err := e.store()
	if err != nil {
		return err
	}
	k, err := build(pass)
	if err != nil {
		return err
	}
	if err := refuseDuplicate(st, k.Public); err != nil {
		return err
	}
	if pkcs11.RecordsIn(st.Dir).Has(name) {
		return hint.Wrap(fmt.Errorf("key %q already exists in %s (a PKCS#11 key)", name, st.Dir),
			"choose another name, or remove the old key with: ocikp delete "+name)
	}
	if tpm.RecordsIn(st.Dir).Has(name) {
		return hint.Wrap(fmt.Errorf("key %q already exists in %s (a TPM key)", name, st.Dir),
			"choose another name, or remove the old key with: ocikp delete "+name)
	}
	if err := st.Put(name, k); err != nil {
		return err
	}
	var notes []string
	if k.Type != soft.TypeP256 {
		notes = append(notes, k.Type+", "+pq.KindOf(k.Type).Label)
	}
	if k.Protected() {
		notes = append(notes, "passphrase-protected")
	}
	note := ""
	if len(notes) > 0 {
		note = " (" + strings.Join(notes, "; ") + ")"
	}
	fmt.Fprintln(e.stdout, k.RecipientString())
	fmt.Fprintf(e.stderr, "ocikp: %s key %q in %s%s\n", verb, k.Name, st.Dir, note)
	return nil
}

func cmdImport(e *env, args []string) error {
	fs := e.flags("import")
	file := fs.String("file", "", "PEM file to import (default: stdin)")
	prompt := fs.Bool("passphrase", false, "protect the key with a passphrase typed at the terminal")
	passFile := fs.String("passphrase-file", "", "protect the key with the passphrase in this file")
	kf := e.addKeychainFlags(fs, false)
	pos, err := e.parse(fs, args, 1, 1, "[--file PEM] [--passphrase | --passphrase-file FILE] NAME | --backend keychain --tag TAG NAME")
	if err != nil {
		return err
	}
	if err := checkName(pos[0]); err != nil {
		return err
	}
	if kc, err := kf.check(*prompt || *passFile != ""); err != nil {
		return err
	} else if kc {
		if *file != "" {
			return usagef("--file is for --backend soft")
		}
		return e.keychainImport(pos[0], kf)
	}
	var data []byte
	if *file != "" {
		data, err = os.ReadFile(*file)
	} else {
		if e.stdinIsTTY {
			return hint.Wrap(errors.New("import reads a PEM private key from stdin, which is a terminal"),
				"pass --file KEY.pem or redirect the key into ocikp import NAME < KEY.pem")
		}
		data, err = io.ReadAll(io.LimitReader(e.stdin, soft.MaxKeyFileSize+1))
	}
	if err != nil {
		return fmt.Errorf("reading key: %w", err)
	}
	if k, kerr := soft.ParseKeyFile(data); kerr == nil {
		// An ocikp key file (another keystore's, a Kubernetes Secret's):
		// copied under NAME, keeping its own passphrase protection.
		if *prompt || *passFile != "" {
			return usagef("an ocikp key file keeps its own protection: drop --passphrase/--passphrase-file")
		}
		st, err := e.store()
		if err != nil {
			return err
		}
		if err := refuseDuplicate(st, k.Public); err != nil {
			return err
		}
		if err := st.Put(pos[0], k); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "ocikp: imported key %q in %s\n", pos[0], st.Dir)
		fmt.Fprintln(e.stdout, k.RecipientString())
		return nil
	}
	priv, err := soft.ParsePEMPrivateKey(data)
	if err != nil {
		return hint.Wrap(err, "import takes a PEM P-256 private key (PKCS#8 or SEC1) or an ocikp key file")
	}
	return e.storeKey(pos[0], priv, *prompt, *passFile, "imported")
}

// nameAndStore parses the single NAME argument of a command and opens the store.
func (e *env) nameAndStore(fs *flag.FlagSet, args []string) (string, *soft.Store, error) {
	pos, err := e.parse(fs, args, 1, 1, "NAME")
	if err != nil {
		return "", nil, err
	}
	if err := checkName(pos[0]); err != nil {
		return "", nil, err
	}
	st, err := e.existingStore()
	return pos[0], st, err
}

// checkName refuses an invalid key name as a usage error (exit 2).
func checkName(name string) error {
	if soft.ValidName(name) {
		return nil
	}
	return usagef("invalid key name %.70q: %s", name, soft.NameRule)
}

// existingStore is the keystore, which must exist: commands that read keys
// say where they looked rather than "no keys".
func (e *env) existingStore() (*soft.Store, error) {
	st, err := e.store()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(st.Dir); errors.Is(err, fs.ErrNotExist) {
		return nil, hint.Wrap(fmt.Errorf("keystore %s does not exist", st.Dir),
			"create a key with: ocikp keygen NAME", "or point --keystore / "+soft.EnvKeystore+" at an existing keystore")
	}
	return st, nil
}

// refuseDuplicate refuses a key that the keystore already holds under
// another name: two names for one key only confuse.
func refuseDuplicate(st *soft.Store, pub []byte) error {
	entries, _ := st.List()
	for _, en := range entries {
		if en.Err == nil && bytes.Equal(en.Key.Public, pub) {
			return hint.Wrap(fmt.Errorf("this key is already in %s, as %q", st.Dir, en.Name),
				"use that name (ocikp recipient "+en.Name+"), or delete it first (ocikp delete "+en.Name+")")
		}
	}
	for _, en := range keychain.RefsIn(st.Dir).List() {
		if en.Err == nil && bytes.Equal(en.Ref.Compressed(), pub) {
			return hint.Wrap(fmt.Errorf("this key is already recorded in %s, as %q", st.Dir, en.Name), "use that name")
		}
	}
	return nil
}

func cmdRecipient(e *env, args []string) error {
	fs := e.flags("recipient")
	ek := addEKFlags(fs, "tpm-ek")
	pos, err := e.parse(fs, args, 0, 1, "NAME | --tpm-ek FILE [--pcrs LIST --pcr-values HEX,…]")
	if err != nil {
		return err
	}
	if *ek.file != "" {
		if len(pos) > 0 {
			return usagef("--tpm-ek makes a recipient from the file alone: give no key NAME")
		}
		return e.ekRecipient(ek)
	}
	if len(pos) != 1 {
		return usagef("usage: ocikp recipient NAME | --tpm-ek FILE [--pcrs LIST --pcr-values HEX,…]")
	}
	if *ek.pcrs != "" || *ek.values != "" || *ek.roots != "" {
		return usagef("--pcrs, --pcr-values and --ek-roots go with --tpm-ek")
	}
	name := pos[0]
	if err := checkName(name); err != nil {
		return err
	}
	st, err := e.existingStore()
	if err != nil {
		return err
	}
	k, err := st.Get(name)
	if errors.Is(err, soft.ErrNotFound) {
		if ref, rerr := keychain.RefsIn(st.Dir).Get(name); rerr == nil {
			fmt.Fprintln(e.stdout, ref.RecipientString())
			return nil
		}
		if r, ok := tpmRecipient(st, name); ok {
			fmt.Fprintln(e.stdout, r)
			return nil
		}
		if r, ok := pkcs11Recipient(st, name); ok {
			fmt.Fprintln(e.stdout, r)
			return nil
		}
	}
	if err != nil {
		return lookupErr(st, name, err)
	}
	fmt.Fprintln(e.stdout, k.RecipientString())
	return nil
}

// keepIfAbsent is keygen --if-absent for a keystore that may hold name:
// kept (its recipient printed) only if it is the key asked for, of that
// backend and type, and a TPM key only if this TPM made it. A key of
// another kind (planted, or left from another setup) or another TPM's (a
// state directory copied from a golden image, a TPM cleared since) is an
// error: its recipient, collected for the fleet, would be one this node
// cannot open.
func (e *env) keepIfAbsent(name, backend, typ string, t tpmFlags) (bool, error) {
	st, err := e.existingStore()
	if err != nil {
		return false, nil
	}
	var have, haveType string
	var check func() error
	if r, err := tpm.RecordsIn(st.Dir).Get(name); err == nil {
		have, haveType = "tpm", r.KeyType()
		check = func() error { return tpm.Check(tpm.Path(*t.path, r.Device), r) }
	} else if r, err := pkcs11.RecordsIn(st.Dir).Get(name); err == nil {
		have, haveType = "pkcs11", r.KeyType()
	} else if k, err := st.Get(name); err == nil {
		have, haveType = "soft", k.Type
	} else if _, err := keychain.RefsIn(st.Dir).Get(name); err == nil {
		have = "keychain" // its type is the Keychain's to say
	} else {
		return false, nil
	}
	what := map[string]string{"soft": "software", "tpm": "TPM", "pkcs11": "PKCS#11", "keychain": "Keychain"}
	if have != backend || (haveType != "" && haveType != typ) {
		return true, hint.Wrap(fmt.Errorf("key %q exists as a %s key, not the %s %s key asked for", name, strings.TrimSpace(haveType+" "+what[have]), typ, what[backend]),
			"ask for the key it is, or remove it first: ocikp delete "+name)
	}
	// Only a key made elsewhere is refused: a TPM that is away or a
	// changed PCR is the service's to report, as before.
	if check != nil {
		if err := check(); errors.Is(err, tpm.ErrOtherTPM) {
			return true, hint.Wrap(fmt.Errorf("key %q exists, but cannot be used here: %w", name, err),
				"its record came from another machine, or this TPM was cleared: remove it (ocikp delete "+name+") and run this again to make this TPM's key")
		}
	}
	return true, cmdRecipient(e, []string{name})
}

func cmdDelete(e *env, args []string) error {
	fs := e.flags("delete")
	force := fs.Bool("force", false, "delete without asking (needed when stdin is not a terminal)")
	name, st, err := e.nameAndStore(fs, args)
	if err != nil {
		return err
	}
	isTPM := tpm.RecordsIn(st.Dir).Has(name)
	isPKCS11 := pkcs11.RecordsIn(st.Dir).Has(name)
	if _, err := st.Get(name); err != nil && !isTPM && !isPKCS11 {
		// Before asking: a typo should not be confirmed first.
		if err := lookupErr(st, name, err); errors.Is(err, soft.ErrNotFound) {
			return err
		}
	}
	if !*force {
		if err := e.confirmDelete(name); err != nil {
			return err
		}
	}
	if refs := keychain.RefsIn(st.Dir); soft.ValidName(name) && refs.Has(name) {
		return e.keychainDelete(refs, name)
	}
	if isTPM {
		return e.tpmDelete(st, name)
	}
	if isPKCS11 {
		return e.pkcs11Delete(st, name)
	}
	if err := st.Delete(name); err != nil {
		return lookupErr(st, name, err)
	}
	fmt.Fprintf(e.stderr, "ocikp: deleted key %q from %s; layers encrypted only to it can no longer be decrypted\n", name, st.Dir)
	return nil
}

// confirmDelete asks at the terminal for the key's name before a delete.
func (e *env) confirmDelete(name string) error {
	if !e.stdinIsTTY {
		return usagef("delete asks for confirmation at a terminal; elsewhere pass --force")
	}
	fmt.Fprintf(e.stderr, "Layers encrypted only for %q can no longer be decrypted once it is deleted.\nType the key's name to delete it: ", name)
	line, err := bufio.NewReader(io.LimitReader(e.stdin, 256)).ReadString('\n')
	if strings.TrimSpace(line) != name {
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		return errors.New("not deleted: the name typed did not match")
	}
	return nil
}
