package envelope

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/ocikp/ocikp/internal/jsonwalk"
	"github.com/ocikp/ocikp/internal/safetext"
)

// Version is the envelope format this package writes and reads.
const Version = 1

// Limits on what Parse accepts; far above any real use.
const (
	MaxBlobSize   = 512 << 10
	MaxRecipients = 128
	maxField      = 8 << 10 // one stanza field, decoded
	FileKeySize   = 32
	nonceSize     = 12
)

// StanzaTag is the 4-byte tag of a stanza of type typ, as the public-key
// stanza types compute it: HKDF-Extract(SHA-256, salt = "ocikp/v1 TYPE tag",
// enc ‖ the recipient's public key)[:4]. The key holder recomputes it without
// a private-key operation; an observer who does not know the public key
// cannot link two layers to one key.
func StanzaTag(typ string, enc, pub []byte) []byte {
	// HKDF-Extract is HMAC(salt, secret): written in two parts, the 2 KB of
	// a post-quantum enc ‖ public key is hashed without being copied.
	h := hmac.New(sha256.New, []byte("ocikp/v1 "+typ+" tag"))
	h.Write(enc)
	h.Write(pub)
	return h.Sum(make([]byte, 0, sha256.Size))[:4]
}

const (
	payloadInfo = "ocikp/v1 payload"
	headerInfo  = "ocikp/v1 header"
	payloadAD   = "ocikp/v1"
)

// Errors that callers make decisions on.
var (
	// ErrIncorrectIdentity is returned by Identity.Unwrap for a stanza that is
	// not for it, so that the next identity is tried.
	ErrIncorrectIdentity = errors.New("incorrect identity for recipient stanza")
	// ErrUnsupportedVersion is a well-formed blob of a version this build does not read.
	ErrUnsupportedVersion = errors.New("unsupported envelope version")
	// ErrMalformed is a blob that cannot be parsed.
	ErrMalformed = errors.New("malformed ocikp envelope")
	// ErrNotEnvelope is a blob that is not an ocikp envelope of any version
	// (no "v" key): perhaps a legacy format.
	ErrNotEnvelope = errors.New("not an ocikp envelope")
	// ErrTampered is a blob whose file key was recovered but which fails authentication.
	ErrTampered = errors.New("envelope failed authentication (corrupted or tampered)")
)

// Stanza is one recipient's wrapping of the file key.
type Stanza struct {
	Type string // recipient type, e.g. "p256", "gcpkms"
	Tag  []byte // optional short hint an identity recomputes to skip foreign stanzas
	KID  string // optional public key identifier (a KMS key URL, for example)
	Enc  []byte // optional encapsulated key (HPKE enc)
	Key  []byte // the wrapped file key
}

// Recipient wraps a file key for one destination.
type Recipient interface {
	Wrap(fileKey []byte) (*Stanza, error)
}

// Identity unwraps a stanza it recognises, or returns an error wrapping
// ErrIncorrectIdentity for one that is not for it.
type Identity interface {
	Unwrap(s *Stanza) (fileKey []byte, err error)
}

// Envelope is a parsed blob.
type Envelope struct {
	Recipients []*Stanza
	Payload    []byte
	MAC        []byte
}

// MaxSecretSize is the largest secret an envelope holds: Parse bounds the
// payload's base64 to maxField characters.
const MaxSecretSize = maxField/4*3 - nonceSize - 16

// Seal encrypts secret for every recipient and returns the blob. It
// refuses what Parse would refuse, so no layer is written that cannot be
// read back.
func Seal(secret []byte, recipients ...Recipient) ([]byte, error) {
	if len(recipients) == 0 {
		return nil, errors.New("no recipients")
	}
	if len(secret) > MaxSecretSize {
		return nil, fmt.Errorf("the secret to wrap is %d bytes; an ocikp envelope holds at most %d", len(secret), MaxSecretSize)
	}
	if len(recipients) > MaxRecipients {
		return nil, fmt.Errorf("too many recipients (%d, at most %d)", len(recipients), MaxRecipients)
	}
	fileKey := make([]byte, FileKeySize)
	rand.Read(fileKey)
	e := &Envelope{}
	for _, r := range recipients {
		s, err := r.Wrap(fileKey)
		if err != nil {
			return nil, err
		}
		e.Recipients = append(e.Recipients, s)
	}
	if err := e.seal(fileKey, secret); err != nil {
		return nil, err
	}
	return e.checkedMarshal()
}

