package envelope_test

import (
	"bytes"
	"os"
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
