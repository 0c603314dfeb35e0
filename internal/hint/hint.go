// Package hint attaches advice to errors: the "ocikp: hint: …" lines that the
// CLI prints after an error. Hints are written for the user and must never
// contain secrets or request contents.
package hint

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ocikp/ocikp/internal/safetext"
)

// Error is an error carrying up to a few lines of advice.
type Error struct {
	Err   error
	Hints []string
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Wrap returns err with hints attached. A nil err stays nil.
func Wrap(err error, hints ...string) error {
	if err == nil {
		return nil
	}
	return &Error{Err: err, Hints: hints}
}

// Of returns the hints of the outermost hinted error in err's chain.
func Of(err error) []string {
	var h *Error
	if errors.As(err, &h) {
		return h.Hints
	}
	return nil
}

// Print writes err as ocikp prints every failure: one "ocikp: error:" line
// and at most two "ocikp: hint:" lines, each made one printable line
// (errors carry strings from layers and clients, which must not reach a
// terminal as control sequences).
func Print(w io.Writer, err error) {
	fmt.Fprintf(w, "ocikp: error: %s\n", OneLine(err.Error()))
	for i, h := range Of(err) {
		if i == 2 {
			break
		}
		fmt.Fprintf(w, "ocikp: hint: %s\n", OneLine(h))
	}
}

// OneLine joins s into one line and escapes what is not printable.
func OneLine(s string) string {
	return safetext.Clean(strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " "))
}