// checkedMarshal marshals e and parses the result as a reader would: a
// stanza over the limits (a KMS key id longer than a field holds, too
// many recipients) fails here, at wrap time.
func (e *Envelope) checkedMarshal() ([]byte, error) {
	blob, err := e.Marshal()
	if err != nil {
		return nil, err
	}
	if _, err := Parse(blob); err != nil {
		return nil, fmt.Errorf("the envelope would not be readable: %w", err)
	}
	return blob, nil
}

// Reseal replaces the recipient list of e, keeping its payload, given the
// file key recovered by Open: the basis of rewrap.
func (e *Envelope) Reseal(fileKey []byte, recipients ...Recipient) error {
	if len(recipients) == 0 || len(recipients) > MaxRecipients {
		return fmt.Errorf("need 1 to %d recipients, got %d", MaxRecipients, len(recipients))
	}
	var stanzas []*Stanza
	for _, r := range recipients {
		s, err := r.Wrap(fileKey)
		if err != nil {
			return err
		}
		stanzas = append(stanzas, s)
	}
	old := e.Recipients
	e.Recipients = stanzas
	e.MAC = headerMAC(fileKey, e.Recipients)
	if _, err := e.checkedMarshal(); err != nil {
		e.Recipients = old
		e.MAC = headerMAC(fileKey, old)
		return err
	}
	return nil
}

func (e *Envelope) seal(fileKey, secret []byte) error {
	aead, err := payloadAEAD(fileKey)
	if err != nil {
		return err
	}
	nonce := make([]byte, nonceSize, nonceSize+len(secret)+aead.Overhead())
	rand.Read(nonce)
	e.Payload = aead.Seal(nonce, nonce, secret, []byte(payloadAD))
	e.MAC = headerMAC(fileKey, e.Recipients)
	return nil
}

func payloadAEAD(fileKey []byte) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, fileKey, nil, payloadInfo, 32)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// headerBytes is the MAC input: a label, then every stanza field with a
// 4-byte big-endian length prefix, in order.
func headerBytes(stanzas []*Stanza) []byte {
	var b bytes.Buffer
	b.WriteString("ocikp/v1 header\n")
	put := func(p []byte) {
		b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(p))))
		b.Write(p)
	}
	put(binary.BigEndian.AppendUint32(nil, uint32(len(stanzas))))
	for _, s := range stanzas {
		put([]byte(s.Type))
		put(s.Tag)
		put([]byte(s.KID))
		put(s.Enc)
		put(s.Key)
	}
	return b.Bytes()
}

func headerMAC(fileKey []byte, stanzas []*Stanza) []byte {
	k, _ := hkdf.Key(sha256.New, fileKey, nil, headerInfo, 32)
	m := hmac.New(sha256.New, k)
	m.Write(headerBytes(stanzas))
	return m.Sum(nil)
}

// UnwrapFileKey finds a stanza that one of ids opens and returns the file
// key, checked against the header MAC. Without a match it returns a
// *NoIdentityError.
func (e *Envelope) UnwrapFileKey(ids ...Identity) ([]byte, error) {
	fk, _, err := e.UnwrapStanza(ids...)
	return fk, err
}

// UnwrapStanza is UnwrapFileKey that also returns the stanza that opened.
func (e *Envelope) UnwrapStanza(ids ...Identity) ([]byte, *Stanza, error) {
	var failures []error
	for i, s := range e.Recipients {
		for _, id := range ids {
			fk, err := id.Unwrap(s)
			if errors.Is(err, ErrIncorrectIdentity) {
				continue
			}
			if err != nil {
				failures = append(failures, &StanzaError{Index: i + 1, Err: err})
				continue
			}
			if len(fk) != FileKeySize {
				failures = append(failures, &StanzaError{Index: i + 1, Err: fmt.Errorf("%s stanza yielded a %d-byte file key", s.Type, len(fk))})
				continue
			}
			if !hmac.Equal(headerMAC(fk, e.Recipients), e.MAC) {
				return nil, nil, ErrTampered
			}
			return fk, s, nil
		}
	}
	return nil, nil, &NoIdentityError{Stanzas: e.Recipients, Failures: failures}
}

