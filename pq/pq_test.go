package pq_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/mlkem"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/pq"
)

var update = flag.Bool("update", false, "rewrite testdata/recipients.json")

func curveOf(k *pq.Kind) ecdh.Curve {
	if k.Type == pq.XWing {
		return ecdh.X25519()
	}
	return ecdh.P256()
}

// halves builds a hybrid key from its two halves.
func halves(t testing.TB, dk *mlkem.DecapsulationKey768, c *ecdh.PrivateKey) *pq.Identity {
	t.Helper()
	id, err := pq.NewIdentityFromKey("halves", pq.Private{MLKEM: dk, Classical: c})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestRoundTrip(t *testing.T) {
	for _, k := range pq.Kinds() {
		t.Run(k.Type, func(t *testing.T) {
			seed, pub, err := k.GenerateKey()
			if err != nil {
				t.Fatal(err)
			}
			r, err := pq.Parse(k.Format(pub))
			if err != nil {
				t.Fatal(err)
			}
			if r.Type() != k.Type || !strings.HasPrefix(r.String(), "ocikp1"+k.Type+"1") {
				t.Fatalf("recipient %s of type %s", r.String()[:30], r.Type())
			}
			loads := 0
			id := k.NewIdentity("alice", pub, func() (pq.Private, error) {
				loads++
				priv, err := k.PrivateKey(seed)
				return pq.Private{Key: priv}, err
			})
			fk := bytes.Repeat([]byte{7}, 32)
			s, err := r.Wrap(fk)
			if err != nil {
				t.Fatal(err)
			}
			if s.Type != k.Type || len(s.Tag) != 4 {
				t.Fatalf("stanza %s", s.Hint())
			}
			got, err := id.Unwrap(s)
			if err != nil || !bytes.Equal(got, fk) {
				t.Fatalf("unwrap: %x, %v", got, err)
			}
			// A foreign stanza costs no private-key load.
			other, _ := r.Wrap(fk)
			other.Tag[0] ^= 1
			id2 := k.NewIdentity("bob", pub, func() (pq.Private, error) { t.Fatal("loaded"); return pq.Private{}, nil })
			if _, err := id2.Unwrap(other); !errors.Is(err, envelope.ErrIncorrectIdentity) {
				t.Fatalf("foreign tag: %v", err)
			}
			// A stanza that matches by tag but does not open is tampered.
			s.Key[0] ^= 1
			if _, err := id.Unwrap(s); !errors.Is(err, envelope.ErrTampered) {
				t.Fatalf("tampered: %v", err)
			}
			if loads != 1 {
				t.Fatalf("private key loaded %d times", loads)
			}
		})
	}
}

// TestWrongHalf: a key that shares one half with the recipient's opens
// nothing, whether the stanza is tagged (not tried) or untagged (tried and
// refused), and the envelope reports the wrong-key error, not tampering.
func TestWrongHalf(t *testing.T) {
	for _, k := range pq.Kinds() {
		t.Run(k.Type, func(t *testing.T) {
			dkA, _ := mlkem.GenerateKey768()
			dkB, _ := mlkem.GenerateKey768()
			cA, _ := curveOf(k).GenerateKey(rand.Reader)
			cB, _ := curveOf(k).GenerateKey(rand.Reader)
			alice := halves(t, dkA, cA)
			if alice.Type() != k.Type {
				t.Fatalf("halves make a %s key", alice.Type())
			}
			r, err := alice.Recipient()
			if err != nil {
				t.Fatal(err)
			}
			blob, err := envelope.Seal([]byte("optsdata"), r)
			if err != nil {
				t.Fatal(err)
			}
			for name, id := range map[string]*pq.Identity{
				"wrong ML-KEM half":    halves(t, dkB, cA),
				"wrong classical half": halves(t, dkA, cB),
			} {
				env, _ := envelope.Parse(blob)
				_, err := env.Open(id)
				var nie *envelope.NoIdentityError
				if !errors.As(err, &nie) || errors.Is(err, envelope.ErrTampered) {
					t.Fatalf("%s: %v", name, err)
				}
				untagged := *env.Recipients[0]
				untagged.Tag = nil
				if _, err := id.Unwrap(&untagged); !errors.Is(err, envelope.ErrIncorrectIdentity) {
					t.Fatalf("%s, untagged: %v", name, err)
				}
			}
			env, _ := envelope.Parse(blob)
			if got, err := env.Open(alice); err != nil || string(got) != "optsdata" {
				t.Fatalf("right key: %q, %v", got, err)
			}
		})
	}
}

// TestSoftwareAndHalvesAgree: a recipient built from the two halves is
// the hybrid recipient of the key built from them.
func TestSoftwareAndHalvesAgree(t *testing.T) {
	k := pq.KindOf(pq.MLKEMP256)
	dk, _ := mlkem.GenerateKey768()
	c, _ := ecdh.P256().GenerateKey(rand.Reader)
	id := halves(t, dk, c)
	r, err := pq.NewHybridRecipient(dk.EncapsulationKey(), c.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	s, _ := r.Wrap(make([]byte, 32))
	if _, err := id.Unwrap(s); err != nil {
		t.Fatal(err)
	}
	if r.String() != k.Format(r.Bytes()) {
		t.Fatal("format")
	}
}

// TestInfoBindsVersionAndType: a stanza sealed under another envelope
// version's or another type's HPKE info does not open, even with its tag.
func TestInfoBindsVersionAndType(t *testing.T) {
	k := pq.KindOf(pq.XWing)
	seed, pub, _ := k.GenerateKey()
	priv, _ := k.PrivateKey(seed)
	id := k.NewIdentity("a", pub, func() (pq.Private, error) { return pq.Private{Key: priv}, nil })
	for _, info := range []string{"ocikp/v2 mlkem768x25519", "ocikp/v1 mlkem768p256", "ocikp/v1 p256"} {
		enc, snd, err := hpke.NewSender(priv.PublicKey(), hpke.HKDFSHA256(), hpke.AES256GCM(), []byte(info))
		if err != nil {
			t.Fatal(err)
		}
		ct, _ := snd.Seal(nil, make([]byte, 32))
		s := &envelope.Stanza{Type: k.Type, Tag: k.Tag(enc, pub), Enc: enc, Key: ct}
		if _, err := id.Unwrap(s); !errors.Is(err, envelope.ErrTampered) {
			t.Fatalf("info %q: %v", info, err)
		}
	}
}

type failingKX struct{ ecdh.KeyExchanger }

var errLocked = errors.New("the Keychain is locked")

func (failingKX) ECDH(*ecdh.PublicKey) ([]byte, error) { return nil, errLocked }

func TestClassicalHalfFailure(t *testing.T) {
	dk, _ := mlkem.GenerateKey768()
	c, _ := ecdh.P256().GenerateKey(rand.Reader)
	id := halves(t, dk, c)
	r, _ := id.Recipient()
	s, _ := r.Wrap(make([]byte, 32))
	locked, err := pq.NewIdentityFromKey("locked", pq.Private{MLKEM: dk, Classical: failingKX{c}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := locked.Unwrap(s); !errors.Is(err, errLocked) {
		t.Fatalf("got %v, want the Keychain's error", err)
	}
}

func TestRecipientTypos(t *testing.T) {
	for _, k := range pq.Kinds() {
		_, pub, _ := k.GenerateKey()
		s := k.Format(pub)
		const alphabet = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
		for i := range len(s) {
			if s[i] == '1' && i == len(k.HRP) {
				continue
			}
			c := alphabet[(strings.IndexByte(alphabet, s[i])+1)%32]
			if strings.IndexByte(alphabet, s[i]) < 0 {
				c = s[i] ^ 1
			}
			bad := s[:i] + string(c) + s[i+1:]
			if _, err := pq.Parse(bad); err == nil {
				t.Fatalf("%s: typo at %d accepted", k.Type, i)
			} else if i >= 7 && !errors.Is(err, pq.ErrChecksum) {
				t.Fatalf("%s: typo at %d: %v", k.Type, i, err)
			}
		}
		for _, bad := range []string{s[:len(s)-1], s + "q", strings.ToUpper(s[:20]) + s[20:]} {
			if _, err := pq.Parse(bad); err == nil {
				t.Fatalf("%s: %q… accepted", k.Type, bad[:20])
			}
		}
		if _, err := pq.Parse(strings.ToUpper(s)); err != nil {
			t.Fatalf("upper case: %v", err) // Bech32 allows all upper case
		}
	}
}

type recipientVector struct {
	Type      string `json:"type"`
	Seed      string `json:"seed"`
	Public    string `json:"public"`
	Recipient string `json:"recipient"`
}

// TestRecipientVectors: fixed seeds give fixed public keys and recipient
// strings, for other implementations.
func TestRecipientVectors(t *testing.T) {
	const file = "testdata/recipients.json"
	if *update {
		var vs []recipientVector
		for _, k := range pq.Kinds() {
			for _, b := range []byte{0x00, 0x42} {
				seed := bytes.Repeat([]byte{b}, pq.SeedSize)
				priv, err := k.PrivateKey(seed)
				if err != nil {
					t.Fatal(err)
				}
				pub := priv.PublicKey().Bytes()
				vs = append(vs, recipientVector{k.Type, hex.EncodeToString(seed), hex.EncodeToString(pub), k.Format(pub)})
			}
		}
		out, _ := json.MarshalIndent(vs, "", "  ")
		os.WriteFile(file, append(out, '\n'), 0o644)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var vs []recipientVector
	if err := json.Unmarshal(data, &vs); err != nil || len(vs) != 4 {
		t.Fatalf("%d vectors, %v", len(vs), err)
	}
	for _, v := range vs {
		k := pq.KindOf(v.Type)
		seed, _ := hex.DecodeString(v.Seed)
		priv, err := k.PrivateKey(seed)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(priv.PublicKey().Bytes()); got != v.Public {
			t.Fatalf("%s: public key differs", v.Type)
		}
		r, err := pq.Parse(v.Recipient)
		if err != nil || hex.EncodeToString(r.Bytes()) != v.Public {
			t.Fatalf("%s: recipient: %v", v.Type, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, k := range pq.Kinds() {
		_, pub, _ := k.GenerateKey()
		f.Add(k.Format(pub))
		f.Add(k.HRP + "1")
	}
	f.Add("ocikp1p2561")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := pq.Parse(s)
		if err != nil {
			if r != nil {
				t.Fatal("recipient with error")
			}
			return
		}
		if !strings.EqualFold(r.String(), s) {
			t.Fatalf("round trip: %q", s)
		}
	})
}
