// Package jsonwalk reads untrusted JSON of a small fixed schema in one pass
// over its bytes: the caller walks the schema, the walker checks the syntax
// as it goes (what encoding/json accepts, no more and no less), and nothing
// is materialised that the caller does not ask for. A string over its bound
// is refused where it starts, and a base64 string is decoded straight from
// the input into its output.
//
// It exists for start-up cost and bounded memory: encoding/json's raw-message
// maps scan big base64 values several times and copy them as strings, and its
// struct decoding builds reflection tables on first use.
package jsonwalk

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// Errors of the walk. A *SyntaxError is invalid JSON; the others say that
// valid JSON does not fit what the caller asked for.
var (
	// ErrTruncated is JSON that ends inside a value.
	ErrTruncated = errors.New("truncated JSON")
	// ErrType is a value of another type than the one asked for.
	ErrType = errors.New("wrong JSON type")
	// ErrTooLong is a string longer than its bound.
	ErrTooLong = errors.New("string too long")
	// ErrBase64 is a string that is not valid base64.
	ErrBase64 = errors.New("invalid base64")
	// ErrEscape is an escape in a string read with NoEscapes.
	ErrEscape = errors.New("escaped string")
)

// SyntaxError is invalid JSON; Offset counts the bytes before the fault.
// It never quotes the input.
type SyntaxError struct{ Offset int }

func (e *SyntaxError) Error() string { return fmt.Sprintf("invalid JSON at byte %d", e.Offset) }

// MaxDepth is encoding/json's nesting limit, kept so that Skip accepts
// exactly what json.Valid does.
const MaxDepth = 10000

// Decoder walks one JSON text.
type Decoder struct {
	data []byte
	pos  int
	// Compact refuses whitespace between tokens (canonical forms).
	Compact bool
	// NoEscapes refuses escapes in base64 strings: ErrEscape.
	NoEscapes bool
}

// New returns a decoder at the start of data.
func New(data []byte) *Decoder { return &Decoder{data: data} }

// Offset is the number of bytes read so far.
func (d *Decoder) Offset() int { return d.pos }

