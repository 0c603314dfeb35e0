package cli

import (
	"bytes"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/suggest"
	"github.com/ocikp/ocikp/internal/usage"
	"github.com/ocikp/ocikp/keys/keychain"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/keys/tpm"
)

// tpmFlags are keygen's options for --backend tpm.
type tpmFlags struct {
	path, pcrs, pinFile *string
	pin                 *bool
}

func addTPMFlags(fs *flag.FlagSet) tpmFlags {
	return tpmFlags{
		path:    fs.String("tpm", "", "tpm: the TPM `PATH`, a character device or a swtpm unix socket (default $"+tpm.EnvTPM+", else "+tpm.DefaultPath+")"),
		pcrs:    fs.String("pcrs", "", "tpm: bind the key to these sha256 PCRs' current values (`LIST`, e.g. 7,11)"),
		pin:     fs.Bool("pin", false, "tpm: protect the key with a PIN typed at the terminal"),
		pinFile: fs.String("pin-file", "", "tpm: protect the key with the PIN in this `FILE`"),
	}
}

// used reports whether a --backend tpm option was given.
func (t tpmFlags) used() bool {
	return *t.path != "" || *t.pcrs != "" || *t.pin || *t.pinFile != ""
}

func parsePCRs(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || n > 23 {
			return nil, usagef("--pcrs %.40q: want PCR numbers 0-23 separated by commas", s)
		}
		out = append(out, n)
	}
	sort.Ints(out)
	for i := 1; i < len(out); i++ {
		if out[i] == out[i-1] {
			return nil, usagef("--pcrs: PCR %d is listed twice", out[i])
		}
	}
	return out, nil
}

// newPIN gets a new key's PIN from --pin-file or the terminal (--pin).
func newPIN(prompt bool, file string) ([]byte, error) {
	var pin []byte
	switch {
	case file != "" && prompt:
		return nil, usagef("--pin and --pin-file are exclusive")
	case file != "":
		p, err := readPassphraseFile(file)
		if err != nil {
			return nil, fmt.Errorf("PIN %w", err)
		}
		pin = p
	case prompt:
		p, err := promptPassphrase("PIN for the new TPM key: ")
		if err != nil {
			return nil, err
		}
		again, err := promptPassphrase("Repeat the PIN: ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p, again) {
			return nil, errors.New("the PINs do not match")
		}
		if len(p) == 0 {
			return nil, errors.New("empty PIN")
		}
		pin = p
	}
	// The TPM takes an authValue up to the size of its name hash.
	if len(pin) > 32 {
		return nil, errors.New("the PIN is longer than 32 bytes, the most a TPM key's authValue holds")
	}
	return pin, nil
}

// tpmKeygen creates a P-256 key in the TPM and records it in the keystore.
func (e *env) tpmKeygen(name string, t tpmFlags, passphrase bool) error {
	return e.tpmMake(name, t, passphrase, false)
}

