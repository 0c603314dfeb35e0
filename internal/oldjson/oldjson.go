// Package oldjson keeps what the decoders of untrusted JSON used before
// internal/jsonwalk, for the differential tests and fuzz targets that hold
// the new walks to the old decisions (envelope, keys/soft and protocol's
// old_test.go). Nothing outside tests imports it.
package oldjson

import "encoding/json"

// Unquote is the removed internal/jsonstr's Unquote: a JSON string's value,
// copied without escapes when it has none.
func Unquote(raw []byte) (string, error) {
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' {
		plain := true
		for _, c := range raw[1 : n-1] {
			if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				plain = false
				break
			}
		}
		if plain {
			return string(raw[1 : n-1]), nil
		}
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}
