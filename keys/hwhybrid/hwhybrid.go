package hwhybrid

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/mlkem"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/p256"
	"github.com/ocikp/ocikp/pq"
)

// info binds a sealed seed to this use: not a stanza of any type.
const info = "ocikp/v1 mlkem768p256 hardware seed"

const (
	encSize    = 65                            // an uncompressed P-256 point
	sealedSize = pq.MLKEMSeedSize + 16         // the seed and its GCM tag
	mlkemSize  = mlkem.EncapsulationKeySize768 // the ML-KEM part of a hybrid public key
	maxHalf    = 256                           // bounds ParseHalf's input
)

var (
	kdf  = hpke.HKDFSHA256()
	aead = hpke.AES256GCM()
)

// ErrWrongKey is a hardware key that is not the hybrid's P-256 half: the
// record points at another key (a replaced token key, another TPM).
var ErrWrongKey = errors.New("the hardware key is not this key's P-256 half")

// ErrSealed is a half that does not open with the right hardware key: the
// record was altered, or the half was copied from another key's record.
var ErrSealed = errors.New("the sealed ML-KEM half does not open: the record was altered or belongs to another key")

// Half is the ML-KEM-768 seed sealed to the hardware P-256 key, as a
// keystore record keeps it: HPKE's enc and ciphertext, standard base64.
type Half struct {
	Enc        string `json:"enc"`
	Ciphertext string `json:"ciphertext"`
}

// New makes a hybrid key around the hardware key hwPub: a fresh ML-KEM-768
// key, the hybrid's recipient string, and its seed sealed to hwPub. Only
// the public key is needed: the device is not used.
func New(hwPub *ecdh.PublicKey) (recipient string, h *Half, err error) {
	if hwPub == nil || hwPub.Curve() != ecdh.P256() {
		return "", nil, errors.New("the hardware half of an mlkem768p256 key must be a P-256 key")
	}
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		return "", nil, err
	}
	r, err := pq.NewHybridRecipient(dk.EncapsulationKey(), hwPub)
	if err != nil {
		return "", nil, err
	}
	recipient = r.String()
	hpk, err := hpke.NewDHKEMPublicKey(hwPub)
	if err != nil {
		return "", nil, err
	}
	enc, s, err := hpke.NewSender(hpk, kdf, aead, []byte(info))
	if err != nil {
		return "", nil, err
	}
	ct, err := s.Seal([]byte(recipient), dk.Bytes())
	if err != nil {
		return "", nil, err
	}
	h = &Half{Enc: base64.StdEncoding.EncodeToString(enc), Ciphertext: base64.StdEncoding.EncodeToString(ct)}
	return recipient, h, nil
}

// Check checks the half's shape, for record parsers: strict base64 of an
// uncompressed point and of a sealed seed.
func (h *Half) Check() error {
	if h == nil {
		return errors.New("no sealed ML-KEM half")
	}
	if _, err := h.decode(); err != nil {
		return err
	}
	return nil
}

type decoded struct{ enc, ct []byte }

func (h *Half) decode() (decoded, error) {
	enc, err := canonical(h.Enc)
	if err != nil || len(enc) != encSize || enc[0] != 4 {
		return decoded{}, fmt.Errorf("the sealed ML-KEM half: enc is not base64 of a %d-byte P-256 point", encSize)
	}
	ct, err := canonical(h.Ciphertext)
	if err != nil || len(ct) != sealedSize {
		return decoded{}, fmt.Errorf("the sealed ML-KEM half: ciphertext is not base64 of %d bytes", sealedSize)
	}
	return decoded{enc, ct}, nil
}

// canonical decodes standard base64 written as New writes it: Strict
// still skips line breaks, which a record has no use for.
func canonical(s string) ([]byte, error) {
	raw, err := base64.StdEncoding.Strict().DecodeString(s)
	if err == nil && base64.StdEncoding.EncodeToString(raw) != s {
		err = errors.New("not canonical base64")
	}
	return raw, err
}

