package jsonwalk

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func valid(b []byte) bool {
	d := New(b)
	return d.Skip() == nil && d.End() == nil
}

// Skip accepts exactly what encoding/json accepts.
func FuzzSkip(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `{"a":[1,-2.5e+3,true,false,null,"x\u00e9\n"]}`, ` {"a" : 1 } `, `01`, `1.`, `-`, `"\x"`,
		`"\ud800"`, "\"\xff\"", "\"\x01\"", `{"a":1,}`, `[1,]`, `{"a"}`, `nul`, `1e`, `[` + strings.Repeat("[", 200) + `]`, `"abc`, `{"a":1}x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := valid(b), json.Valid(b); got != want {
			t.Fatalf("Skip: %v, json.Valid: %v", got, want)
		}
	})
}

func TestDepth(t *testing.T) {
	for _, n := range []int{MaxDepth - 1, MaxDepth, MaxDepth + 1} {
		b := []byte(strings.Repeat("[", n) + strings.Repeat("]", n))
		if got, want := valid(b), json.Valid(b); got != want {
			t.Errorf("depth %d: Skip %v, json.Valid %v", n, got, want)
		}
	}
}

// String returns what json.Unmarshal into a string returns.
func FuzzString(f *testing.F) {
	for _, s := range []string{`"QUJD"`, `"a\/b"`, `"\u00e9"`, `"é"`, `""`, `"`, `"a"b"`, `null`, `12`, "\"\x01\"", `"\\"`, `"a\"`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		d := New(raw)
		got, gerr := d.String(1 << 20)
		if gerr == nil {
			gerr = d.End()
		}
		var want string
		werr := json.Unmarshal(raw, &want)
		if errors.Is(gerr, ErrType) && (werr != nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))) {
			return // null is a string to json.Unmarshal, not to String
		}
		if (gerr == nil) != (werr == nil) || gerr == nil && string(got) != want {
			t.Fatalf("String(%q) = %q, %v; json.Unmarshal: %q, %v", raw, got, gerr, want, werr)
		}
	})
}

// Base64 decodes the strings json.Unmarshal into []byte decodes, and
// refuses the same.
func FuzzBase64(f *testing.F) {
	for _, s := range []string{`"QUJD"`, `"QUJ="`, `"QU\u004aD"`, `"QUJD\n"`, `""`, `"!!"`, `"QUI"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		d := New(raw)
		got, gerr := d.Base64(base64.StdEncoding, 1<<20)
		if gerr == nil {
			gerr = d.End()
		}
		var want []byte
		werr := json.Unmarshal(raw, &want)
		if trim := bytes.TrimSpace(raw); bytes.Equal(trim, []byte("null")) || errors.Is(gerr, ErrType) && (len(trim) == 0 || trim[0] != '"') {
			// null, and arrays of numbers ("[]", "[65]"), are []byte to
			// json.Unmarshal; Base64 takes only strings.
			return
		}
		if (gerr == nil) != (werr == nil) || gerr == nil && !bytes.Equal(got, want) {
			t.Fatalf("Base64(%q) = %q, %v; json.Unmarshal: %q, %v", raw, got, gerr, want, werr)
		}
	})
}

func TestBounds(t *testing.T) {
	d := New([]byte(`"` + strings.Repeat("A", 100) + `"`))
	if _, err := d.String(99); !errors.Is(err, ErrTooLong) {
		t.Fatalf("100 bytes at most 99: %v", err)
	}
	d = New([]byte(`"` + strings.Repeat("A", 100) + `"`))
	if s, err := d.String(100); err != nil || len(s) != 100 {
		t.Fatalf("100 bytes at most 100: %v", err)
	}
	// An oversized string is refused where it starts, unread: the rest
	// need not even be JSON.
	d = New([]byte(`"` + strings.Repeat("A", 100) + "\x00"))
	if _, err := d.String(10); !errors.Is(err, ErrTooLong) {
		t.Fatalf("got %v", err)
	}
	d = New([]byte(`"QU\u004aD"`))
	d.NoEscapes = true
	if _, err := d.Base64(base64.StdEncoding, 100); !errors.Is(err, ErrEscape) {
		t.Fatalf("escaped base64 with NoEscapes: %v", err)
	}
	d = New([]byte(`{ "a":1}`))
	d.Compact = true
	if err := d.Skip(); err == nil {
		t.Fatal("Compact accepted whitespace")
	}
}

func TestErrors(t *testing.T) {
	for in, want := range map[string]error{`{"a":`: ErrTruncated, `{"a" 1}`: &SyntaxError{}, `[1 2]`: &SyntaxError{}} {
		err := New([]byte(in)).Skip()
		var se *SyntaxError
		if want == ErrTruncated && !errors.Is(err, ErrTruncated) || want != ErrTruncated && !errors.As(err, &se) {
			t.Errorf("%s: %v", in, err)
		}
	}
	if _, err := New([]byte(`12`)).String(10); !errors.Is(err, ErrType) {
		t.Errorf("number as string: %v", err)
	}
	if _, err := New([]byte(`nope`)).String(10); !errors.As(err, new(*SyntaxError)) {
		t.Errorf("invalid value as string: %v, want a syntax error", err)
	}
}
