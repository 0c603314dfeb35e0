package tpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/safefile"
	"github.com/ocikp/ocikp/keys/soft"
)

// An enrolment records a TPM's endorsement key in the keystore
// (DIR/tpm-ek/ecc.json, rsa.json): the node's opt-in to layers sealed to
// its EK. Its EK's name, recorded, tells the node's stanzas from others'
// without the device, so a layer made for another TPM costs the node no
// TPM command and no companion start (DESIGN.md §3: an image must not
// choose the work a node does).

// maxEnrolment bounds an enrolment file (an RSA modulus, a name: ~600 bytes).
const maxEnrolment = 4 << 10

// Enrolment is the keystore's record of the TPM's EK of one type.
type Enrolment struct {
	Type string `json:"type"` // EKECC or EKRSA
	// EK is the public key (P-256 point or RSA modulus), Name the TPM's
	// name of the EK (nameAlg ‖ digest of its public area), as the
	// device returned them at enrolment.
	EK       string    `json:"ek"`
	Name     string    `json:"name"`
	Device   string    `json:"device"`
	Enrolled time.Time `json:"enrolled"`

	ek     EK
	ekName []byte
}

// NewEnrolment records the EK a device returned.
func NewEnrolment(ek *EK, name []byte, device string) (*Enrolment, error) {
	en := &Enrolment{Type: ek.Type, EK: base64.StdEncoding.EncodeToString(ek.Key),
		Name: base64.StdEncoding.EncodeToString(name), Device: device,
		Enrolled: time.Now().UTC().Truncate(time.Second)}
	data, err := en.Marshal()
	if err != nil {
		return nil, err
	}
	return ParseEnrolment(data)
}

// ParseEnrolment reads an enrolment file's contents, strictly.
func ParseEnrolment(data []byte) (*Enrolment, error) {
	var w struct {
		V int `json:"v"`
		Enrolment
	}
	if err := soft.DecodeRecord(data, maxEnrolment, "TPM EK enrolment", &w); err != nil {
		return nil, err
	}
	en := w.Enrolment
	if w.V != 1 {
		return nil, fmt.Errorf("TPM EK enrolment: version %d, this ocikp reads version 1", w.V)
	}
	if en.Device != "" && (!filepath.IsAbs(en.Device) || len(en.Device) > 4096 || strings.ContainsRune(en.Device, 0)) {
		return nil, errors.New("TPM EK enrolment: the device must be an absolute path")
	}
	key, err := base64.StdEncoding.DecodeString(en.EK)
	if err != nil {
		return nil, errors.New("TPM EK enrolment: ek is not base64")
	}
	en.ek = EK{Type: en.Type, Key: key}
	if err := en.ek.check(); err != nil {
		return nil, fmt.Errorf("TPM EK enrolment: %w", err)
	}
	// A sha256 name: the algorithm (0x000b), then the digest.
	en.ekName, err = base64.StdEncoding.DecodeString(en.Name)
	if err != nil || len(en.ekName) != 2+sha256.Size || en.ekName[0] != 0 || en.ekName[1] != 0x0b {
		return nil, errors.New("TPM EK enrolment: name is not a sha256 TPM name")
	}
	return &en, nil
}

// Marshal encodes en as stored.
func (en *Enrolment) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(struct {
		V int `json:"v"`
		*Enrolment
	}{1, en}, "", "  ")
	return append(b, '\n'), err
}

// PublicKey is the enrolled EK.
func (en *Enrolment) PublicKey() *EK { return &en.ek }

// EKName is the enrolled EK's TPM name.
func (en *Enrolment) EKName() []byte { return en.ekName }

// Recipient is the recipient of the enrolled EK (no PCR policy), as
// "ocikp tpm recipient --ek" makes it from the EK's PEM.
func (en *Enrolment) Recipient() string {
	return (&EKRecipient{ek: en.ek}).String()
}

// Same reports whether en and o record the same EK.
func (en *Enrolment) Same(o *Enrolment) bool {
	return en.Type == o.Type && bytes.Equal(en.ek.Key, o.ek.Key) && bytes.Equal(en.ekName, o.ekName)
}

// Enrolments is a keystore's directory of EK enrolments, apart from key
// records so that a type ("ecc", "rsa") can never be taken for a key name.
type Enrolments struct{ Dir string }

