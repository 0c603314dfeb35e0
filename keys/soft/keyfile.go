package soft

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/scrypt"

	"github.com/ocikp/ocikp/p256"
)

// MaxKeyFileSize bounds what ParseKeyFile reads.
const MaxKeyFileSize = 16 << 10

// scrypt cost for new passphrase-protected keys: about 0.1 s here, paid on
// every unwrap that needs the key.
const defaultLogN = 15

// ErrPassphraseNeeded says that a key is sealed and no passphrase was given.
var ErrPassphraseNeeded = errors.New("key is passphrase-protected and no passphrase was given")

// ErrBadPassphrase says that the passphrase did not open the key.
var ErrBadPassphrase = errors.New("wrong passphrase")

// KeyFile is the decoded content of a NAME.key file.
type KeyFile struct {
	Name      string
	Created   time.Time
	Recipient string // as the file holds it; see RecipientString
	// Compressed is the public key as the recipient string holds it.
	Compressed []byte
	private    []byte  // 32-byte scalar, when stored in clear
	sealed     *sealed // when passphrase-protected
}

type sealed struct {
	KDF        string `json:"kdf"`
	LogN       int    `json:"logN"`
	R          int    `json:"r"`
	P          int    `json:"p"`
	Salt       string `json:"salt"`
	Nonce      string `json:"nonce"`
	Ciphertext string `json:"ciphertext"`
}

type wireKeyFile struct {
	Format    string  `json:"format"`
	Type      string  `json:"type"`
	Name      string  `json:"name"`
	Created   string  `json:"created"`
	Recipient string  `json:"recipient"`
	Private   string  `json:"private,omitempty"`
	Encrypted *sealed `json:"encrypted,omitempty"`
}

const formatV1 = "ocikp-key-v1"

// Protected reports whether the private key is sealed under a passphrase.
func (k *KeyFile) Protected() bool { return k.sealed != nil }

// PrivateKey returns the private key, opening it with passphrase if sealed.
func (k *KeyFile) PrivateKey(passphrase []byte) (*ecdh.PrivateKey, error) {
	scalar := k.private
	if k.sealed != nil {
		if len(passphrase) == 0 {
			return nil, ErrPassphraseNeeded
		}
		var err error
		if scalar, err = k.sealed.open(passphrase, k.Recipient); err != nil {
			return nil, err
		}
	}
	priv, err := ecdh.P256().NewPrivateKey(scalar)
	if err != nil {
		return nil, errors.New("key file holds an invalid P-256 private key")
	}
	if !bytes.Equal(p256.Compress(priv.PublicKey()), k.Compressed) {
		return nil, errors.New("key file's private key does not match its recipient")
	}
	return priv, nil
}

// RecipientString is the key's recipient in the checksummed form. The
// file may hold the older form in Recipient, which stays as written (a
// sealed key is bound to it).
func (k *KeyFile) RecipientString() string { return p256.FormatCompressed(k.Compressed) }

// PublicKey decodes the key's public point.
func (k *KeyFile) PublicKey() (*ecdh.PublicKey, error) { return p256.ParsePoint(k.Compressed) }

// NewKeyFile builds a key file for priv, sealed when passphrase is non-empty.
func NewKeyFile(name string, priv *ecdh.PrivateKey, passphrase []byte) (*KeyFile, error) {
	k := &KeyFile{
		Name:       name,
		Created:    time.Now().UTC().Truncate(time.Second),
		Compressed: p256.Compress(priv.PublicKey()),
		Recipient:  p256.Format(priv.PublicKey()),
	}
	if len(passphrase) == 0 {
		k.private = priv.Bytes()
		return k, nil
	}
	s, err := seal(priv.Bytes(), passphrase, k.Recipient, defaultLogN)
	if err != nil {
		return nil, err
	}
	k.sealed = s
	return k, nil
}

// Marshal encodes the key file.
func (k *KeyFile) Marshal() ([]byte, error) {
	w := wireKeyFile{
		Format: formatV1, Type: "p256", Name: k.Name,
		Created: k.Created.Format(time.RFC3339), Recipient: k.Recipient,
		Encrypted: k.sealed,
	}
	if k.private != nil {
		w.Private = base64.StdEncoding.EncodeToString(k.private)
	}
	b, err := json.MarshalIndent(&w, "", "  ")
	return append(b, '\n'), err
}

