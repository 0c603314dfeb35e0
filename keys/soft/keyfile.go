package soft

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/scrypt"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/jsonstr"
	"github.com/ocikp/ocikp/p256"
	"github.com/ocikp/ocikp/pq"
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
	Name string
	// Type is the key's type: "p256", or a post-quantum hybrid
	// ("mlkem768x25519", "mlkem768p256"; see package pq).
	Type      string
	Created   time.Time
	Recipient string // as the file holds it; see RecipientString
	// Public is the public key as the recipient string holds it: a
	// compressed point for p256, the hybrid KEM's public key otherwise.
	Public  []byte
	private []byte  // 32 bytes (a P-256 scalar or a KEM seed), when stored in clear
	sealed  *Sealed // when passphrase-protected
}

// TypeP256 is the type of P-256 keys.
const TypeP256 = "p256"

// Types lists the key types a key file may hold.
func Types() []string { return append([]string{TypeP256}, pq.Types()...) }

// Sealed is a secret sealed under a passphrase (scrypt, AES-256-GCM), as
// key files store it; the additional data binds it to its public key.
type Sealed struct {
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
	Public    string  `json:"public,omitempty"` // post-quantum keys: base64 of the public key
	Private   string  `json:"private,omitempty"`
	Encrypted *Sealed `json:"encrypted,omitempty"`
}

const formatV1 = "ocikp-key-v1"

// Protected reports whether the private key is sealed under a passphrase.
func (k *KeyFile) Protected() bool { return k.sealed != nil }

// secret returns the private bytes, opening them with passphrase if
// sealed; waiting for a derivation slot ends with ctx.
func (k *KeyFile) secret(ctx context.Context, passphrase []byte) ([]byte, error) {
	if k.sealed == nil {
		return k.private, nil
	}
	if len(passphrase) == 0 {
		return nil, ErrPassphraseNeeded
	}
	return k.sealed.OpenContext(ctx, passphrase, k.Recipient)
}

// PrivateKey returns a P-256 key's private key, opening it with passphrase
// if sealed.
func (k *KeyFile) PrivateKey(passphrase []byte) (*ecdh.PrivateKey, error) {
	if k.Type != TypeP256 {
		return nil, fmt.Errorf("key %q is a %s key, not a P-256 key", k.Name, k.Type)
	}
	scalar, err := k.secret(context.Background(), passphrase)
	if err != nil {
		return nil, err
	}
	return k.p256From(scalar)
}

func (k *KeyFile) p256From(scalar []byte) (*ecdh.PrivateKey, error) {
	priv, err := ecdh.P256().NewPrivateKey(scalar)
	if err != nil {
		return nil, errors.New("key file holds an invalid P-256 private key")
	}
	if !bytes.Equal(p256.Compress(priv.PublicKey()), k.Public) {
		return nil, errors.New("key file's private key does not match its recipient")
	}
	return priv, nil
}

// HybridKey returns a post-quantum key's private key, opening it with
// passphrase if sealed.
func (k *KeyFile) HybridKey(passphrase []byte) (pq.Private, error) {
	kind := pq.KindOf(k.Type)
	if kind == nil {
		return pq.Private{}, fmt.Errorf("key %q is a %s key, not a post-quantum one", k.Name, k.Type)
	}
	seed, err := k.secret(context.Background(), passphrase)
	if err != nil {
		return pq.Private{}, err
	}
	return k.hybridFrom(kind, seed)
}

func (k *KeyFile) hybridFrom(kind *pq.Kind, seed []byte) (pq.Private, error) {
	priv, err := kind.PrivateKey(seed)
	if err != nil {
		return pq.Private{}, errors.New("key file holds an invalid " + k.Type + " private key")
	}
	return pq.Private{Key: priv}, nil
}

// RecipientString is the key's recipient in the checksummed form. A P-256
// key file may hold the older form in Recipient, which stays as written (a
// sealed key is bound to it).
func (k *KeyFile) RecipientString() string {
	if kind := pq.KindOf(k.Type); kind != nil {
		return kind.Format(k.Public)
	}
	return p256.FormatCompressed(k.Public)
}

// PublicKey decodes a P-256 key's public point.
func (k *KeyFile) PublicKey() (*ecdh.PublicKey, error) {
	if k.Type != TypeP256 {
		return nil, fmt.Errorf("key %q is a %s key, not a P-256 key", k.Name, k.Type)
	}
	return p256.ParsePoint(k.Public)
}

// NewRecipient returns the key's recipient.
func (k *KeyFile) NewRecipient() (envelope.Recipient, error) {
	if kind := pq.KindOf(k.Type); kind != nil {
		return kind.NewRecipient(k.Public)
	}
	pub, err := k.PublicKey()
	if err != nil {
		return nil, err
	}
	return p256.NewRecipient(pub)
}

