package safetext

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"plain text: ok":                 "plain text: ok",
		"caf\u00e9 \u2713":               "caf\u00e9 \u2713",
		"\x1b]0;pwned\x07title":          `\x1b]0;pwned\x07title`,
		"red \x1b[31mtext":               `red \x1b[31mtext`,
		"a\nb\rc\td":                     `a\x0ab\x0dc\x09d`,
		"\u009b31m C1 CSI":               `\x9b31m C1 CSI`,
		"abc\u202edcba":                  `abc\u202edcba`,
		"bad \xff utf8":                  `bad \xff utf8`,
		"del\x7f":                        `del\x7f`,
		"\u2067isolate\u2069 \u200fmark": `\u2067isolate\u2069 \u200fmark`,
	} {
		if got := Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestToken(t *testing.T) {
	if got := Token("gcpkms://projects/p/locations/l", 100); got != "gcpkms://projects/p/locations/l" {
		t.Error(got)
	}
	if got := Token("p256\x1b[2J", 100); got != `"p256\x1b[2J"` {
		t.Error(got)
	}
	if got := Token(strings.Repeat("a", 10), 4); got != "aaaa…" {
		t.Error(got)
	}
}

func FuzzClean(f *testing.F) {
	f.Add("\x1b[31m\u202e\xff")
	f.Fuzz(func(t *testing.T, s string) {
		out := Clean(s)
		for _, r := range out {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
				t.Fatalf("Clean(%q) = %q keeps %U", s, out, r)
			}
		}
		if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r >= 0x7f }) && out != s {
			t.Fatalf("printable ASCII changed: %q -> %q", s, out)
		}
	})
}

// Writer escapes as Clean does but keeps the lines and columns of the
// text written through it.
func TestWriter(t *testing.T) {
	var b bytes.Buffer
	w := Writer(&b)
	w.Write([]byte("a\tb\n"))
	w.Write([]byte("platform linux\x1b[2J/\u202eamd64\xff\r\n"))
	if want := "a\tb\nplatform linux\\x1b[2J/\\u202eamd64\\xff\\x0d\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

// JSON leaves no unsafe character raw, stays valid JSON, and decodes to
// the value encoded (invalid UTF-8 aside, which encoding/json replaces).
func TestJSON(t *testing.T) {
	in := map[string]string{"k\u202e": "linux\x1b[2J\u2066\u009b\x7f\u200f/caf\u00e9 \u2713"}
	enc, _ := json.Marshal(in)
	out := JSON(enc)
	for _, r := range string(out) {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x200e && r <= 0x200f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			t.Fatalf("%U raw in %s", r, out)
		}
	}
	var back map[string]string
	if err := json.Unmarshal(out, &back); err != nil || back["k\u202e"] != in["k\u202e"] {
		t.Fatalf("%s decodes to %q (%v)", out, back, err)
	}
	if plain := []byte(`{"a":"b"}`); &JSON(plain)[0] != &plain[0] {
		t.Error("plain JSON copied")
	}
}

// For any string, JSON of its encoding carries no unsafe character raw
// and decodes to what the encoding decodes to.
func FuzzJSON(f *testing.F) {
	f.Add("\x1b[31m\u202e\xff\u009b\x7f\u2028")
	f.Fuzz(func(t *testing.T, s string) {
		enc, _ := json.Marshal(s)
		out := JSON(enc)
		for _, r := range string(out) {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
				t.Fatalf("JSON(%s) = %s keeps %U", enc, out, r)
			}
		}
		var want, got string
		json.Unmarshal(enc, &want)
		if err := json.Unmarshal(out, &got); err != nil || got != want {
			t.Fatalf("JSON(%s) = %s decodes to %q, want %q (%v)", enc, out, got, want, err)
		}
	})
}