// tpmMake creates a P-256 key in the TPM and records it, as a P-256 key
// or as the P-256 half of an mlkem768p256 hybrid.
func (e *env) tpmMake(name string, t tpmFlags, passphrase, hybrid bool) error {
	if passphrase {
		return usagef("--passphrase and --passphrase-file are for --backend soft; a TPM key takes --pin or --pin-file")
	}
	pcrs, err := parsePCRs(*t.pcrs)
	if err != nil {
		return err
	}
	pin, err := newPIN(*t.pin, *t.pinFile)
	if err != nil {
		return err
	}
	st, err := e.store()
	if err != nil {
		return err
	}
	recs := tpm.RecordsIn(st.Dir)
	if err := nameFree(st, keychain.RefsIn(st.Dir), name); err != nil {
		return err
	}
	if recs.Has(name) {
		return hint.Wrap(fmt.Errorf("key %q already exists in %s", name, st.Dir),
			"choose another name, or remove the old key with: ocikp delete "+name)
	}
	path := tpm.Path(*t.path, "")
	spec := tpm.Spec{PIN: pin, PCRs: pcrs}
	c, err := tpm.Create(path, spec)
	if err != nil {
		return err
	}
	record := tpm.NewRecord
	if hybrid {
		record = tpm.NewHybridRecord
	}
	r, err := record(name, path, c, spec)
	if err != nil {
		return err
	}
	if err := recs.Put(r); err != nil {
		return err
	}
	var notes []string
	if r.Hybrid() {
		notes = append(notes, r.Type+", ML-KEM-768 + P-256: the ML-KEM half sealed to the TPM key")
	}
	if p := r.Protection(); p != "" {
		notes = append(notes, p)
	}
	note := ""
	if len(notes) > 0 {
		note = " (" + strings.Join(notes, "; ") + ")"
	}
	fmt.Fprintln(e.stdout, r.RecipientString())
	fmt.Fprintf(e.stderr, "ocikp: created TPM key %q in %s%s, recorded in %s\n", name, path, note, recs.Dir)
	return nil
}

// tpmRecipient returns a TPM key's recipient, if the keystore records one
// of that name.
func tpmRecipient(st *soft.Store, name string) (string, bool) {
	r, err := tpm.RecordsIn(st.Dir).Get(name)
	if err != nil {
		return "", false
	}
	return r.RecipientString(), true
}

// tpmDelete deletes a TPM key's record, and with it the key: the TPM
// keeps no copy.
func (e *env) tpmDelete(st *soft.Store, name string) error {
	recs := tpm.RecordsIn(st.Dir)
	if err := recs.Remove(name); err != nil {
		return fmt.Errorf("deleting key: %w", err)
	}
	fmt.Fprintf(e.stderr, "ocikp: deleted TPM key %q from %s; layers encrypted only to it can no longer be decrypted\n", name, recs.Dir)
	return nil
}

// tpmListed lists the keystore's TPM keys: where each lives, and what
// protects it besides the TPM.
func tpmListed(st *soft.Store) []listed {
	var out []listed
	for _, en := range tpm.RecordsIn(st.Dir).List() {
		l := listed{Name: en.Name, Type: "? (tpm)"}
		if en.Err != nil {
			l.Error = oneLine(en.Err.Error())
			out = append(out, l)
			continue
		}
		r := en.Record
		where := "tpm " + r.Device
		if p := r.Protection(); p != "" {
			where += ", " + p
		}
		l.Type = r.KeyType() + " (" + where + ")"
		l.shortType = r.KeyType() + " (tpm)" // the device and policy: --long
		l.Recipient, l.Protected, l.Created = r.RecipientString(), r.PIN || len(r.PCRs) > 0, r.Created.Format(time.RFC3339)
		out = append(out, l)
	}
	// Enrolled EKs: named by their file under the keystore, which no key
	// name can be; the recipient is the one made from the EK's PEM.
	for _, en := range tpm.EnrolmentsIn(st.Dir).List() {
		st := tpm.EKStanzaType(en.Type)
		l := listed{Name: "tpm-ek/" + en.Type, Type: st + " (enrolled)"}
		if en.Err != nil {
			l.Error = oneLine(en.Err.Error())
			out = append(out, l)
			continue
		}
		l.Type = st + " (enrolled, tpm " + en.Enrolment.Device + ")"
		l.shortType = st + " (enrolled)"
		l.Recipient, l.Created = en.Enrolment.Recipient(), en.Enrolment.Enrolled.Format(time.RFC3339)
		out = append(out, l)
	}
	return out
}

// ekTypes are the EK types of --type ecc|rsa|all.
func ekTypes(typ string) ([]string, error) {
	switch typ {
	case tpm.EKECC, tpm.EKRSA:
		return []string{typ}, nil
	case "all":
		return []string{tpm.EKECC, tpm.EKRSA}, nil
	}
	return nil, usagef("--type %.20q: want ecc, rsa or all", typ)
}

