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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/scrypt"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/jsonwalk"
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
	Type    string
	Created time.Time
	// Recipient is the recipient string a P-256 key file holds (see
	// RecipientString); for a post-quantum key, set only when the file is
	// sealed with it as additional data (the reader skips it otherwise).
	Recipient string
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
	Recipient string  `json:"recipient,omitempty"`
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
	return k.sealed.OpenContext(ctx, passphrase, k.sealedAD())
}

// sealedAD is the additional data that binds a sealed key to its public
// key: the recipient string as the file holds it, or as RecipientString
// writes it.
func (k *KeyFile) sealedAD() string {
	if k.Recipient != "" {
		return k.Recipient
	}
	return k.RecipientString()
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
	return newKeyFile(&KeyFile{Name: name, Type: kind.Type, Public: pub}, seed, passphrase)
}

func newKeyFile(k *KeyFile, secret, passphrase []byte) (*KeyFile, error) {
	k.Created = time.Now().UTC().Truncate(time.Second)
	if len(passphrase) == 0 {
		k.private = secret
		return k, nil
	}
	s, err := Seal(secret, passphrase, k.sealedAD())
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
		// Both forms of the public key: readers use the base64 copy and
		// skip the recipient string (the same key in Bech32m) after a
		// check of its form, but releases before the one-pass walk require
		// it, and a key file is copied between machines that run
		// different releases (a workstation's new key into a node's
		// Secret).
		w.Public = base64.StdEncoding.EncodeToString(k.Public)
		if w.Recipient == "" {
			w.Recipient = k.RecipientString()
		}
	}
	b, err := json.MarshalIndent(&w, "", "  ")
	return append(b, '\n'), err
}

// ParseKeyFile decodes a key file strictly. Its errors never quote the file.
//
// Every exec unwrap lists the keystore, so the file is walked once
// (internal/jsonwalk): no struct reflection, strings sliced out of the file
// rather than copied, base64 decoded straight from it, unknown fields
// skipped unread. A post-quantum file's recipient string (the public key
// again in Bech32m, 2 KB) is checked for form only, and kept only as a
// sealed key's additional data; files without it are read too.
func ParseKeyFile(data []byte) (*KeyFile, error) {
	bad := func(what string) error { return fmt.Errorf("not an ocikp key file: %s", what) }
	if len(data) > MaxKeyFileSize {
		return nil, bad("too large")
	}
	var w struct {
		format, typ, name, created, recipient, public, private []byte
		sealed                                                 *Sealed
	}
	d := jsonwalk.New(data)
	err := d.Object(len(data), func(key []byte) error {
		var dst *[]byte
		switch string(key) {
		case "format":
			dst = &w.format
		case "type":
			dst = &w.typ
		case "name":
			dst = &w.name
		case "created":
			dst = &w.created
		case "recipient":
			dst = &w.recipient
		case "public":
			dst = &w.public
		case "private":
			dst = &w.private
		case "encrypted":
			var err error
			w.sealed, err = parseSealed(d)
			return err
		default:
			return d.Skip()
		}
		// null reads as "", as encoding/json would.
		if null, err := d.Null(); null || err != nil {
			*dst = nil
			return err
		}
		v, err := d.String(len(data))
		if errors.Is(err, jsonwalk.ErrType) {
			return errors.New(strconv.Quote(string(key)) + " is not a string")
		}
		*dst = v
		return err
	})
	if err == nil {
		err = d.End()
	}
	var syn *jsonwalk.SyntaxError
	switch {
	case errors.As(err, &syn), errors.Is(err, jsonwalk.ErrTruncated), errors.Is(err, jsonwalk.ErrType):
		return nil, bad("invalid JSON")
	case err != nil:
		return nil, bad(err.Error())
	}
	if string(w.format) != formatV1 {
		return nil, bad(`"format" is not "` + formatV1 + `"`)
	}
	name := string(w.name)
	if !ValidName(name) {
		return nil, bad("invalid name")
	}
	typ := string(w.typ)
	k := &KeyFile{Name: name, Type: typ}
	switch kind := pq.KindOf(typ); {
	case typ == TypeP256:
		k.Recipient = string(w.recipient)
		if k.Public, err = p256.ParseCompressed(k.Recipient); err != nil {
			return nil, bad("invalid recipient")
		}
	case kind != nil:
		// The public key from its base64 copy: Bech32-decoding a 2,000
		// character recipient costs about 0.07 ms, paid for every key on
		// every unwrap. The public key is checked against the private one
		// when used.
		k.Public = make([]byte, b64.DecodedLen(len(w.public)))
		n, err := b64.Decode(k.Public, w.public)
		if k.Public = k.Public[:n]; err != nil || n != kind.PublicSize() || w.recipient != nil && !kind.HasForm(string(w.recipient)) {
			return nil, bad(`invalid "public" or "recipient"`)
		}
		if w.sealed != nil && w.recipient != nil {
			k.Recipient = string(w.recipient) // the additional data it was sealed with
		}
	default:
		return nil, bad(`unsupported key type (want one of ` + strings.Join(Types(), ", ") + `)`)
	}
	if len(w.created) > 0 {
		if k.Created, err = time.Parse(time.RFC3339, string(w.created)); err != nil {
			return nil, bad("invalid creation time")
		}
	}
	switch {
	case len(w.private) > 0 && w.sealed == nil:
		k.private = make([]byte, b64.DecodedLen(len(w.private)))
		n, err := b64.Decode(k.private, w.private)
		if k.private = k.private[:n]; err != nil || n != 32 {
			return nil, bad("private key is not 32 bytes of base64")
		}
		// That it matches the recipient is checked when it is used
		// (PrivateKey): listing a keystore costs no scalar multiplications.
	case len(w.private) == 0 && w.sealed != nil:
		if err := w.sealed.check(32); err != nil {
			return nil, bad(err.Error())
		}
		k.sealed = w.sealed
	default:
		return nil, bad(`need exactly one of "private" and "encrypted"`)
	}
	return k, nil
}

