// Package safetext makes text that may carry bytes from an image layer or a
// client safe to print: a layer must not be able to write terminal escape
// sequences (colours, cursor moves, window titles, hyperlinks) into the
// terminal of whoever pulls it, nor reorder what they read with Unicode
// bidirectional controls, nor break a log line.
package safetext

import (
	"fmt"
	"io"
	"unicode/utf8"
)

// Clean returns s with every control character (C0 including newline, DEL,
// C1), Unicode bidirectional control and invalid UTF-8 byte written as a
// Go escape (\x1b, \u202e); everything else as it was.
func Clean(s string) string {
	if !needs(s, false) {
		return s
	}
	return string(appendClean(nil, s, false))
}

// appendClean appends s to b escaped as Clean does; with lines, newline
// and tab are kept.
func appendClean(b []byte, s string, lines bool) []byte {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = fmt.Appendf(b, `\x%02x`, s[i])
		case lines && (r == '\n' || r == '\t'):
			b = append(b, s[i])
		case unsafe(r):
			if r < 0x100 {
				b = fmt.Appendf(b, `\x%02x`, r)
			} else {
				b = fmt.Appendf(b, `\u%04x`, r)
			}
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return b
}

func needs(s string, lines bool) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && !(lines && (c == '\n' || c == '\t'))) || c >= 0x7f {
			// Printable ASCII needs nothing; anything else is looked at.
			for _, r := range s[i:] {
				if (r == utf8.RuneError || unsafe(r)) && !(lines && (r == '\n' || r == '\t')) {
					return true
				}
			}
			return false
		}
	}
	return false
}

// Writer returns a writer that passes text on to w escaped as Clean
// does, but for newline and tab: the output stream of a program that
// prints strings from images. It is the net under every print; a field
// printed within a line still needs Clean (a newline in it would start a
// line of its own). A character split across two writes is escaped as
// invalid UTF-8.
func Writer(w io.Writer) io.Writer { return writer{w} }

type writer struct{ w io.Writer }

func (x writer) Write(p []byte) (int, error) {
	s := string(p)
	if !needs(s, true) {
		return x.w.Write(p)
	}
	if _, err := x.w.Write(appendClean(nil, s, true)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// JSON returns encoded JSON with every character Clean escapes written as
// a JSON escape (\u202e), so that the text carries none raw and a decoder
// still reads the exact value. encoding/json already escapes C0 controls
// and replaces invalid UTF-8 with U+FFFD; DEL, C1 controls and the
// bidirectional controls it leaves raw. In valid JSON such characters can
// only stand inside strings, where the escape means the same.
func JSON(b []byte) []byte {
	if !needs(string(b), true) {
		return b
	}
	out := make([]byte, 0, len(b)+32)
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			out = append(out, `\ufffd`...)
		case r != '\n' && r != '\t' && unsafe(r):
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, b[i:i+n]...)
		}
		i += n
	}
	return out
}

func unsafe(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) ||
		(r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c
}

// Token returns s as is when it is a short run of printable ASCII without
// spaces or quotes (a stanza type, a key URL, a tag), else Go-quoted; in
// both cases bounded to max bytes.
func Token(s string, max int) string {
	cut := ""
	if len(s) > max {
		s, cut = s[:max], "…"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == '"' || c == '\\' || c == '\'' {
			return fmt.Sprintf("%q", s) + cut
		}
	}
	return s + cut
}
