package jsonstr

import (
	"encoding/json"
	"testing"
)

// Unquote agrees with json.Unmarshal on every input: value and whether it
// is an error.
func FuzzUnquote(f *testing.F) {
	for _, s := range []string{`"QUJD"`, `"a\/b"`, `"\u00e9"`, `"é"`, `""`, `"`, `"a"b"`, `null`, `12`, "\"\x01\"", `"\\"`, `"a\"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, gerr := Unquote(raw)
		var want string
		werr := json.Unmarshal(raw, &want)
		if (gerr == nil) != (werr == nil) || got != want {
			t.Fatalf("Unquote(%q) = %q, %v; json.Unmarshal: %q, %v", raw, got, gerr, want, werr)
		}
	})
}