// ParseHalf reads a half on its own (as JSON), strictly; records embed
// Half and call Check.
func ParseHalf(data []byte) (*Half, error) {
	if len(data) > maxHalf {
		return nil, fmt.Errorf("the sealed ML-KEM half: %d bytes, at most %d", len(data), maxHalf)
	}
	var h Half
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil || dec.More() {
		return nil, errors.New(`the sealed ML-KEM half: not a JSON object of "enc" and "ciphertext"`)
	}
	if err := h.Check(); err != nil {
		return nil, err
	}
	return &h, nil
}

// ClassicalKey checks that recipient is an mlkem768p256 recipient and
// returns its P-256 half: the hardware key's public key.
func ClassicalKey(recipient string) (*ecdh.PublicKey, error) {
	_, t, err := split(recipient)
	if err != nil {
		return nil, err
	}
	return ecdh.P256().NewPublicKey(t)
}

// split returns a hybrid recipient's ML-KEM and P-256 public keys (the
// hybrid public key is their concatenation, ML-KEM first).
func split(recipient string) (ek, t []byte, err error) {
	k, raw, err := pq.ParsePublic(recipient)
	if err != nil {
		return nil, nil, err
	}
	if k.Type != pq.MLKEMP256 {
		return nil, nil, fmt.Errorf("a %s recipient, not %s: its classical half cannot be a hardware key", k.Type, pq.MLKEMP256)
	}
	if _, err := ecdh.P256().NewPublicKey(raw[mlkemSize:]); err != nil {
		return nil, nil, fmt.Errorf("%s recipient: its P-256 half is not a point on the curve", pq.MLKEMP256)
	}
	return raw[:mlkemSize], raw[mlkemSize:], nil
}

// Open opens the half with the hardware key kx (one ECDH on the device),
// checked against recipient first so that a wrong device costs no
// operation. A failure of kx's own (a wrong PIN, an absent token) is
// returned as it is.
func (h *Half) Open(recipient string, kx ecdh.KeyExchanger) (*mlkem.DecapsulationKey768, error) {
	ek, t, err := split(recipient)
	if err != nil {
		return nil, err
	}
	d, err := h.decode()
	if err != nil {
		return nil, err
	}
	if kx.Curve() != ecdh.P256() || !bytes.Equal(kx.PublicKey().Bytes(), t) {
		return nil, ErrWrongKey
	}
	rec := &p256.ErrorRecorder{KeyExchanger: kx}
	priv, err := hpke.NewDHKEMPrivateKey(rec)
	if err != nil {
		return nil, err
	}
	r, err := hpke.NewRecipient(d.enc, priv, kdf, aead, []byte(info))
	if rec.Err != nil {
		return nil, rec.Err
	}
	if err != nil {
		return nil, ErrSealed
	}
	seed, err := r.Open([]byte(recipient), d.ct)
	if err != nil {
		return nil, ErrSealed
	}
	dk, err := mlkem.NewDecapsulationKey768(seed)
	if err != nil || !bytes.Equal(dk.EncapsulationKey().Bytes(), ek) {
		return nil, ErrSealed
	}
	return dk, nil
}

// Identity returns the hybrid key as a decryption key. It matches stanzas
// by the recipient alone; when one matches, kx supplies the hardware key
// (reading its PIN then), the half is opened with it, and both halves are
// kept for later stanzas (see the package comment). name is for messages.
// A recipient that is not an mlkem768p256 one gives an identity that
// matches nothing; record parsers check it first (ClassicalKey).
func Identity(name, recipient string, h *Half, kx func() (ecdh.KeyExchanger, error)) *pq.Identity {
	_, raw, _ := pq.ParsePublic(recipient)
	return pq.KindOf(pq.MLKEMP256).NewIdentity(name, raw, func() (pq.Private, error) {
		k, err := kx()
		if err != nil {
			return pq.Private{}, err
		}
		dk, err := h.Open(recipient, k)
		if errors.Is(err, ErrSealed) || errors.Is(err, ErrWrongKey) {
			err = hint.Wrap(err, "ocikp doctor checks that the device holds the key this record was made for")
		}
		if err != nil {
			return pq.Private{}, fmt.Errorf("key %q: %w", name, err)
		}
		return pq.Private{MLKEM: dk, Classical: k}, nil
	})
}
