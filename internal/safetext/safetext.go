// Package safetext makes text that may carry bytes from an image layer or a
// client safe to print: a layer must not be able to write terminal escape
// sequences (colours, cursor moves, window titles, hyperlinks) into the
// terminal of whoever pulls it, nor reorder what they read with Unicode
// bidirectional controls, nor break a log line.
package safetext

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Clean returns s with every control character (C0 including newline, DEL,
// C1), Unicode bidirectional control and invalid UTF-8 byte written as a
// Go escape (\x1b, \u202e); everything else as it was.
func Clean(s string) string {
	if !needs(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafe(r):
			if r < 0x100 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func needs(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			// Printable ASCII needs nothing; anything else is looked at.
			for _, r := range s {
				if r == utf8.RuneError || unsafe(r) {
					return true
				}
			}
			return false
		}
	}
	return false
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