// Open returns the secret sealed in e for any one of ids.
func (e *Envelope) Open(ids ...Identity) ([]byte, error) {
	fk, err := e.UnwrapFileKey(ids...)
	if err != nil {
		return nil, err
	}
	return e.OpenPayload(fk)
}

// OpenPayload decrypts the payload with a file key from UnwrapFileKey.
func (e *Envelope) OpenPayload(fileKey []byte) ([]byte, error) {
	aead, err := payloadAEAD(fileKey)
	if err != nil {
		return nil, err
	}
	if len(e.Payload) < nonceSize+aead.Overhead() {
		return nil, ErrTampered
	}
	out, err := aead.Open(nil, e.Payload[:nonceSize], e.Payload[nonceSize:], []byte(payloadAD))
	if err != nil {
		return nil, ErrTampered
	}
	return out, nil
}

// StanzaError is an identity's failure on one stanza (a refused KMS
// address, a locked key), numbered from 1 as the blob lists them.
type StanzaError struct {
	Index int
	Err   error
}

func (e *StanzaError) Error() string { return fmt.Sprintf("stanza %d: %v", e.Index, e.Err) }
func (e *StanzaError) Unwrap() error { return e.Err }

// NoIdentityError says that none of the identities opened any stanza. It
// lists the stanzas' public hints, never key material.
type NoIdentityError struct {
	Stanzas  []*Stanza
	Failures []error // errors other than "not mine", e.g. a locked key
}

func (e *NoIdentityError) Error() string {
	msg := fmt.Sprintf("no key can decrypt this layer; it was encrypted for %s", Describe(e.Stanzas))
	if n := len(e.Failures); n > 0 {
		shown := e.Failures[:min(n, maxShown)]
		msg += fmt.Sprintf(" (and %v", errors.Join(shown...))
		if n > len(shown) {
			msg += fmt.Sprintf("; %d more failures", n-len(shown))
		}
		msg += ")"
	}
	return msg
}

// maxShown bounds the stanzas and failures an error lists: a layer may
// hold MaxRecipients stanzas, and one line should stay readable.
const maxShown = 8

func (e *NoIdentityError) Unwrap() []error { return e.Failures }

// Describe lists stanzas by their public hints, e.g.
// "2 recipients: p256 tag 1a2b3c4d, gcpkms projects/p/…".
func Describe(stanzas []*Stanza) string {
	var b bytes.Buffer
	if len(stanzas) == 1 {
		b.WriteString("1 recipient: ")
	} else {
		fmt.Fprintf(&b, "%d recipients: ", len(stanzas))
	}
	for i, s := range stanzas {
		if i == maxShown {
			fmt.Fprintf(&b, " and %d more", len(stanzas)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s.Hint())
	}
	return b.String()
}

// Hint is the stanza's public description: type plus key id or tag. Type
// and key id come from the layer, so they are shown as tokens (quoted and
// escaped unless plain) and bounded.
func (s *Stanza) Hint() string {
	typ := safetext.Token(s.Type, 40)
	switch {
	case s.KID != "":
		return typ + " " + safetext.Token(s.KID, 200)
	case len(s.Tag) > 0:
		return fmt.Sprintf("%s tag %x", typ, s.Tag)
	default:
		return typ + " (no hint)"
	}
}

var b64 = base64.StdEncoding.Strict()

// Marshal returns the blob in its one canonical encoding: compact JSON, keys
// in the order v, recipients, payload, mac and, in a stanza, type, tag, kid,
// enc, key; optional empty fields omitted; strings escaped as jsonString
// does. Written by hand: encoding/json's struct reflection is a visible
// part of the exec provider's start-up.
func (e *Envelope) Marshal() ([]byte, error) {
	b := make([]byte, 0, 256+len(e.Recipients)*192+len(e.Payload)*4/3)
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, Version, 10)
	b = append(b, `,"recipients":[`...)
	for i, s := range e.Recipients {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":`...)
		b = jsonString(b, s.Type)
		if len(s.Tag) > 0 {
			b = append(b, `,"tag":"`...)
			b = append(b64.AppendEncode(b, s.Tag), '"')
		}
		if s.KID != "" {
			b = append(b, `,"kid":`...)
			b = jsonString(b, s.KID)
		}
		if len(s.Enc) > 0 {
			b = append(b, `,"enc":"`...)
			b = append(b64.AppendEncode(b, s.Enc), '"')
		}
		b = append(b, `,"key":"`...)
		b = append(b64.AppendEncode(b, s.Key), `"}`...)
	}
	b = append(b, `],"payload":"`...)
	b = b64.AppendEncode(b, e.Payload)
	b = append(b, `","mac":"`...)
	b = b64.AppendEncode(b, e.MAC)
	return append(b, `"}`...), nil
}