// tpmEnroll records the TPM's EK(s) in the keystore, the node's opt-in to
// layers sealed to them, and prints their public keys (PEM) for the
// fleet's inventory. An enrolment is never replaced; with --if-absent one
// that matches the device is kept, one made on another TPM refused.
func (e *env) tpmEnroll(path, typ string, ifAbsent bool) error {
	types, err := ekTypes(typ)
	if err != nil {
		return err
	}
	dev, err := filepath.Abs(tpm.Path(path, ""))
	if err != nil {
		return err
	}
	st, err := e.store()
	if err != nil {
		return err
	}
	es := tpm.EnrolmentsIn(st.Dir)
	var have []*tpm.Enrolment
	for _, t := range types {
		old, err := es.Get(t)
		switch {
		case errors.Is(err, tpm.ErrNotEnrolled):
			old = nil
		case err != nil:
			return err
		case !ifAbsent:
			return hint.Wrap(fmt.Errorf("the TPM's %s endorsement key is already enrolled in %s", t, es.Dir),
				"pass --if-absent to keep an enrolment this TPM made, or remove "+es.Path(t)+" to enrol again")
		}
		have = append(have, old)
	}
	// Every EK is read before anything is written: no half enrolment.
	var found []*tpm.Enrolment
	for _, t := range types {
		en, err := tpm.ReadEnrolment(dev, t)
		if err != nil {
			return err
		}
		found = append(found, en)
	}
	for i, en := range found {
		if old := have[i]; old != nil {
			if !old.Same(en) {
				return hint.Wrap(fmt.Errorf("%s: %w", es.Path(en.Type), tpm.ErrOtherEK),
					"the enrolment came from another machine (a copied keystore) or the TPM was replaced: remove "+es.Path(en.Type)+" and run ocikp tpm enroll again")
			}
			found[i] = old
		}
	}
	for i, en := range found {
		verb := "kept the enrolment of"
		if have[i] == nil {
			if err := es.Put(en); err != nil {
				return err
			}
			verb = "enrolled"
		}
		if _, err := e.stdout.Write(en.PublicKey().PEM()); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "ocikp: %s the TPM's %s endorsement key (fingerprint %s) from %s in %s\n", verb, en.Type, Fingerprint(en.Recipient()), dev, es.Dir)
	}
	return nil
}

