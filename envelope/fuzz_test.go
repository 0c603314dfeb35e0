package envelope_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/envelope"
)

func FuzzParse(f *testing.F) {
	priv, r, id := newKey(f)
	_ = priv
	blob, _ := envelope.Seal(secret, r)
	f.Add(blob)
	if data, err := os.ReadFile(vectorsFile); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"v":1,"recipients":[{"type":"p256","key":"AA=="}],"payload":"AA==","mac":"AA=="}`))
	f.Add([]byte(`{"v":99}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := envelope.Parse(b)
		if err != nil {
			return
		}
		// What parses re-marshals to the same bytes (one encoding per blob)…
		again, err := e.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted a non-canonical blob")
		}
		// …and opening it never panics.
		e.Open(id)
	})
}

// fixed wraps to a stanza of the fuzzer's choosing.
type fixed struct{ s envelope.Stanza }

func (f fixed) Wrap([]byte) (*envelope.Stanza, error) { c := f.s; return &c, nil }

// What Seal writes, Parse reads: a layer is never written that cannot be
// read back, whatever the secret's size or a stanza's fields.
func FuzzSealParses(f *testing.F) {
	f.Add(200, "gcpkms", "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k", 64, 1)
	f.Add(envelope.MaxSecretSize, "p256", "", 113, 2)
	f.Add(7000, "awskms", "awskms:///alias/x", 300, 1)
	f.Add(10, "hashivault", strings.Repeat("k", 9000), 10, 1)
	f.Add(10, "t\x1b[31m", "kid\u202e", 10, 129)
	f.Fuzz(func(t *testing.T, secretLen int, typ, kid string, keyLen, n int) {
		if secretLen < 0 || secretLen > 1<<16 || keyLen < 0 || keyLen > 1<<14 || n < 1 || n > 200 {
			return
		}
		rs := make([]envelope.Recipient, n)
		for i := range rs {
			rs[i] = fixed{envelope.Stanza{Type: typ, KID: kid, Key: bytes.Repeat([]byte{7}, keyLen)}}
		}
		blob, err := envelope.Seal(make([]byte, secretLen), rs...)
		if err != nil {
			return
		}
		if _, err := envelope.Parse(blob); err != nil {
			t.Fatalf("Seal wrote what Parse refuses: %v", err)
		}
	})
}