var b64 = base64.StdEncoding.Strict()

// parseSealed reads the "encrypted" object: every field required, of its
// type (null reads as zero, as encoding/json would; check refuses it).
func parseSealed(d *jsonwalk.Decoder) (*Sealed, error) {
	if null, err := d.Null(); null || err != nil {
		return nil, err
	}
	s := &Sealed{}
	var seen uint8
	fields := []string{"kdf", "logN", "r", "p", "salt", "nonce", "ciphertext"}
	err := d.Object(MaxKeyFileSize, func(key []byte) error {
		i := slices.Index(fields, string(key))
		if i < 0 {
			return d.Skip()
		}
		seen |= 1 << i
		wrong := fmt.Errorf("encrypted.%s is missing or of the wrong type", fields[i])
		if null, err := d.Null(); null || err != nil {
			return err
		}
		if i >= 1 && i <= 3 {
			num, err := d.Number()
			if errors.Is(err, jsonwalk.ErrType) {
				return wrong
			} else if err != nil {
				return err
			}
			v, err := strconv.Atoi(string(num))
			if err != nil {
				return wrong
			}
			*[]*int{&s.LogN, &s.R, &s.P}[i-1] = v
			return nil
		}
		v, err := d.String(MaxKeyFileSize)
		if errors.Is(err, jsonwalk.ErrType) {
			return wrong
		}
		*[]*string{&s.KDF, nil, nil, nil, &s.Salt, &s.Nonce, &s.Ciphertext}[i] = string(v)
		return err
	})
	if errors.Is(err, jsonwalk.ErrType) {
		return nil, errors.New(`"encrypted" is not an object`)
	}
	if err != nil {
		return nil, err
	}
	for i, f := range fields {
		if seen&(1<<i) == 0 {
			return nil, fmt.Errorf("encrypted.%s is missing or of the wrong type", f)
		}
	}
	return s, nil
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
