package suggest

import (
	"strings"
	"testing"
)

func TestDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3},
		{"alice", "alice", 0},
		{"alcie", "alice", 1},  // swap
		{"rewrp", "rewrap", 1}, // insertion
		{"lsit", "list", 1},
		{"kitten", "sitting", 3},
		{"ca", "abc", 3},  // OSA, not unrestricted Damerau-Levenshtein
		{"été", "ete", 2}, // runes, not bytes
	} {
		if got := Distance(c.a, c.b); got != c.d {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
		if got := Distance(c.b, c.a); got != c.d {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.b, c.a, got, c.d)
		}
	}
	long := strings.Repeat("a", 10000)
	if d := Distance(long, "a"); d != 10000 {
		t.Errorf("long input: %d", d)
	}
}

func TestClosest(t *testing.T) {
	keys := []string{"alice", "bob", "carol", "dave"}
	for _, c := range []struct {
		typed, want string
	}{
		{"alcie", "alice"},
		{"alic", "alice"},
		{"bbo", "bob"},
		{"carl", "carol"},
		{"zzzzzzzz", ""},
		{"b", ""},     // one letter: anything is one edit away
		{"alice", ""}, // exact: nothing to suggest
		{"xyz", ""},
	} {
		got, ok := Closest(c.typed, keys)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("Closest(%q) = %q, %v; want %q", c.typed, got, ok, c.want)
		}
	}
	if h := Hint("alcie", keys); h != `did you mean "alice"?` {
		t.Errorf("Hint = %q", h)
	}
	if h := Hint("zzz", keys); h != "" {
		t.Errorf("Hint = %q", h)
	}
	// The nearest wins over an earlier, farther one.
	if got, _ := Closest("rewrap", []string{"rewrite", "rewrapx"}); got != "rewrapx" {
		t.Errorf("nearest: %q", got)
	}
}
