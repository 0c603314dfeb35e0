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
	"sync"

	"github.com/ocikp/ocikp/envelope"
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

// ManyExchanger is a hardware key that can run several ECDHs in one
// request to its device: in exec mode a request is a companion start, and
// a hybrid's first unwrap needs two (the sealed seed's and the stanza's).
type ManyExchanger interface {
	ecdh.KeyExchanger
	ECDHMany(peers []*ecdh.PublicKey) ([][]byte, error)
}

// HybridIdentity is a hybrid key as a decryption key (see Identity).
type HybridIdentity struct {
	*pq.Identity
	name, recipient string
	h               *Half
	kx              func() (ecdh.KeyExchanger, error)
	mu              sync.Mutex
	priv            *pq.Private // once opened
}

// Identity returns the hybrid key as a decryption key. It matches stanzas
// by the recipient alone; when one matches, kx supplies the hardware key
// (reading its PIN then), the half is opened with it, and both halves are
// kept for later stanzas (see the package comment). A key that offers
// ECDHMany opens the half and computes the stanza's share in one request.
// name is for messages. A recipient that is not an mlkem768p256 one gives
// an identity that matches nothing; record parsers check it first
// (ClassicalKey).
func Identity(name, recipient string, h *Half, kx func() (ecdh.KeyExchanger, error)) *HybridIdentity {
	id := &HybridIdentity{name: name, recipient: recipient, h: h, kx: kx}
	_, raw, _ := pq.ParsePublic(recipient)
	id.Identity = pq.KindOf(pq.MLKEMP256).NewIdentity(name, raw, func() (pq.Private, error) { return id.open(nil) })
	return id
}

// Unwrap opens the half first, knowing the stanza (see Identity), then
// the stanza.
func (id *HybridIdentity) Unwrap(s *envelope.Stanza) ([]byte, error) {
	if !id.Matches(s) {
		return nil, envelope.ErrIncorrectIdentity
	}
	priv, err := id.open(s)
	if err != nil {
		return nil, err
	}
	fk, err := id.Identity.Unwrap(s)
	if p, ok := priv.Classical.(*primed); ok {
		p.forget() // a share the stanza did not use (it failed before)
	}
	return fk, err
}

// open returns the two halves, opening the sealed one once; with s, a
// batching key computes s's P-256 share in the same request.
func (id *HybridIdentity) open(s *envelope.Stanza) (pq.Private, error) {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.priv != nil {
		return *id.priv, nil
	}
	k, err := id.kx()
	if err != nil {
		return pq.Private{}, err
	}
	if m, ok := k.(ManyExchanger); ok && s != nil {
		if k, err = id.prime(m, s); err != nil {
			return pq.Private{}, fmt.Errorf("key %q: %w", id.name, err)
		}
	}
	dk, err := id.h.Open(id.recipient, k)
	if errors.Is(err, ErrSealed) || errors.Is(err, ErrWrongKey) {
		err = hint.Wrap(err, "ocikp doctor checks that the device holds the key this record was made for")
	}
	if err != nil {
		return pq.Private{}, fmt.Errorf("key %q: %w", id.name, err)
	}
	id.priv = &pq.Private{MLKEM: dk, Classical: k}
	return *id.priv, nil
}

// prime runs the ECDHs of the sealed half and of s's P-256 share in one
// request and returns m answering those two from memory. A key that is
// not the hybrid's, or a stanza with no valid share, is left to Open and
// Unwrap as they are (Open refuses a wrong key before any ECDH).
func (id *HybridIdentity) prime(m ManyExchanger, s *envelope.Stanza) (ecdh.KeyExchanger, error) {
	_, t, err := split(id.recipient)
	if err != nil || m.Curve() != ecdh.P256() || !bytes.Equal(m.PublicKey().Bytes(), t) || len(s.Enc) < encSize {
		return m, nil
	}
	d, err := id.h.decode()
	if err != nil {
		return m, nil
	}
	seedPeer, err1 := ecdh.P256().NewPublicKey(d.enc)
	share, err2 := ecdh.P256().NewPublicKey(s.Enc[len(s.Enc)-encSize:])
	if err1 != nil || err2 != nil {
		return m, nil
	}
	z, err := m.ECDHMany([]*ecdh.PublicKey{seedPeer, share})
	if err != nil {
		return nil, err
	}
	if len(z) != 2 {
		return nil, fmt.Errorf("the hardware key returned %d secrets for 2 points", len(z))
	}
	return &primed{KeyExchanger: m, memo: map[string][]byte{string(d.enc): z[0], string(share.Bytes()): z[1]}}, nil
}

// primed answers the ECDHs computed ahead from memory, each once (no
// secret is held longer than it takes to use it), and asks the key for
// any other.
type primed struct {
	ecdh.KeyExchanger
	mu   sync.Mutex
	memo map[string][]byte
}

func (p *primed) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	p.mu.Lock()
	z, ok := p.memo[string(peer.Bytes())]
	delete(p.memo, string(peer.Bytes()))
	p.mu.Unlock()
	if ok {
		return z, nil
	}
	return p.KeyExchanger.ECDH(peer)
}

func (p *primed) forget() {
	p.mu.Lock()
	clear(p.memo)
	p.mu.Unlock()
}

// CheckSecrets checks a device's answer to a batch ECDH (ManyExchanger):
// one 32-byte P-256 x-coordinate per peer point, as who (the backend)
// returned them.
func CheckSecrets(who string, secrets [][]byte, peers int) error {
	if len(secrets) != peers {
		return fmt.Errorf("%s: ECDH returned %d secrets for %d peers", who, len(secrets), peers)
	}
	for _, z := range secrets {
		if len(z) != 32 {
			return fmt.Errorf("%s: ECDH returned %d bytes, want 32", who, len(z))
		}
	}
	return nil
}