// EnrolmentsIn returns the EK enrolments of the keystore at dir.
func EnrolmentsIn(keystore string) *Enrolments {
	return &Enrolments{Dir: filepath.Join(keystore, "tpm-ek")}
}

// Path is the file of the enrolment of type typ.
func (es *Enrolments) Path(typ string) string { return soft.RecordDir(es.Dir).Path(typ) }

// ErrNotEnrolled says the keystore has no enrolment of that type.
var ErrNotEnrolled = errors.New("no TPM endorsement key is enrolled")

// Get reads the enrolment of type typ (EKECC or EKRSA); an error wrapping
// ErrNotEnrolled if there is none.
func (es *Enrolments) Get(typ string) (*Enrolment, error) {
	if typ != EKECC && typ != EKRSA {
		return nil, fmt.Errorf("unknown endorsement key type %.10q", typ)
	}
	if err := safefile.CheckDir(es.Dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	data, err := safefile.Read(es.Path(typ), safefile.Private, maxEnrolment)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s EK: %w", typ, ErrNotEnrolled)
	}
	if err != nil {
		return nil, err
	}
	en, err := ParseEnrolment(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", es.Path(typ), err)
	}
	if en.Type != typ {
		return nil, fmt.Errorf("%s: records an EK of type %s", es.Path(typ), en.Type)
	}
	return en, nil
}

// Put records an enrolment; it never replaces one.
func (es *Enrolments) Put(en *Enrolment) error {
	data, err := en.Marshal()
	if err != nil {
		return err
	}
	return soft.RecordDir(es.Dir).PutNew(en.Type, data)
}

// EnrolmentEntry is one enrolment, or why it could not be read.
type EnrolmentEntry struct {
	Type      string
	Enrolment *Enrolment
	Err       error
}

// List returns the enrolments present (ECC, then RSA).
func (es *Enrolments) List() []EnrolmentEntry {
	var out []EnrolmentEntry
	for _, typ := range []string{EKECC, EKRSA} {
		en, err := es.Get(typ)
		if errors.Is(err, ErrNotEnrolled) {
			continue
		}
		out = append(out, EnrolmentEntry{Type: typ, Enrolment: en, Err: err})
	}
	return out
}

// Stamp is the directory's modification time (zero if absent), for caches.
func (es *Enrolments) Stamp() time.Time { return soft.RecordDir(es.Dir).Stamp() }

// Identity returns the enrolled EK as a decryption key: it matches a
// stanza by the recorded EK name, with no device; the device is asked
// only to open a matching stanza, and must hold the recorded EK.
func (en *Enrolment) Identity() backend.Key {
	return &EKIdentity{path: Path("", en.Device), typ: en.Type, ekName: en.ekName}
}

// EnrolHint is the advice for a layer no key opened, when it carries
// stanzas for a TPM's EK of a type the keystore has not enrolled: ""
// otherwise. It reads the keystore only, never the device.
func EnrolHint(keystore string, stanzas []*envelope.Stanza) string {
	want := map[string]bool{}
	for _, s := range stanzas {
		switch s.Type {
		case StanzaEK:
			want[EKECC] = true
		case StanzaEKRSA:
			want[EKRSA] = true
		}
	}
	// At most one read per type, however many stanzas the layer holds.
	for _, typ := range []string{EKECC, EKRSA} {
		if !want[typ] {
			continue
		}
		if _, err := EnrolmentsIn(keystore).Get(typ); errors.Is(err, ErrNotEnrolled) {
			return "the layer is sealed to a TPM's endorsement key, and this keystore has none enrolled: if this machine's TPM is the one, enrol it first (ocikp tpm enroll)"
		}
	}
	return ""
}

// ReadEnrolment reads the EK of type typ from the TPM at path (an
// absolute path), for the keystore to record.
func ReadEnrolment(path, typ string) (*Enrolment, error) {
	rep, err := call(&Request{Op: OpEK, Device: path, EKType: typ}, "enrolling a TPM's endorsement key")
	if err != nil {
		return nil, err
	}
	ek := &EK{Type: typ, Key: rep.EK}
	if err := ek.check(); err != nil {
		return nil, err
	}
	return NewEnrolment(ek, rep.EKName, path)
}