// cmdTPM runs the TPM commands: "tpm ek" prints the device's endorsement
// key; "tpm enroll" records it so that layers sealed to it open here;
// "tpm recipient --ek FILE" makes a recipient for it on any machine.
func cmdTPM(e *env, args []string) error {
	const use = "ocikp tpm ek [--tpm PATH] [--type ecc|rsa] [--cert] | ocikp tpm enroll [--tpm PATH] [--type ecc|rsa|all] [--if-absent] | ocikp tpm recipient --ek FILE [--ek-roots FILE] [--pcrs LIST --pcr-values HEX,…]"
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		usage.Print(e.stdout, use, summaryOf("tpm"), nil)
		return nil
	}
	if len(args) == 0 {
		return usagef("usage: %s", use)
	}
	switch args[0] {
	case "ek":
		fs := e.flags("tpm ek")
		path := fs.String("tpm", "", "the TPM `PATH`, a character device or a swtpm unix socket (default $"+tpm.EnvTPM+", else "+tpm.DefaultPath+")")
		typ := fs.String("type", tpm.EKECC, "the endorsement key's `TYPE`: ecc (P-256) or rsa (RSA 2048), the TCG default templates")
		cert := fs.Bool("cert", false, "print the EK's certificate (PEM) from its TCG NV index instead of its public key")
		if _, err := e.parse(fs, args[1:], 0, 0, "[--tpm PATH] [--type ecc|rsa] [--cert]"); err != nil {
			return err
		}
		if *typ != tpm.EKECC && *typ != tpm.EKRSA {
			return usagef("--type %.20q: want ecc or rsa", *typ)
		}
		if *cert {
			der, err := tpm.ReadEKCert(tpm.Path(*path, ""), *typ)
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
			return err
		}
		ek, err := tpm.ReadEK(tpm.Path(*path, ""), *typ)
		if err != nil {
			return err
		}
		_, err = e.stdout.Write(ek.PEM())
		return err
	case "enroll":
		fs := e.flags("tpm enroll")
		path := fs.String("tpm", "", "the TPM `PATH`, a character device or a swtpm unix socket (default $"+tpm.EnvTPM+", else "+tpm.DefaultPath+")")
		typ := fs.String("type", "all", "the endorsement key(s) to enrol, `TYPE`: ecc (P-256), rsa (RSA 2048) or all")
		ifAbsent := fs.Bool("if-absent", false, "keep an enrolment this TPM made (print its EK again); refuse one another TPM made")
		if _, err := e.parse(fs, args[1:], 0, 0, "[--tpm PATH] [--type ecc|rsa|all] [--if-absent]"); err != nil {
			return err
		}
		return e.tpmEnroll(*path, *typ, *ifAbsent)
	case "recipient":
		fs := e.flags("tpm recipient")
		ek := addEKFlags(fs, "ek")
		if _, err := e.parse(fs, args[1:], 0, 0, "--ek FILE [--ek-roots FILE] [--pcrs LIST --pcr-values HEX,…]"); err != nil {
			return err
		}
		if *ek.file == "" {
			return usagef("tpm recipient needs --ek FILE (the PEM ocikp tpm ek prints on the device)")
		}
		return e.ekRecipient(ek)
	}
	err := usagef("unknown tpm command %.40q: %s", args[0], use)
	if h := suggest.Hint(args[0], []string{"ek", "enroll", "recipient"}); h != "" {
		return hint.Wrap(err, h)
	}
	return err
}

// parsePCRValues reads n comma-separated hex sha256 values, in the order
// parsePCRs sorted their PCRs (so --pcrs must list them in order).
func parsePCRValues(s string, n int) ([][]byte, error) {
	if s == "" && n == 0 {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	if s == "" || len(parts) != n {
		return nil, usagef("--pcr-values: want %d sha256 value(s), one per PCR of --pcrs, in increasing PCR order", n)
	}
	var out [][]byte
	for _, p := range parts {
		b, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(p), "0x"))
		if err != nil || len(b) != 32 {
			return nil, usagef("--pcr-values: %.70q is not a sha256 value (64 hex digits)", p)
		}
		out = append(out, b)
	}
	return out, nil
}

// ekFlags are the options of an EK-targeted recipient.
type ekFlags struct{ file, roots, pcrs, values *string }

func addEKFlags(fs *flag.FlagSet, name string) ekFlags {
	return ekFlags{
		file:   fs.String(name, "", "a TPM's endorsement key `FILE`: its public key (PEM, from ocikp tpm ek; ECC P-256 or RSA 2048) or its EK certificate (PEM or DER, from ocikp tpm ek --cert): print a recipient only that TPM opens"),
		roots:  fs.String("ek-roots", "", "with --"+name+" and a certificate: the TPM makers' CA certificates, PEM `FILE`, it must chain to"),
		pcrs:   fs.String("pcrs", "", "with --"+name+": open only while these sha256 PCRs hold --pcr-values (`LIST`, e.g. 7,11)"),
		values: fs.String("pcr-values", "", "with --"+name+": the PCRs' sha256 values, `HEX`,… in increasing PCR order (tpm2_pcrread sha256 on the device)"),
	}
}

