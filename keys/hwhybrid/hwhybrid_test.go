package hwhybrid

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/pq"
)

// device stands in for a TPM or token key: an ecdh.KeyExchanger that
// counts its ECDHs and can be made to fail.
type device struct {
	*ecdh.PrivateKey
	pub   *ecdh.PublicKey // what it claims to be, if not its own
	calls atomic.Int32
	fail  error
}

func (d *device) PublicKey() *ecdh.PublicKey {
	if d.pub != nil {
		return d.pub
	}
	return d.PrivateKey.PublicKey()
}

func (d *device) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	d.calls.Add(1)
	if d.fail != nil {
		return nil, d.fail
	}
	return d.PrivateKey.ECDH(peer)
}

func newDevice(t *testing.T) *device {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &device{PrivateKey: k}
}

func newHybrid(t *testing.T, d *device) (string, *Half) {
	t.Helper()
	r, h, err := New(d.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return r, h
}

func wrap(t *testing.T, recipient string, fileKey []byte) *envelope.Stanza {
	t.Helper()
	r, err := pq.Parse(recipient)
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Wrap(fileKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fixed(d ecdh.KeyExchanger) func() (ecdh.KeyExchanger, error) {
	return func() (ecdh.KeyExchanger, error) { return d, nil }
}

// TestRoundTrip: a stanza for the hybrid recipient, made from the string
// alone, opens with the hardware key; the recipient is an mlkem768p256
// one whose P-256 half is the hardware key.
func TestRoundTrip(t *testing.T) {
	d := newDevice(t)
	recipient, h := newHybrid(t, d)
	if !strings.HasPrefix(recipient, "ocikp1mlkem768p2561") {
		t.Fatalf("recipient %.30s…", recipient)
	}
	if pub, err := ClassicalKey(recipient); err != nil || !pub.Equal(d.PublicKey()) {
		t.Fatalf("ClassicalKey: %v", err)
	}
	if err := h.Check(); err != nil {
		t.Fatal(err)
	}
	fk := []byte("0123456789abcdef0123456789abcdef")
	s := wrap(t, recipient, fk)
	id := Identity("node", recipient, h, fixed(d))
	if !id.Matches(s) || id.Type() != pq.MLKEMP256 {
		t.Fatal("the identity does not match its stanza")
	}
	got, err := id.Unwrap(s)
	if err != nil || !bytes.Equal(got, fk) {
		t.Fatalf("Unwrap: %v", err)
	}
	r, err := id.Recipient()
	if err != nil || r.(*pq.Recipient).String() != recipient {
		t.Fatalf("the identity's recipient differs: %v", err)
	}
	// Two keys on one device are two different hybrids.
	if r2, _ := newHybrid(t, d); r2 == recipient {
		t.Fatal("two keys share a recipient")
	}
}

// TestWrongHardwareKey: another device's key is refused before any ECDH;
// a device that claims the right public key but holds another private
// key does not open the half.
func TestWrongHardwareKey(t *testing.T) {
	d := newDevice(t)
	recipient, h := newHybrid(t, d)
	s := wrap(t, recipient, make([]byte, 32))

	other := newDevice(t)
	_, err := Identity("node", recipient, h, fixed(other)).Unwrap(s)
	if !errors.Is(err, ErrWrongKey) || other.calls.Load() != 0 {
		t.Fatalf("another device: %v (%d ECDHs)", err, other.calls.Load())
	}
	liar := newDevice(t)
	liar.pub = d.PublicKey()
	_, err = Identity("node", recipient, h, fixed(liar)).Unwrap(s)
	if !errors.Is(err, ErrSealed) {
		t.Fatalf("a device with another private key: %v", err)
	}
	if !strings.Contains(err.Error(), `key "node"`) || len(hint.Of(err)) != 1 {
		t.Fatalf("the error does not name the key or say what to check: %v (hints %q)", err, hint.Of(err))
	}
}

// TestTamperedHalf: any change to the sealed half is refused, whether the
// enc or the ciphertext was changed.
func TestTamperedHalf(t *testing.T) {
	d := newDevice(t)
	recipient, h := newHybrid(t, d)
	flip := func(b64 string, i int) string {
		raw, _ := base64.StdEncoding.DecodeString(b64)
		raw[i] ^= 1
		return base64.StdEncoding.EncodeToString(raw)
	}
	for name, bad := range map[string]*Half{
		"ciphertext first byte": {Enc: h.Enc, Ciphertext: flip(h.Ciphertext, 0)},
		"ciphertext tag":        {Enc: h.Enc, Ciphertext: flip(h.Ciphertext, sealedSize-1)},
		"enc":                   {Enc: flip(h.Enc, encSize-1), Ciphertext: h.Ciphertext},
	} {
		if _, err := bad.Open(recipient, d); !errors.Is(err, ErrSealed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := h.Open(recipient, d); err != nil {
		t.Fatalf("the untouched half: %v", err)
	}
}

// TestRecipientBinding: a half moved into another key's record does not
// open there, even when both keys share the hardware key (the seed is
// bound to its own hybrid recipient, not only to the device).
func TestRecipientBinding(t *testing.T) {
	d := newDevice(t)
	rA, hA := newHybrid(t, d)
	rB, hB := newHybrid(t, d)
	if _, err := hA.Open(rB, d); !errors.Is(err, ErrSealed) {
		t.Fatalf("A's half in B's record: %v", err)
	}
	if _, err := hA.Open(rA, d); err != nil {
		t.Fatalf("A's half in its own record: %v", err)
	}
	s := wrap(t, rB, make([]byte, 32))
	if _, err := Identity("b", rB, hA, fixed(d)).Unwrap(s); !errors.Is(err, ErrSealed) {
		t.Fatalf("unwrap with a moved half: %v", err)
	}
	if _, err := Identity("b", rB, hB, fixed(d)).Unwrap(s); err != nil {
		t.Fatalf("B's own half: %v", err)
	}
	// An X-Wing recipient has no P-256 half to be a hardware key.
	_, pub, _ := pq.KindOf(pq.XWing).GenerateKey()
	if _, err := ClassicalKey(pq.KindOf(pq.XWing).Format(pub)); err == nil {
		t.Fatal("an X-Wing recipient gave a hardware key")
	}
}

// TestOpenedOncePerIdentity: the identity keeps the opened ML-KEM key,
// so each unwrap after the first costs one hardware ECDH (what ocikp
// serve gains from keeping identities); a failure is not kept, so a
// device that comes back is used on the next try.
func TestOpenedOncePerIdentity(t *testing.T) {
	d := newDevice(t)
	recipient, h := newHybrid(t, d)
	gone := errors.New("token absent")
	loads := 0
	id := Identity("node", recipient, h, func() (ecdh.KeyExchanger, error) {
		loads++
		if loads == 1 {
			return nil, gone
		}
		return d, nil
	})
	s := wrap(t, recipient, make([]byte, 32))
	if _, err := id.Unwrap(s); !errors.Is(err, gone) {
		t.Fatalf("device gone: %v", err)
	}
	d.fail = gone
	if _, err := id.Unwrap(s); !errors.Is(err, gone) || errors.Is(err, ErrSealed) {
		t.Fatalf("ECDH failing: %v", err)
	}
	d.fail = nil
	d.calls.Store(0)
	for i := range 3 {
		if _, err := id.Unwrap(wrap(t, recipient, make([]byte, 32))); err != nil {
			t.Fatalf("unwrap %d: %v", i, err)
		}
	}
	if n := d.calls.Load(); n != 4 {
		t.Fatalf("three unwraps cost %d hardware ECDHs, want 4 (the half once, then one per stanza)", n)
	}
	// A fresh identity (a fresh exec process) opens the half again.
	d.calls.Store(0)
	if _, err := Identity("node", recipient, h, fixed(d)).Unwrap(s); err != nil || d.calls.Load() != 2 {
		t.Fatalf("fresh identity: %v, %d ECDHs", err, d.calls.Load())
	}
}

func TestCheck(t *testing.T) {
	d := newDevice(t)
	_, h := newHybrid(t, d)
	enc, _ := base64.StdEncoding.DecodeString(h.Enc)
	compressed := base64.StdEncoding.EncodeToString(append([]byte{2}, enc[1:33]...))
	for name, bad := range map[string]*Half{
		"nil":              nil,
		"empty":            {},
		"no ciphertext":    {Enc: h.Enc},
		"compressed enc":   {Enc: compressed, Ciphertext: h.Ciphertext},
		"short ciphertext": {Enc: h.Enc, Ciphertext: h.Ciphertext[:len(h.Ciphertext)-4]},
		"unpadded":         {Enc: strings.TrimRight(h.Enc, "="), Ciphertext: h.Ciphertext},
		"url alphabet":     {Enc: h.Enc, Ciphertext: strings.NewReplacer("+", "-", "/", "_").Replace(h.Ciphertext) + "-"},
		"non-canonical":    {Enc: h.Enc[:len(h.Enc)-2] + "B=", Ciphertext: h.Ciphertext},
		"whitespace":       {Enc: h.Enc, Ciphertext: h.Ciphertext[:8] + "\n" + h.Ciphertext[8:]},
	} {
		if err := bad.Check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzParseHalf: no panic; an accepted half re-encodes to one that parses
// the same, and is of the sizes Open needs.
func FuzzParseHalf(f *testing.F) {
	k, _ := ecdh.P256().GenerateKey(rand.Reader)
	_, h, err := New(k.PublicKey())
	if err != nil {
		f.Fatal(err)
	}
	seed, _ := json.Marshal(h)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHalf(data)
		if err != nil {
			return
		}
		d, err := h.decode()
		if err != nil || len(d.enc) != encSize || len(d.ct) != sealedSize {
			t.Fatalf("accepted a half of the wrong shape: %v", err)
		}
		b, _ := json.Marshal(h)
		h2, err := ParseHalf(b)
		if err != nil || *h2 != *h {
			t.Fatalf("re-encoded half differs: %v", err)
		}
	})
}

// many is a device that also batches ECDHs (as the TPM and PKCS#11 keys
// do), counting its requests.
type many struct {
	*device
	batches atomic.Int32
}

func (m *many) ECDHMany(peers []*ecdh.PublicKey) ([][]byte, error) {
	m.batches.Add(1)
	var out [][]byte
	for _, p := range peers {
		z, err := m.device.ECDH(p)
		if err != nil {
			return nil, err
		}
		out = append(out, z)
	}
	return out, nil
}

// TestOneRequestWhenBatching: with a key that batches, the first unwrap
// is one device request (seed and stanza together) and no single ECDH;
// later ones one ECDH each; a failing batch is the key's error, not
// kept; a key that is not the hybrid's costs no request.
func TestOneRequestWhenBatching(t *testing.T) {
	m := &many{device: newDevice(t)}
	recipient, h := newHybrid(t, m.device)
	id := Identity("node", recipient, h, func() (ecdh.KeyExchanger, error) { return m, nil })
	fk := []byte("0123456789abcdef0123456789abcdef")

	gone := errors.New("token absent")
	m.fail = gone
	if _, err := id.Unwrap(wrap(t, recipient, fk)); !errors.Is(err, gone) {
		t.Fatalf("batch failing: %v", err)
	}
	m.fail = nil
	m.calls.Store(0)
	m.batches.Store(0)
	if got, err := id.Unwrap(wrap(t, recipient, fk)); err != nil || !bytes.Equal(got, fk) {
		t.Fatalf("first unwrap: %v", err)
	}
	if b, c := m.batches.Load(), m.calls.Load(); b != 1 || c != 2 {
		t.Fatalf("first unwrap: %d requests, %d ECDHs; want 1 request of 2", b, c)
	}
	if got, err := id.Unwrap(wrap(t, recipient, fk)); err != nil || !bytes.Equal(got, fk) {
		t.Fatalf("second unwrap: %v", err)
	}
	if b, c := m.batches.Load(), m.calls.Load(); b != 1 || c != 3 {
		t.Fatalf("second unwrap: %d requests, %d ECDHs in all; want 1 and 3", b, c)
	}

	other := &many{device: newDevice(t)}
	_, err := Identity("node", recipient, h, func() (ecdh.KeyExchanger, error) { return other, nil }).Unwrap(wrap(t, recipient, fk))
	if !errors.Is(err, ErrWrongKey) || other.batches.Load() != 0 || other.calls.Load() != 0 {
		t.Fatalf("another key: %v, %d requests", err, other.batches.Load()+other.calls.Load())
	}
}