// jsonString appends s as a JSON string: '"' and '\\' backslash-escaped,
// control characters as \u00XX, everything else (valid UTF-8) as is.
func jsonString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// Parse decodes a blob strictly: compact JSON, exact keys in their order, no
// unknown fields, canonical base64 and escapes, bounded sizes; so only what
// Marshal writes is read, one encoding per blob. Errors never quote the blob.
//
// The blob is walked once in its canonical layout (internal/jsonwalk), each
// base64 value decoded straight from it. A blob that does not fit is looked
// at again, without keeping anything, to say what it is: not an envelope at
// all (invalid JSON, or an object without "v": a legacy format is tried
// next), another version, or a malformed envelope.
func Parse(blob []byte) (*Envelope, error) {
	if len(blob) > MaxBlobSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(blob), MaxBlobSize)
	}
	e, err := parseCanonical(blob)
	if err != nil {
		return nil, classify(blob, err)
	}
	return e, nil
}

// errNotCanonical is any departure from Marshal's layout. (Not built
// with fmt.Errorf: a package-level fmt call runs at every process start.)
var errNotCanonical error = malformedError("not in canonical form (compact JSON, fixed key order; see docs/format.md)")

// malformedError is an ErrMalformed with a fixed detail.
type malformedError string

func (e malformedError) Error() string { return ErrMalformed.Error() + ": " + string(e) }
func (e malformedError) Unwrap() error { return ErrMalformed }

func parseCanonical(blob []byte) (*Envelope, error) {
	d := jsonwalk.New(blob)
	d.Compact, d.NoEscapes = true, true
	if !d.Lit(`{"v":1,"recipients":[`) {
		return nil, errNotCanonical
	}
	if d.Lit("]") {
		return nil, fmt.Errorf("%w: \"recipients\" must be a non-empty array", ErrMalformed)
	}
	e := &Envelope{}
	for {
		if len(e.Recipients) == MaxRecipients {
			return nil, fmt.Errorf("%w: more than %d recipients", ErrMalformed, MaxRecipients)
		}
		s, err := parseStanza(d, blob)
		if err != nil {
			return nil, fmt.Errorf("recipient %d: %w", len(e.Recipients)+1, err)
		}
		e.Recipients = append(e.Recipients, s)
		if !d.Lit(",") {
			break
		}
	}
	var err error
	if !d.Lit(`],"payload":`) {
		return nil, errNotCanonical
	}
	if e.Payload, err = field(d, "payload"); err != nil {
		return nil, err
	}
	if !d.Lit(`,"mac":`) {
		return nil, errNotCanonical
	}
	if e.MAC, err = field(d, "mac"); err != nil {
		return nil, err
	}
	if len(e.MAC) != sha256.Size {
		return nil, fmt.Errorf("%w: \"mac\" is not %d bytes", ErrMalformed, sha256.Size)
	}
	if !d.Lit("}") || d.End() != nil {
		return nil, errNotCanonical
	}
	return e, nil
}

