package cli

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/ocikp/ocikp/keys/keychain"
	"github.com/ocikp/ocikp/keys/pkcs11"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/plugin"
	"github.com/ocikp/ocikp/pq"
)

// pkcs11Flags are keygen's options for --backend pkcs11 (it shares --pin
// and --pin-file with --backend tpm).
type pkcs11Flags struct {
	uri      *string
	existing *bool
}

func addPKCS11Flags(fs *flag.FlagSet) pkcs11Flags {
	return pkcs11Flags{
		uri:      fs.String("uri", "", "pkcs11: the key's RFC 7512 `URI`, pkcs11:token=…;object=…?module-path=… (pin-value is used, never stored)"),
		existing: fs.Bool("existing", false, "pkcs11: use the P-256 key the URI names instead of generating one"),
	}
}

func (p pkcs11Flags) used() bool { return *p.uri != "" || *p.existing }

// pkcs11PIN is the token's user PIN for keygen: the URI's pin-value or
// pin-source, else --pin-file, --pin (prompt), $OCIKP_PASSPHRASE(_FILE).
func pkcs11PIN(u *pkcs11.URI, t tpmFlags) ([]byte, error) {
	switch {
	case u.PINValue != "":
		return []byte(u.PINValue), nil
	case u.PINSource != "":
		return pkcs11.ReadPINSource(u.PINSource)
	case *t.pinFile != "" && *t.pin:
		return nil, usagef("--pin and --pin-file are exclusive")
	case *t.pinFile != "":
		p, err := readPassphraseFile(*t.pinFile)
		if err != nil {
			return nil, fmt.Errorf("PIN %w", err)
		}
		return p, nil
	case *t.pin:
		return promptPassphrase("Token user PIN: ")
	}
	return unattendedPassphrase("")("")
}

// pkcs11Keygen makes (or, with --existing, adopts) a P-256 token key and
// records it; with kind mlkem768p256 it records a hybrid whose P-256 half
// is that key and whose ML-KEM seed is sealed to it (nil kind: P-256).
func (e *env) pkcs11Keygen(name string, p pkcs11Flags, t tpmFlags, kind *pq.Kind) error {
	if *p.uri == "" {
		return usagef("--backend pkcs11 needs --uri 'pkcs11:token=LABEL;object=LABEL?module-path=/path/to/module.so'")
	}
	if *t.path != "" || *t.pcrs != "" {
		return usagef("--tpm and --pcrs go with --backend tpm")
	}
	u, err := pkcs11.Parse(*p.uri)
	if err != nil {
		return usagef("--uri: %v", err)
	}
	pin, err := pkcs11PIN(u, t)
	if err != nil {
		return err
	}
	st, err := e.store()
	if err != nil {
		return err
	}
	if err := nameFree(st, keychain.RefsIn(st.Dir), name); err != nil {
		return err
	}
	recs := pkcs11.RecordsIn(st.Dir)
	verb := "created"
	record := pkcs11.NewRecord
	if kind != nil {
		record = pkcs11.NewHybridRecord
	}
	var r *pkcs11.Record
	if *p.existing {
		verb = "adopted"
		k, err := pkcs11.Existing(u, pin)
		if err != nil {
			return err
		}
		if r, err = record(name, u, k); err != nil {
			return err
		}
	} else {
		k, f, err := pkcs11.Generate(u, pin)
		if err != nil {
			return err
		}
		if r, err = record(name, f, k); err != nil {
			return err
		}
	}
	if err := recs.Put(r); err != nil {
		return err
	}
	note := ""
	if r.Hybrid() {
		note = " (" + r.Type + ", " + kind.Label + ": the ML-KEM half sealed to the token key)"
	}
	fmt.Fprintln(e.stdout, r.Recipient)
	fmt.Fprintf(e.stderr, "ocikp: %s PKCS#11 key %q (%s), recorded in %s%s\n", verb, name, r.URI, recs.Dir, note)
	if u.PINValue != "" {
		fmt.Fprintln(e.stderr, "ocikp: note: the PIN is not stored; to unwrap, give it through pin-source=FILE in the URI or $OCIKP_PASSPHRASE_FILE")
	}
	return nil
}

