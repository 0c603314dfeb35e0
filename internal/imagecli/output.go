package imagecli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/ocikp/ocikp/internal/safetext"
)

// The output rule of ocikp-image: platforms, media types, annotation
// keys, stanza fields, tag names and registry error text come from
// whoever pushed the image or runs the registry, and are escaped as the
// exec provider escapes stanza strings (internal/safetext):
//
//   - Main wraps stdout and stderr in safetext.Writer, so no control
//     character, bidirectional control or invalid UTF-8 reaches a
//     terminal from any print;
//   - text lines are written with printf, which escapes every string
//     argument, newlines and tabs included (a newline in a platform
//     cannot forge a line of output);
//   - JSON keeps exact values: printJSON writes the characters
//     encoding/json leaves raw (DEL, C1, bidirectional controls) as \u
//     escapes, which a decoder reads back as they were.

// printf is fmt.Fprintf with every string, error and Stringer argument
// escaped by safetext.Clean: newlines and tabs too (lines and columns
// belong to the format), spaces kept (indents are arguments).
func printf(w io.Writer, format string, args ...any) {
	for i, a := range args {
		switch v := a.(type) {
		case string:
			args[i] = safetext.Clean(v)
		case error:
			args[i] = safetext.Clean(v.Error())
		case fmt.Stringer:
			args[i] = safetext.Clean(v.String())
		}
	}
	fmt.Fprintf(w, format, args...)
}

func (c *cmd) printJSON(v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := c.stdout.Write(safetext.JSON(b.Bytes()))
	return err
}