// ekRecipient prints the recipient for the EK in the flags' file.
func (e *env) ekRecipient(f ekFlags) error {
	list, err := parsePCRs(*f.pcrs)
	if err != nil {
		return err
	}
	vals, err := parsePCRValues(*f.values, len(list))
	if err != nil {
		return err
	}
	data, err := readBounded(*f.file, tpm.MaxEKInput)
	if err != nil {
		return err
	}
	var roots []byte
	if *f.roots != "" {
		if roots, err = readBounded(*f.roots, tpm.MaxEKRoots); err != nil {
			return err
		}
	}
	ek, err := tpm.ParseEK(data, roots)
	if err != nil {
		return fmt.Errorf("%s: %w", *f.file, err)
	}
	r, err := tpm.NewEKRecipientFor(ek, list, vals)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, r.String())
	return nil
}

// checkTPM checks each TPM key of the keystore (doctor): the device, the
// key's SRK, that the TPM loads it, and a PCR-bound key's PCRs. No PIN is
// needed. It returns how many are usable.
func (d *doctor) checkTPM(dir string) int {
	usable := 0
	recs := tpm.RecordsIn(dir).List()
	ens := tpm.EnrolmentsIn(dir).List()
	if len(recs) > 0 || len(ens) > 0 {
		// ocikp links no TPM stack: keys, and layers for the EK, open
		// through the companion.
		path, err := tpm.FindCompanion()
		if err != nil {
			d.fail("ocikp-tpm", firstHint(err), "TPM keys and layers for this machine's EK are opened by ocikp-tpm: %v", err)
			return 0
		}
		d.ok("ocikp-tpm", "%s (opens TPM keys and layers for this machine's EK)", path)
	}
	for _, en := range recs {
		name := "key " + en.Name
		if en.Err != nil {
			d.fail(name, firstHint(en.Err), "%v", en.Err)
			continue
		}
		r := en.Record
		path := tpm.Path("", r.Device)
		if err := tpm.Check(path, r); err != nil {
			d.fail(name, firstHint(err), "%v", err)
			continue
		}
		if r.Hybrid() && !r.PIN {
			// One ZGen: the record's sealed ML-KEM half must open with
			// this TPM key, or the hybrid decrypts nothing. (With a PIN,
			// Check's load is what doctor can see.)
			k, err := r.NewKey(nil)
			if err == nil {
				k.Path = path
				_, err = r.Half.Open(r.Recipient, k)
			}
			if err != nil {
				d.fail(name, firstHint(err), "%v", err)
				continue
			}
		}
		what := "TPM key present in " + path
		if p := r.Protection(); p != "" {
			what += " (" + p + ")"
		}
		if len(r.PCRs) > 0 {
			what += "; the PCRs hold the values it is bound to"
		}
		d.ok(name, "%s", what)
		usable++
	}
	// An enrolment opens layers only on the TPM that holds its EK.
	for _, en := range ens {
		name := "enrolled " + tpm.EKStanzaType(en.Type)
		if en.Err != nil {
			d.fail(name, firstHint(en.Err), "%v", en.Err)
			continue
		}
		path := tpm.Path("", en.Enrolment.Device)
		now, err := tpm.ReadEnrolment(path, en.Type)
		if err == nil && !now.Same(en.Enrolment) {
			err = hint.Wrap(fmt.Errorf("%s: %w", path, tpm.ErrOtherEK),
				"the enrolment came from another machine (a copied keystore) or the TPM was replaced: remove "+tpm.EnrolmentsIn(dir).Path(en.Type)+" and run ocikp tpm enroll again")
		}
		if err != nil {
			d.fail(name, firstHint(err), "%v", err)
			continue
		}
		d.ok(name, "the %s endorsement key of %s (fingerprint %s): layers sealed to it open here", en.Type, path, Fingerprint(en.Enrolment.Recipient()))
		usable++
	}
	return usable
}

// readBounded reads a file the user named, refusing one over max bytes
// (an EK file, a CA bundle) before reading it whole.
func readBounded(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > max {
		return nil, fmt.Errorf("%s: more than %d bytes", path, max)
	}
	return data, nil
}