// pkcs11Recipient returns a token key's recipient, if the keystore
// records one of that name.
func pkcs11Recipient(st *soft.Store, name string) (string, bool) {
	r, err := pkcs11.RecordsIn(st.Dir).Get(name)
	if err != nil {
		return "", false
	}
	return r.Recipient, true
}

// pkcs11Delete forgets a token key: the record goes, the key stays on
// the token (other machines or tools may use it).
func (e *env) pkcs11Delete(st *soft.Store, name string) error {
	recs := pkcs11.RecordsIn(st.Dir)
	r, _ := recs.Get(name)
	if err := recs.Remove(name); err != nil {
		return err
	}
	where := "the token"
	if r != nil {
		where = r.URI
	}
	fmt.Fprintf(e.stderr, "ocikp: deleted the record of PKCS#11 key %q from %s; the key itself stays on %s (remove it with the token's tools)\n", name, st.Dir, where)
	return nil
}

func pkcs11Listed(st *soft.Store) []listed {
	var out []listed
	for _, en := range pkcs11.RecordsIn(st.Dir).List() {
		l := listed{Name: en.Name, Type: "? (pkcs11)"}
		if en.Err != nil {
			l.Error = oneLine(en.Err.Error())
			out = append(out, l)
			continue
		}
		r := en.Record
		l.Type = r.KeyType() + " (pkcs11 " + r.URI + ")"
		l.shortType = r.KeyType() + " (pkcs11)" // the URI: --long
		l.Recipient, l.Protected, l.Created = r.Recipient, true, r.Created.Format(time.RFC3339)
		out = append(out, l)
	}
	return out
}

// checkPKCS11 checks each token key of the keystore: its record, its
// module, the companion, and — when a PIN is at hand (pin-source,
// $OCIKP_PASSPHRASE_FILE, $OCIKP_PASSPHRASE) — that the token holds the
// recorded key. It returns how many are usable.
func (d *doctor) checkPKCS11(dir string) int {
	usable := 0
	// A refused PIN is not tried again on the same token: smart cards
	// lock after a few (a YubiKey's PIV PIN after three).
	refused := map[string]bool{}
	for _, en := range pkcs11.RecordsIn(dir).List() {
		name := "key " + en.Name
		if en.Err != nil {
			d.fail(name, firstHint(en.Err), "%v", en.Err)
			continue
		}
		r := en.Record
		u, err := pkcs11.Parse(r.URI)
		if err == nil {
			_, err = pkcs11.CheckModule(u)
		}
		if err == nil {
			_, err = (&plugin.Client{Name: pkcs11.Companion}).Find()
		}
		if err != nil {
			d.fail(name, firstHint(err), "%v", err)
			continue
		}
		pin, err := r.PIN(unattendedPassphrase(""))
		if err != nil {
			d.fail(name, firstHint(err), "%v", err)
			continue
		}
		if len(pin) == 0 {
			d.ok(name, "PKCS#11 key on %s (module found; the key is checked only with a PIN: pin-source or $OCIKP_PASSPHRASE_FILE)", r.URI)
			usable++
			continue
		}
		token := u.ModulePath + "\x00" + u.Token + "\x00" + u.Serial
		if refused[token] {
			d.fail(name, "give the token's user PIN", "not checked: the PIN was refused for another key on this token")
			continue
		}
		pub, err := pkcs11.Existing(u, pin)
		if errors.Is(err, pkcs11.ErrPINIncorrect) || errors.Is(err, pkcs11.ErrPINLocked) {
			refused[token] = true
		}
		if err != nil {
			d.fail(name, firstHint(err), "%v", err)
			continue
		}
		if want, _ := r.PublicKey(); !pub.Equal(want) {
			d.fail(name, "the token's key at that URI was replaced: record the new one (ocikp keygen --backend pkcs11 --existing) and rewrap images", "the key at %s is not the recorded one", r.URI)
			continue
		}
		if r.Hybrid() {
			// One more ECDH: the record's sealed ML-KEM half must open
			// with this token key, or the hybrid decrypts nothing.
			k, err := r.NewKey(pin)
			if err == nil {
				_, err = r.Half.Open(r.Recipient, k)
			}
			if err != nil {
				d.fail(name, firstHint(err), "%v", err)
				continue
			}
		}
		d.ok(name, "PKCS#11 key present on %s", r.URI)
		usable++
	}
	return usable
}