// KeyError names the key a private-key error is about, and says what to
// set when the key needed a passphrase that no one gave.
func KeyError(name string, err error) error {
	err = fmt.Errorf("key %q: %w", name, err)
	if errors.Is(err, ErrPassphraseNeeded) {
		err = hint.Wrap(err, "set OCIKP_PASSPHRASE_FILE (or OCIKP_PASSPHRASE) for unattended decryption")
	}
	return err
}

// Identity returns the key as a decryption key; the private key is read,
// asking passphrase for a sealed one, only when a stanza matches. Through
// UnwrapContext, waiting to open a sealed key ends with the caller's
// context.
func (k *KeyFile) Identity(passphrase func(keyName string) ([]byte, error)) backend.Key {
	o := &opener{k: k, passphrase: passphrase}
	if kind := pq.KindOf(k.Type); kind != nil {
		return &pqIdentity{kind.NewIdentity(k.Name, k.Public, func() (pq.Private, error) {
			seed, err := o.open(context.Background())
			if err != nil {
				return pq.Private{}, err
			}
			priv, err := k.hybridFrom(kind, seed)
			if err != nil {
				return pq.Private{}, KeyError(k.Name, err)
			}
			return priv, nil
		}), o}
	}
	return &p256Identity{p256.NewIdentity(k.Name, k.Public, func() (ecdh.KeyExchanger, error) {
		scalar, err := o.open(context.Background())
		if err != nil {
			return nil, err
		}
		priv, err := k.p256From(scalar)
		if err != nil {
			return nil, KeyError(k.Name, err)
		}
		return priv, nil
	}), o}
}

// opener opens a key file's private bytes for its identity, once: the
// identity keeps the key it builds from them, so a sealed key is derived
// once per identity, not per stanza.
type opener struct {
	k          *KeyFile
	passphrase func(keyName string) ([]byte, error)
	mu         sync.Mutex
	secret     []byte
}

