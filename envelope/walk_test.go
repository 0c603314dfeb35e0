package envelope_test

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/envelope"
)

// class is the decision a caller makes on Parse's error.
func class(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, envelope.ErrNotEnvelope):
		return "not an envelope"
	case errors.Is(err, envelope.ErrUnsupportedVersion):
		return "unsupported version"
	case errors.Is(err, envelope.ErrMalformed):
		return "malformed"
	}
	return "other: " + err.Error()
}

func checkSame(t *testing.T, b []byte) {
	t.Helper()
	got, err := envelope.Parse(b)
	want, oerr := ParseOld(b)
	if class(err) != class(oerr) {
		t.Fatalf("Parse: %v (%s); old Parse: %v (%s)", err, class(err), oerr, class(oerr))
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("results differ:\n got %#v\nwant %#v", got, want)
	}
}

func differentialSeeds(tb testing.TB) [][]byte {
	_, r, _ := newKey(tb)
	blob, _ := envelope.Seal(secret, r)
	seeds := [][]byte{blob,
		[]byte(`{"v":1,"recipients":[{"type":"p256","key":"AA=="}],"payload":"AA==","mac":"AA=="}`),
		[]byte(`{"v":1,"recipients":[{"type":"t\u001b\"\\é","tag":"AAAAAA==","kid":"k\u0001","enc":"AA==","key":"AA=="}],"payload":"AA==","mac":"` + strings.Repeat("A", 43) + `="}`),
		[]byte(`{"v":2}`), []byte(`{"v":null}`), []byte(`{"v":"1"}`), []byte(`{"v":1.0}`), []byte(`{"v":01}`), []byte(` {"v":1}`),
		[]byte(`{"v":2,"v":1}`), []byte(`{"v":1,"x":1}`), []byte(`{"EphPub":"x"}`), []byte(`null`), []byte(`[]`), []byte(``),
		[]byte(`{"v":1,"recipients":[],"payload":"AA==","mac":"AA=="}`),
		[]byte(`{"recipients":[],"v":1}`), []byte(`{"v":1,"recipients":[`),
	}
	for _, f := range []string{vectorsFile, "testdata/vectors-pq-v1.json"} {
		if data, err := os.ReadFile(f); err == nil {
			seeds = append(seeds, data)
		}
	}
	return seeds
}

// The walk decides as the old Parse did on every input: the same class of
// error (what callers make decisions on: not an envelope, another version,
// malformed) and, when both accept, the same envelope.
func FuzzParseDifferential(f *testing.F) {
	for _, s := range differentialSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(checkSame)
}

// Every single-byte change of real blobs, and each cut, decides the same.
func TestParseSameAsOld(t *testing.T) {
	for _, s := range differentialSeeds(t) {
		checkSame(t, s)
		if len(s) > 4096 {
			continue
		}
		for i := range s {
			checkSame(t, s[:i])
			for _, c := range []byte{' ', '"', '\\', '0', '1', 'A', '=', ',', '}', ']', 0xff} {
				b := bytes.Clone(s)
				b[i] = c
				checkSame(t, b)
			}
		}
	}
	// Bounds: 128 recipients and no more; fields of 8 KiB and no more.
	stanza := `{"type":"p256","key":"AA=="}`
	for _, n := range []int{envelope.MaxRecipients, envelope.MaxRecipients + 1} {
		checkSame(t, []byte(`{"v":1,"recipients":[`+strings.Repeat(stanza+",", n-1)+stanza+`],"payload":"AA==","mac":"`+strings.Repeat("A", 43)+`="}`))
	}
	for _, n := range []int{8 << 10, 8<<10 + 4} {
		checkSame(t, []byte(`{"v":1,"recipients":[{"type":"p256","key":"`+strings.Repeat("A", n)+`"}],"payload":"AA==","mac":"`+strings.Repeat("A", 43)+`="}`))
		checkSame(t, []byte(`{"v":1,"recipients":[{"type":"`+strings.Repeat("t", n)+`","key":"AA=="}],"payload":"AA==","mac":"`+strings.Repeat("A", 43)+`="}`))
		checkSame(t, []byte(`{"v":1,"recipients":[{"type":"`+strings.Repeat(`\u0001`, n/4)+`","key":"AA=="}],"payload":"AA==","mac":"`+strings.Repeat("A", 43)+`="}`))
	}
}
