package protocol

import (
	"encoding/base64"
	"errors"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// allocated returns the bytes one DecodeRequest(data) allocates, averaged
// over a few runs.
func allocated(data []byte) uint64 {
	const runs = 4
	DecodeRequest(data) // warm up
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		DecodeRequest(data)
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / runs
}

// A request near the 1 MiB bound costs its decoded values and a small
// constant: the input is not copied, re-scanned into raw messages or
// turned into strings on the way.
func TestDecodeAllocationBounded(t *testing.T) {
	const slack = 4 << 10
	// One huge, well-formed but useless parameter: everything is decoded.
	pad := MaxRequestSize - 200
	pad -= pad % 4
	big := `{"op":"keyunwrap","keyunwrapparams":{"dc":{"Parameters":{"junk":["` + strings.Repeat("QUJD", pad/4) +
		`"]}},"annotation":"eyJ2IjoxfQ=="}}`
	if _, err := DecodeRequest([]byte(big)); err != nil {
		t.Fatal(err)
	}
	got := allocated([]byte(big))
	t.Logf("a %d-byte request with one large parameter: %d bytes allocated", len(big), got)
	if got > uint64(len(big))+slack {
		t.Errorf("a %d-byte request with a large parameter allocated %d bytes, want at most its size + %d", len(big), got, slack)
	}
	// A request made of unknown fields is refused at the first, unread.
	var b strings.Builder
	b.WriteString(`{"op":"keyunwrap"`)
	for i := 0; b.Len() < MaxRequestSize-300; i++ {
		b.WriteString(`,"x`)
		b.WriteString(strings.Repeat("y", i%7))
		b.WriteString(`":"` + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("z", 90))) + `"`)
	}
	b.WriteString(`,"keyunwrapparams":{"annotation":"eyJ2IjoxfQ=="}}`)
	unknown := []byte(b.String())
	if len(unknown) > MaxRequestSize {
		t.Fatal("the request of unknown fields is over the size bound")
	}
	got = allocated(unknown)
	t.Logf("a %d-byte request of unknown fields: %d bytes allocated", len(unknown), got)
	if got > slack {
		t.Errorf("a %d-byte request of unknown fields allocated %d bytes, want at most %d", len(unknown), got, slack)
	}
}

// ReadRequest reads in pieces up to the bound exactly.
func TestReadRequestPieces(t *testing.T) {
	if r, err := ReadRequest(iotest.OneByteReader(strings.NewReader(unwrapReq))); err != nil || string(r.KeyUnwrapParams.Annotation) != `{"v":1}` {
		t.Fatalf("one byte at a time: %v", err)
	}
	full := unwrapReq + strings.Repeat(" ", MaxRequestSize-len(unwrapReq))
	if _, err := ReadRequest(iotest.HalfReader(strings.NewReader(full))); err != nil {
		t.Fatalf("exactly %d bytes: %v", MaxRequestSize, err)
	}
	if _, err := ReadRequest(strings.NewReader(full + " ")); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("one byte more: %v", err)
	}
	if _, err := ReadRequest(iotest.ErrReader(iotest.ErrTimeout)); !errors.Is(err, iotest.ErrTimeout) {
		t.Fatalf("read error: %v", err)
	}
}