func (o *opener) open(ctx context.Context) ([]byte, error) {
	if !o.k.Protected() {
		return o.k.private, nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.secret != nil {
		return o.secret, nil
	}
	var pass []byte
	if o.passphrase != nil {
		var err error
		if pass, err = o.passphrase(o.k.Name); err != nil {
			return nil, err
		}
	}
	secret, err := o.k.secret(ctx, pass)
	if err != nil {
		return nil, KeyError(o.k.Name, err)
	}
	o.secret = secret
	return secret, nil
}

// unwrapContext opens a sealed key within ctx before unwrap needs it.
func (o *opener) unwrapContext(ctx context.Context, matches bool, unwrap func() ([]byte, error)) ([]byte, error) {
	if matches && o.k.Protected() {
		if _, err := o.open(ctx); err != nil {
			return nil, err
		}
	}
	return unwrap()
}

// p256Identity and pqIdentity are the identities of key files, with
// UnwrapContext.
type p256Identity struct {
	*p256.Identity
	o *opener
}

type pqIdentity struct {
	*pq.Identity
	o *opener
}

// UnwrapContext is Unwrap whose wait to open a sealed key ends with ctx.
func (id *p256Identity) UnwrapContext(ctx context.Context, s *envelope.Stanza) ([]byte, error) {
	return id.o.unwrapContext(ctx, id.Matches(s), func() ([]byte, error) { return id.Unwrap(s) })
}

// UnwrapContext is Unwrap whose wait to open a sealed key ends with ctx.
func (id *pqIdentity) UnwrapContext(ctx context.Context, s *envelope.Stanza) ([]byte, error) {
	return id.o.unwrapContext(ctx, id.Matches(s), func() ([]byte, error) { return id.Unwrap(s) })
}

// NewKeyFile builds a key file for a P-256 key, sealed when passphrase is
// non-empty.
func NewKeyFile(name string, priv *ecdh.PrivateKey, passphrase []byte) (*KeyFile, error) {
	return newKeyFile(&KeyFile{
		Name:      name,
		Type:      TypeP256,
		Public:    p256.Compress(priv.PublicKey()),
		Recipient: p256.Format(priv.PublicKey()),
	}, priv.Bytes(), passphrase)
}

// NewHybridKeyFile builds a key file for a post-quantum key given by its
// seed, sealed when passphrase is non-empty.
func NewHybridKeyFile(name string, kind *pq.Kind, seed, passphrase []byte) (*KeyFile, error) {
	priv, err := kind.PrivateKey(seed)
	if err != nil {
		return nil, err
	}
	pub := priv.PublicKey().Bytes()
	return newKeyFile(&KeyFile{Name: name, Type: kind.Type, Public: pub, Recipient: kind.Format(pub)}, seed, passphrase)
}

func newKeyFile(k *KeyFile, secret, passphrase []byte) (*KeyFile, error) {
	k.Created = time.Now().UTC().Truncate(time.Second)
	if len(passphrase) == 0 {
		k.private = secret
		return k, nil
	}
	s, err := Seal(secret, passphrase, k.Recipient)
	if err != nil {
		return nil, err
	}
	k.sealed = s
	return k, nil
}

// Marshal encodes the key file.
func (k *KeyFile) Marshal() ([]byte, error) {
	w := wireKeyFile{
		Format: formatV1, Type: k.Type, Name: k.Name,
		Created: k.Created.Format(time.RFC3339), Recipient: k.Recipient,
		Encrypted: k.sealed,
	}
	if k.private != nil {
		w.Private = base64.StdEncoding.EncodeToString(k.private)
	}
	if k.Type != TypeP256 {
		w.Public = base64.StdEncoding.EncodeToString(k.Public)
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
		"recipient": &w.Recipient, "private": &w.Private, "public": &w.Public,
	} {
		if raw, ok := m[key]; ok {
			// Already validated by the Unmarshal into m: a plain string is
			// sliced out (jsonstr), not scanned a second time — post-quantum
			// key files hold 3.6 KB of recipient and public key.
			v, err := jsonstr.Unquote(raw)
			if err != nil {
				return nil, bad(fmt.Sprintf("%q is not a string", key))
			}
			*dst = v
		}
	}
	if raw, ok := m["encrypted"]; ok && string(raw) != "null" {
		var em map[string]json.RawMessage
		if json.Unmarshal(raw, &em) != nil || em == nil {
			return nil, bad(`"encrypted" is not an object`)
		}
		w.Encrypted = &Sealed{}
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
	if !ValidName(w.Name) {
		return nil, bad("invalid name")
	}
	var pub []byte
	var err error
	switch kind := pq.KindOf(w.Type); {
	case w.Type == TypeP256:
		if pub, err = p256.ParseCompressed(w.Recipient); err != nil {
			return nil, bad("invalid recipient")
		}
	case kind != nil:
		// The public key from its base64 copy: Bech32-decoding a 2,000
		// character recipient costs about 0.1 ms, paid for every key on
		// every unwrap (the keystore is listed to match tags). The
		// recipient's form is checked, its checksum when it is printed;
		// the public key is checked against the private one when used.
		raw, err := base64.StdEncoding.Strict().DecodeString(w.Public)
		if err != nil || len(raw) != kind.PublicSize() || !kind.HasForm(w.Recipient) {
			return nil, bad(`invalid "public" or "recipient"`)
		}
		pub = raw
	default:
		return nil, bad(`unsupported key type (want one of ` + strings.Join(Types(), ", ") + `)`)
	}
	k := &KeyFile{Name: w.Name, Type: w.Type, Recipient: w.Recipient, Public: pub}
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
		if err := w.Encrypted.check(32); err != nil {
			return nil, bad(err.Error())
		}
		k.sealed = w.Encrypted
	default:
		return nil, bad(`need exactly one of "private" and "encrypted"`)
	}
	return k, nil
}

// Seal seals secret under passphrase, bound to ad (a public key string).
func Seal(secret, passphrase []byte, ad string) (*Sealed, error) {
	return seal(secret, passphrase, ad, defaultLogN)
}

func seal(scalar, passphrase []byte, recipient string, logN int) (*Sealed, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	s := &Sealed{KDF: "scrypt", LogN: logN, R: 8, P: 1, Salt: base64.StdEncoding.EncodeToString(salt)}
	g, err := s.aead(context.Background(), passphrase)
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

// Check validates a sealed secret of size bytes read from a file, and
// bounds the work its parameters ask for.
func (s *Sealed) Check(size int) error { return s.check(size) }

func (s *Sealed) check(size int) error {
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
	if err1 != nil || err2 != nil || err3 != nil || len(salt) < 16 || len(nonce) != 12 || len(ct) != size+16 {
		return errors.New("malformed sealed private key")
	}
	return nil
}

// aead derives the sealing key, in one of the process's MaxDerivations
// slots; waiting for one ends with ctx.
func (s *Sealed) aead(ctx context.Context, passphrase []byte) (cipher.AEAD, error) {
	salt, err := base64.StdEncoding.Strict().DecodeString(s.Salt)
	if err != nil {
		return nil, err
	}
	if err := derivations.acquire(ctx); err != nil {
		return nil, err
	}
	key, err := scrypt.Key(passphrase, salt, 1<<s.LogN, s.R, s.P, 32)
	derivations.release()
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Open returns the sealed secret; ErrBadPassphrase if passphrase is wrong.
func (s *Sealed) Open(passphrase []byte, recipient string) ([]byte, error) {
	return s.OpenContext(context.Background(), passphrase, recipient)
}

// OpenContext is Open whose wait for a derivation slot (MaxDerivations)
// ends with ctx.
func (s *Sealed) OpenContext(ctx context.Context, passphrase []byte, recipient string) ([]byte, error) {
	g, err := s.aead(ctx, passphrase)
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