func parseStanza(d *jsonwalk.Decoder, blob []byte) (*Stanza, error) {
	s := &Stanza{}
	var err error
	if !d.Lit(`{"type":`) {
		return nil, errNotCanonical
	}
	if s.Type, err = str(d, blob, "type"); err != nil {
		return nil, err
	}
	if d.Lit(`,"tag":`) {
		if s.Tag, err = field(d, "tag"); err != nil {
			return nil, err
		}
	}
	if d.Lit(`,"kid":`) {
		if s.KID, err = str(d, blob, "kid"); err != nil {
			return nil, err
		}
	}
	if d.Lit(`,"enc":`) {
		if s.Enc, err = field(d, "enc"); err != nil {
			return nil, err
		}
	}
	if !d.Lit(`,"key":`) {
		return nil, fmt.Errorf("%w: missing \"key\"", ErrMalformed)
	}
	if s.Key, err = field(d, "key"); err != nil {
		return nil, err
	}
	if !d.Lit("}") {
		return nil, errNotCanonical
	}
	return s, nil
}

// str reads a non-empty string of at most maxField bytes, escaped as
// jsonString escapes it.
func str(d *jsonwalk.Decoder, blob []byte, key string) (string, error) {
	start := d.Offset()
	// An escape is at most 6 bytes (\u00XX): the bound is on the value.
	v, err := d.String(6 * maxField)
	if err != nil || len(v) == 0 || len(v) > maxField {
		return "", fmt.Errorf("%w: %q must be a non-empty string", ErrMalformed, key)
	}
	raw := blob[start:d.Offset()]
	for _, c := range raw[1 : len(raw)-1] {
		if c < 0x20 || c > 0x7e || c == '\\' {
			// Escapes or UTF-8: canonical only as jsonString writes it.
			if !bytes.Equal(jsonString(nil, string(v)), raw) {
				return "", errNotCanonical
			}
			break
		}
	}
	return string(v), nil
}

// field reads a non-empty base64 value of at most maxField characters.
func field(d *jsonwalk.Decoder, key string) ([]byte, error) {
	b, err := d.Base64(b64, maxField)
	switch {
	case errors.Is(err, jsonwalk.ErrTooLong):
		return nil, fmt.Errorf("%w: %q too long", ErrMalformed, key)
	case errors.Is(err, jsonwalk.ErrBase64), errors.Is(err, jsonwalk.ErrEscape):
		return nil, fmt.Errorf("%w: %q is not canonical base64", ErrMalformed, key)
	case err != nil:
		return nil, fmt.Errorf("%w: %q must be a non-empty string", ErrMalformed, key)
	case len(b) == 0:
		return nil, fmt.Errorf("%w: %q is empty", ErrMalformed, key)
	}
	return b, nil
}

// classify says why a blob that is not a canonical envelope was refused:
// ErrNotEnvelope for invalid JSON or an object without "v", an unknown
// field, a "v" that is not an integer, another version, or else the
// canonical walk's own error. Nothing is kept but the value of "v".
func classify(blob []byte, walkErr error) error {
	d := jsonwalk.New(blob)
	var v []byte
	unknown := false
	err := d.Object(len(blob), func(key []byte) error {
		start := d.Offset()
		if err := d.Skip(); err != nil {
			return err
		}
		switch string(key) {
		case "v":
			v = blob[start:d.Offset()] // the last one, as encoding/json keeps it
		case "recipients", "payload", "mac":
		default:
			unknown = true
		}
		return nil
	})
	if err != nil || d.End() != nil || v == nil {
		return ErrNotEnvelope
	}
	if unknown {
		return fmt.Errorf("%w: unknown field", ErrMalformed)
	}
	var version int
	if json.Unmarshal(v, &version) != nil {
		return fmt.Errorf("%w: \"v\" is not an integer", ErrMalformed)
	}
	if version != Version {
		return fmt.Errorf("%w: this layer uses envelope version %d; this ocikp reads version %d", ErrUnsupportedVersion, version, Version)
	}
	return walkErr
}
