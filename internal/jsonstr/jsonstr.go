// Package jsonstr reads JSON string values without a second pass of
// encoding/json when they need no unescaping: the base64 fields of requests
// and envelopes, which are decoded from raw messages already validated.
package jsonstr

import "encoding/json"

// Unquote returns the value of the JSON string raw, as json.Unmarshal into
// a string would. A string of printable ASCII without escapes is sliced
// out directly; anything else goes through encoding/json.
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
