// Package hint attaches advice to errors: the "ocikp: hint: …" lines that the
// CLI prints after an error. Hints are written for the user and must never
// contain secrets or request contents.
package hint

import "errors"

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