func (d *Decoder) space() {
	if d.Compact {
		return
	}
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// Peek returns the first byte of the next token, or 0 at the end.
func (d *Decoder) Peek() byte {
	d.space()
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

func (d *Decoder) syntax() error {
	if d.pos >= len(d.data) {
		return ErrTruncated
	}
	return &SyntaxError{Offset: d.pos}
}

// Lit consumes s if the input continues with exactly those bytes.
func (d *Decoder) Lit(s string) bool {
	if len(d.data)-d.pos >= len(s) && string(d.data[d.pos:d.pos+len(s)]) == s {
		d.pos += len(s)
		return true
	}
	return false
}

// Null consumes a null, if the next value is one.
func (d *Decoder) Null() (bool, error) {
	if d.Peek() != 'n' {
		return false, nil
	}
	if err := d.literal("null"); err != nil {
		return false, err
	}
	return true, nil
}

func (d *Decoder) literal(s string) error {
	for i := 0; i < len(s); i++ {
		if d.pos >= len(d.data) || d.data[d.pos] != s[i] {
			return d.syntax()
		}
		d.pos++
	}
	return nil
}

// mismatch is the error for a value that is not of the type asked for: a
// syntax error if it is not a valid value either.
func (d *Decoder) mismatch() error {
	if err := d.Skip(); err != nil {
		return err
	}
	return ErrType
}

// End checks that only whitespace follows.
func (d *Decoder) End() error {
	d.space()
	if d.pos != len(d.data) {
		return &SyntaxError{Offset: d.pos}
	}
	return nil
}

// Object walks an object, calling field with each key (unescaped; valid
// until the next call) with the decoder at its value, which field must
// consume. Keys over maxKey bytes are ErrTooLong.
func (d *Decoder) Object(maxKey int, field func(key []byte) error) error {
	if d.Peek() != '{' {
		return d.mismatch()
	}
	d.pos++
	if d.Peek() == '}' {
		d.pos++
		return nil
	}
	for {
		if d.Peek() != '"' {
			return d.syntax()
		}
		key, err := d.str(maxKey, false)
		if err != nil {
			return err
		}
		if d.Peek() != ':' {
			return d.syntax()
		}
		d.pos++
		d.space()
		if err := field(key); err != nil {
			return err
		}
		switch d.Peek() {
		case ',':
			d.pos++
		case '}':
			d.pos++
			return nil
		default:
			return d.syntax()
		}
	}
}

// Array walks an array, calling elem with the decoder at each element,
// which elem must consume.
func (d *Decoder) Array(elem func() error) error {
	if d.Peek() != '[' {
		return d.mismatch()
	}
	d.pos++
	if d.Peek() == ']' {
		d.pos++
		return nil
	}
	for {
		d.space()
		if err := elem(); err != nil {
			return err
		}
		switch d.Peek() {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return nil
		default:
			return d.syntax()
		}
	}
}

// String reads a string of at most max bytes as written (escapes counted
// as written). Without escapes the result aliases the input.
func (d *Decoder) String(max int) ([]byte, error) {
	if d.Peek() != '"' {
		return nil, d.mismatch()
	}
	return d.str(max, false)
}

// Base64 reads a base64 string of at most max bytes as written, decoded
// with enc into a new slice (empty, not nil, for "").
func (d *Decoder) Base64(enc *base64.Encoding, max int) ([]byte, error) {
	if d.Peek() != '"' {
		return nil, d.mismatch()
	}
	raw, plain, err := d.scan(max, true)
	if err != nil {
		return nil, err
	}
	if !plain && d.NoEscapes {
		return nil, ErrEscape
	}
	out := make([]byte, enc.DecodedLen(len(raw)))
	n, err := enc.Decode(out, raw)
	if err != nil {
		return nil, ErrBase64
	}
	return out[:n], nil
}

// class of each byte inside a string: 0 plain, 1 ends or escapes the
// string, 2 control character (invalid), 3 not ASCII.
var class = func() (t [256]byte) {
	for c := range 0x20 {
		t[c] = 2
	}
	t['"'], t['\\'] = 1, 1
	for c := 0x80; c < 0x100; c++ {
		t[c] = 3
	}
	return t
}()

// str reads the string at d.pos (its opening quote). A plain string is
// returned as a slice of the input; one with escapes or non-ASCII bytes is
// unquoted by encoding/json (invalid UTF-8 becomes U+FFFD, as there).
// ascii skips the non-ASCII check (base64 fails on those bytes anyway).
func (d *Decoder) str(max int, ascii bool) ([]byte, error) {
	b, _, err := d.scan(max, ascii)
	return b, err
}

func (d *Decoder) scan(max int, ascii bool) (_ []byte, plain bool, _ error) {
	start := d.pos
	d.pos++
	plain = true
	limit := min(len(d.data), d.pos+max+1) // room for the closing quote
loop:
	for {
		if d.pos >= limit {
			if limit < len(d.data) {
				return nil, false, ErrTooLong
			}
			return nil, false, ErrTruncated
		}
		c := d.data[d.pos]
		switch class[c] {
		case 0:
			d.pos++
			continue
		case 2:
			return nil, false, &SyntaxError{Offset: d.pos}
		case 3:
			if !ascii {
				plain = false
			}
			d.pos++
			continue
		}
		if c == '"' {
			break loop
		}
		// An escape: \" \\ \/ \b \f \n \r \t or \uXXXX.
		plain = false
		if d.pos+1 >= len(d.data) {
			return nil, false, ErrTruncated
		}
		switch d.data[d.pos+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			d.pos += 2
		case 'u':
			for i := 2; i < 6; i++ {
				if d.pos+i >= len(d.data) {
					return nil, false, ErrTruncated
				}
				if !isHex(d.data[d.pos+i]) {
					return nil, false, &SyntaxError{Offset: d.pos + i}
				}
			}
			d.pos += 6
		default:
			return nil, false, &SyntaxError{Offset: d.pos + 1}
		}
	}
	d.pos++ // the closing quote
	if plain {
		return d.data[start+1 : d.pos-1], true, nil
	}
	var s string
	if err := json.Unmarshal(d.data[start:d.pos], &s); err != nil {
		return nil, false, &SyntaxError{Offset: start}
	}
	return []byte(s), false, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// Skip validates and consumes one value of any type, without keeping it.
func (d *Decoder) Skip() error { return d.skip(0) }

func (d *Decoder) skip(depth int) error {
	if depth >= MaxDepth {
		return &SyntaxError{Offset: d.pos}
	}
	switch c := d.Peek(); c {
	case '{':
		return d.Object(len(d.data), func([]byte) error { return d.skip(depth + 1) })
	case '[':
		return d.Array(func() error { return d.skip(depth + 1) })
	case '"':
		_, err := d.str(len(d.data), true)
		return err
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	default:
		_, err := d.number()
		return err
	}
}

// Number reads a number and returns its text.
func (d *Decoder) Number() ([]byte, error) {
	switch c := d.Peek(); {
	case c == '-' || '0' <= c && c <= '9':
		return d.number()
	default:
		return nil, d.mismatch()
	}
}

// number consumes -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *Decoder) number() ([]byte, error) {
	start := d.pos
	digits := func() error {
		n := 0
		for d.pos < len(d.data) && '0' <= d.data[d.pos] && d.data[d.pos] <= '9' {
			d.pos++
			n++
		}
		if n == 0 {
			return d.syntax()
		}
		return nil
	}
	if d.pos < len(d.data) && d.data[d.pos] == '-' {
		d.pos++
	}
	if d.pos < len(d.data) && d.data[d.pos] == '0' {
		d.pos++
	} else if err := digits(); err != nil {
		return nil, err
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if err := digits(); err != nil {
			return nil, err
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if err := digits(); err != nil {
			return nil, err
		}
	}
	return d.data[start:d.pos], nil
}