// ParseKeyFile decodes a key file strictly. Its errors never quote the file.
// Like protocol.DecodeRequest it reads through raw-message maps: every
// unwrap lists the keystore, and struct decoding's reflection is a visible
// part of each exec's start-up.
func ParseKeyFile(data []byte) (*KeyFile, error) {
	bad := func(what string) error { return fmt.Errorf("not an ocikp key file: %s", what) }
	if len(data) > MaxKeyFileSize {
		return nil, bad("too large")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return nil, bad("invalid JSON")
	}
	var w wireKeyFile
	for key, dst := range map[string]*string{
		"format": &w.Format, "type": &w.Type, "name": &w.Name, "created": &w.Created,
		"recipient": &w.Recipient, "private": &w.Private,
	} {
		if raw, ok := m[key]; ok && json.Unmarshal(raw, dst) != nil {
			return nil, bad(fmt.Sprintf("%q is not a string", key))
		}
	}
	if raw, ok := m["encrypted"]; ok && string(raw) != "null" {
		var em map[string]json.RawMessage
		if json.Unmarshal(raw, &em) != nil || em == nil {
			return nil, bad(`"encrypted" is not an object`)
		}
		w.Encrypted = &sealed{}
		for key, dst := range map[string]any{
			"kdf": &w.Encrypted.KDF, "logN": &w.Encrypted.LogN, "r": &w.Encrypted.R, "p": &w.Encrypted.P,
			"salt": &w.Encrypted.Salt, "nonce": &w.Encrypted.Nonce, "ciphertext": &w.Encrypted.Ciphertext,
		} {
			if json.Unmarshal(em[key], dst) != nil {
				return nil, bad(fmt.Sprintf("encrypted.%s is missing or of the wrong type", key))
			}
		}
	}
	if w.Format != formatV1 {
		return nil, bad(`"format" is not "` + formatV1 + `"`)
	}
	if w.Type != "p256" {
		return nil, bad(`unsupported key type (want "p256")`)
	}
	if !ValidName(w.Name) {
		return nil, bad("invalid name")
	}
	comp, err := p256.ParseCompressed(w.Recipient)
	if err != nil {
		return nil, bad("invalid recipient")
	}
	k := &KeyFile{Name: w.Name, Recipient: w.Recipient, Compressed: comp}
	if w.Created != "" {
		if k.Created, err = time.Parse(time.RFC3339, w.Created); err != nil {
			return nil, bad("invalid creation time")
		}
	}
	switch {
	case w.Private != "" && w.Encrypted == nil:
		k.private, err = base64.StdEncoding.Strict().DecodeString(w.Private)
		if err != nil || len(k.private) != 32 {
			return nil, bad("private key is not 32 bytes of base64")
		}
		// That it matches the recipient is checked when it is used
		// (PrivateKey): listing a keystore costs no scalar multiplications.
	case w.Private == "" && w.Encrypted != nil:
		if err := w.Encrypted.check(); err != nil {
			return nil, bad(err.Error())
		}
		k.sealed = w.Encrypted
	default:
		return nil, bad(`need exactly one of "private" and "encrypted"`)
	}
	return k, nil
}

func seal(scalar, passphrase []byte, recipient string, logN int) (*sealed, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	s := &sealed{KDF: "scrypt", LogN: logN, R: 8, P: 1, Salt: base64.StdEncoding.EncodeToString(salt)}
	g, err := s.aead(passphrase)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize())
	rand.Read(nonce)
	s.Nonce = base64.StdEncoding.EncodeToString(nonce)
	s.Ciphertext = base64.StdEncoding.EncodeToString(g.Seal(nil, nonce, scalar, []byte(recipient)))
	return s, nil
}

// Bounds on the scrypt parameters a key file may ask for: its memory,
// 128·r·N bytes, at most 1 GiB, and its work, N·r·p, at most 2^23 (32
// times the default's, a few seconds): a key file must not be able to
// make an unwrap exhaust the machine.
const (
	MaxScryptMemory = 1 << 30
	MaxScryptWork   = 1 << 23
)

func (s *sealed) check() error {
	if s.KDF != "scrypt" || s.LogN < 10 || s.LogN > 22 || s.R < 1 || s.R > 32 || s.P < 1 || s.P > 16 {
		return errors.New("unsupported passphrase parameters")
	}
	if n := 1 << s.LogN; 128*s.R*n > MaxScryptMemory || n*s.R*s.P > MaxScryptWork {
		return fmt.Errorf("passphrase parameters ask for %d MiB and %d units of scrypt work, over the limits of %d MiB and %d",
			128*s.R*n>>20, n*s.R*s.P, MaxScryptMemory>>20, MaxScryptWork)
	}
	salt, err1 := base64.StdEncoding.Strict().DecodeString(s.Salt)
	nonce, err2 := base64.StdEncoding.Strict().DecodeString(s.Nonce)
	ct, err3 := base64.StdEncoding.Strict().DecodeString(s.Ciphertext)
	if err1 != nil || err2 != nil || err3 != nil || len(salt) < 16 || len(nonce) != 12 || len(ct) != 32+16 {
		return errors.New("malformed sealed private key")
	}
	return nil
}

func (s *sealed) aead(passphrase []byte) (cipher.AEAD, error) {
	salt, err := base64.StdEncoding.Strict().DecodeString(s.Salt)
	if err != nil {
		return nil, err
	}
	key, err := scrypt.Key(passphrase, salt, 1<<s.LogN, s.R, s.P, 32)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func (s *sealed) open(passphrase []byte, recipient string) ([]byte, error) {
	g, err := s.aead(passphrase)
	if err != nil {
		return nil, err
	}
	nonce, _ := base64.StdEncoding.Strict().DecodeString(s.Nonce)
	ct, _ := base64.StdEncoding.Strict().DecodeString(s.Ciphertext)
	out, err := g.Open(nil, nonce, ct, []byte(recipient))
	if err != nil {
		return nil, ErrBadPassphrase
	}
	return out, nil
}
